"""Identity links: a chat user proves which AWS identity they are with a one-time code, for a while.

The chat's slash command (``/sessiongate link``) answers privately with a code; the person runs
``sessiongate chat link CODE``, which the request API receives signed with their own AWS credentials
(SigV4; the caller is the API's signed caller, never a body field). Only the code's hash is stored, for
``CODE_TTL``. Linking takes two calls (review finding 2: a code can be phished): the first answers whose
code it is (the chat user, handle and workspace the chat sent) and links nothing; only the second, with
``confirm: true``, takes (deletes) the code and links. An AWS identity has one chat user: linking again
replaces the previous link, and the replaced chat user is told (``ChatUnlinked`` with ``replaced_by``).

A link lasts ``max_age`` (``ChatLinkMaxAgeDays``; review finding 1): it carries ``expires_at``, which is
also the table's TTL attribute, and the interactions endpoint refuses an expired link on read (DynamoDB
TTL deletes expired items only within a few days, "Using time to live (TTL) in DynamoDB"). Each link is
sealed with the approval key (KMS GenerateMac by the request API, domain ``sessiongate-chat-link-v1``
over the chat user, identity, link time and expiry; review finding 3); the interactions endpoint checks
the seal with KMS VerifyMac and refuses (and logs as tampering) a link written by anyone else.
A deployer (``DeployerArns``) may remove any chat user's link (``sessiongate chat unlink --slack-user U
--team T``), audited like an unlink. Every link, replacement and unlink is logged and published
(``ChatLinked`` / ``ChatUnlinked`` on the lifecycle topic) for the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sessiongate.access_requests.caller import Caller
from sessiongate.access_requests.errors import NotAllowed, NotFound, Unavailable, invalid
from sessiongate.access_requests.policy import arn_matches
from sessiongate.access_requests.records import signed_message
from sessiongate.chat.ports import ChatState, ChatUser, CodeOwner, Link, Links
from sessiongate.clock import Clock, to_iso
from sessiongate.observability import bind, metrics

CODE_TTL = timedelta(minutes=10)
# 10 characters of 32 (no 0/O, 1/I): 50 bits; a guess also needs AWS credentials the API admits.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
MAX_AGE = timedelta(days=30)  # ChatLinkMaxAgeDays' default
LINK_MAC_DOMAIN = "sessiongate-chat-link-v1"
# Slack's ids (team T..., user U.../W...): what a deployer's unlink names.
SLACK_ID_RE = re.compile(r"[A-Z0-9]{2,32}", re.ASCII)


class Publishes(Protocol):
    def publish(
        self, event_type: str, payload: dict[str, Any], *, subject: str, event_id: str | None = None
    ) -> bool: ...


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def code_hash(code: str) -> str:
    """The stored form of a code (as typed: case, spaces and dashes do not matter)."""
    normal = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(f"sessiongate-chat-link:{normal}".encode()).hexdigest()


class MacKey(Protocol):
    """The approval key's MACs (:class:`sessiongate.adapters.kms.Macs`)."""

    def generate(self, key_id: str, message: bytes) -> str: ...

    def verify(self, key_id: str, message: bytes, mac: str) -> bool: ...


def link_message(link: Link) -> bytes:
    """What a link's MAC binds: who (chat, workspace, user) acts as which identity, from when to when."""
    facts = [
        link.user.chat,
        link.user.team_id,
        link.user.user_id,
        link.identity_arn,
        link.linked_at,
        link.expires_at,
    ]
    return signed_message(LINK_MAC_DOMAIN, json.dumps(facts, separators=(",", ":")).encode())


@dataclass
class LinkSeal:
    """Links sealed with the approval key: the request API generates (it alone writes links), the
    interactions endpoint verifies (KMS VerifyMac). Without a key nothing is sealed or trusted."""

    macs: MacKey | None
    key_id: str

    def sign(self, link: Link) -> Link:
        from sessiongate.adapters.kms import MacUnavailable

        if self.macs is None or not self.key_id:
            raise Unavailable("approval_key_unavailable", "SessionGate cannot sign links; tell its admins")
        try:
            return replace(link, mac=self.macs.generate(self.key_id, link_message(link)))
        except MacUnavailable as exc:
            bind().error("approval key unusable", extra={"problem": str(exc)})
            metrics().add("ApprovalKeyErrors")
            raise Unavailable(
                "approval_key_unavailable", "SessionGate cannot sign links; tell its admins"
            ) from None

    def valid(self, link: Link) -> bool:
        """Whether the request API sealed exactly this link (raises ``MacUnavailable``: key unusable)."""
        if not link.mac or self.macs is None or not self.key_id:
            return False
        return self.macs.verify(self.key_id, link_message(link), link.mac)


def _user_view(user: ChatUser) -> dict[str, str]:
    return {"chat": user.chat, "team_id": user.team_id, "user_id": user.user_id}


def _owner_view(owner: CodeOwner) -> dict[str, str]:
    return {**_user_view(owner.user), "user_name": owner.user_name, "team_domain": owner.team_domain}


@dataclass
class Linking:
    state: ChatState
    links: Links
    clock: Clock
    notifier: Publishes | None = None
    seal: LinkSeal | None = None  # None: links cannot be made (the request API always has one)
    max_age: timedelta = MAX_AGE
    deployers: tuple[str, ...] = ()  # DeployerArns: who may remove anyone's link

    def issue_code(self, user: ChatUser, user_name: str = "", team_domain: str = "") -> str:
        code = new_code()
        expires = self.clock.now() + CODE_TTL
        owner = CodeOwner(user, user_name[:80], team_domain[:80])
        self.state.put_code(code_hash(code), owner, expires_at=int(expires.timestamp()))
        bind(chat_user=user.key).info("chat link code issued", extra={"expires_at": to_iso(expires)})
        return code

    def link(self, caller: Caller, body: object) -> dict[str, Any]:
        """Without ``confirm: true``: whose code it is, nothing linked. With it: the link."""
        code = body.get("code") if isinstance(body, dict) else None
        confirm = body.get("confirm", False) if isinstance(body, dict) else False
        if not isinstance(code, str) or not 1 <= len(code) <= 32 or not isinstance(confirm, bool):
            raise invalid(
                'body must be {"code": "<the code /sessiongate link showed>", "confirm": true|false}',
                "invalid_code",
            )
        now = self.clock.now()
        if not confirm:
            owner = self.state.peek_code(code_hash(code), now=int(now.timestamp()))
            if owner is None:
                raise NotFound("invalid_code", "unknown, used or expired code: run /sessiongate link again")
            return {"code_of": _owner_view(owner), "confirm_needed": True}
        if self.seal is None:
            raise Unavailable("approval_key_unavailable", "SessionGate cannot sign links; tell its admins")
        owner = self.state.take_code(code_hash(code), now=int(now.timestamp()))
        if owner is None:
            raise NotFound("invalid_code", "unknown, used or expired code: run /sessiongate link again")
        user = owner.user
        expires_at = int((now + self.max_age).timestamp())
        link = self.seal.sign(Link(user, caller.arn, to_iso(now), expires_at))
        # One chat user per AWS identity: the identity's other links end (audited below; the replaced
        # chat user is told: a phished code shows up there).
        others = [lk for lk in self.links.of_identity(caller.arn) if lk.user != user]
        replaced = self.links.put(link)
        for other in others:
            self.links.delete(other.user)
            self._audit(
                "ChatUnlinked", other, caller.arn, reason="replaced by a new link", replaced_by=user.user_id
            )
        self._audit(
            "ChatLinked",
            link,
            caller.arn,
            user_name=owner.user_name or None,
            team_domain=owner.team_domain or None,
            previous_identity_arn=replaced.identity_arn
            if replaced and replaced.identity_arn != caller.arn
            else None,
            previous_slack_user=others[0].user.user_id if others else None,
        )
        return {
            "link": {
                **_owner_view(owner),
                "identity_arn": caller.arn,
                "linked_at": link.linked_at,
                "expires_at": to_iso_epoch(expires_at),
            }
        }

    def unlink(self, caller: Caller, body: object = None) -> dict[str, Any]:
        """The caller's own links; or, for a deployer naming ``slack_user`` and ``team``, that user's."""
        if isinstance(body, dict) and (body.get("slack_user") or body.get("team")):
            return self._remove(caller, body)
        removed = []
        for link in self.links.of_identity(caller.arn):
            if self.links.delete(link.user) is not None:
                self._audit("ChatUnlinked", link, caller.arn, reason="unlinked by its identity")
                removed.append(_user_view(link.user))
        return {"unlinked": removed}

    def _remove(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        """A deployer removes any chat user's link (an incident: a lost or compromised chat account)."""
        if not self.deployers or not arn_matches(caller.arn, self.deployers):
            bind(identity_arn=caller.arn).warning("chat link removal refused: not a deployer")
            raise NotAllowed(
                "not_a_deployer", "only the stack's deployers (DeployerArns) may remove another user's link"
            )
        team, user_id = body.get("team"), body.get("slack_user")
        if not (isinstance(team, str) and SLACK_ID_RE.fullmatch(team)) or not (
            isinstance(user_id, str) and SLACK_ID_RE.fullmatch(user_id)
        ):
            raise invalid('body must be {"slack_user": "U...", "team": "T..."} (Slack ids)', "invalid_user")
        removed = self.links.delete(ChatUser("slack", team, user_id))
        if removed is None:
            return {"unlinked": []}
        self._audit("ChatUnlinked", removed, caller.arn, reason="removed by a deployer")
        return {"unlinked": [_user_view(removed.user)]}

    def _audit(self, event_type: str, link: Link, by: str, **extra: Any) -> None:
        at = to_iso(self.clock.now())
        payload: dict[str, Any] = {
            "at": at,
            **_user_view(link.user),
            "identity_arn": link.identity_arn,
            "principal_arn": link.identity_arn,
            "by": by,
            **({"expires_at": to_iso_epoch(link.expires_at)} if link.expires_at else {}),
            **{k: v for k, v in extra.items() if v is not None},
        }
        bind(chat_user=link.user.key, identity_arn=link.identity_arn).info(
            "chat link changed", extra={"event_type": event_type, **extra}
        )
        if self.notifier is not None:
            verb = "linked to" if event_type == "ChatLinked" else "unlinked from"
            self.notifier.publish(
                event_type,
                payload,
                subject=f"SessionGate: {link.user.chat} user {link.user.user_id} {verb} {link.identity_arn}",
                event_id=f"{event_type}/{link.user.key}/{at}",
            )


def to_iso_epoch(seconds: int) -> str:
    return to_iso(datetime.fromtimestamp(seconds, UTC))


class Tells(Protocol):
    def tell(self, user_id: str, text: str) -> None: ...


def tell_replaced(chat: Tells, event: Mapping[str, Any]) -> str:
    """The chat notifier's part of a replaced link (``ChatUnlinked`` with ``replaced_by``): tell the chat
    user whose link ended, privately, who replaced it (a phished code shows up here). Other events: ignored.
    (At least once: a redelivered event tells them twice, which is harmless.)"""
    user_id, replaced_by = event.get("user_id"), event.get("replaced_by")
    if event.get("event_type") != "ChatUnlinked" or not isinstance(user_id, str) or not replaced_by:
        return "ignored"
    chat.tell(
        user_id,
        f"SessionGate: your Slack user is no longer linked to {event.get('identity_arn')}: "
        f"{event.get('by')} linked Slack user {replaced_by} instead, at {event.get('at')}. If that was "
        "not meant (someone sent you their code), run `sessiongate chat unlink` with your AWS "
        "credentials now and tell your SessionGate deployers.",
    )
    bind(chat_user=user_id).info("chat user told of a replaced link", extra={"replaced_by": replaced_by})
    return f"told {user_id}"
