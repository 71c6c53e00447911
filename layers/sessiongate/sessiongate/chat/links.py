"""Identity links: a chat user proves which AWS identity they are, once, with a one-time code.

The chat's slash command (``/sessiongate link``) answers privately with a code; the person runs
``sessiongate chat link CODE``, which the request API receives signed with their own AWS credentials
(SigV4; the caller is the API's signed caller, never a body field). Only the code's hash is stored, for
``CODE_TTL``; it is taken (deleted) by the first link that presents it. An AWS identity has one chat
user: linking again replaces the previous link, and every link, replacement and unlink is logged and
published (``ChatLinked`` / ``ChatUnlinked`` on the lifecycle topic) for the audit trail.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sessiongate.access_requests.caller import Caller
from sessiongate.access_requests.errors import NotFound, invalid
from sessiongate.chat.ports import ChatState, ChatUser, Link, Links
from sessiongate.clock import Clock, to_iso
from sessiongate.observability import bind

CODE_TTL = timedelta(minutes=10)
# 10 characters of 32 (no 0/O, 1/I): 50 bits; a guess also needs AWS credentials the API admits.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10


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


def _user_view(user: ChatUser) -> dict[str, str]:
    return {"chat": user.chat, "team_id": user.team_id, "user_id": user.user_id}


@dataclass
class Linking:
    state: ChatState
    links: Links
    clock: Clock
    notifier: Publishes | None = None

    def issue_code(self, user: ChatUser) -> str:
        code = new_code()
        expires = self.clock.now() + CODE_TTL
        self.state.put_code(code_hash(code), user, expires_at=int(expires.timestamp()))
        bind(chat_user=user.key).info("chat link code issued", extra={"expires_at": to_iso(expires)})
        return code

    def link(self, caller: Caller, body: object) -> dict[str, Any]:
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not 1 <= len(code) <= 32:
            raise invalid('body must be {"code": "<the code /sessiongate link showed>"}', "invalid_code")
        now = self.clock.now()
        user = self.state.take_code(code_hash(code), now=int(now.timestamp()))
        if user is None:
            raise NotFound("invalid_code", "unknown, used or expired code: run /sessiongate link again")
        # One chat user per AWS identity: the identity's other links end (audited below).
        others = [lk for lk in self.links.of_identity(caller.arn) if lk.user != user]
        replaced = self.links.put(Link(user, caller.arn, to_iso(now)))
        for other in others:
            self.links.delete(other.user)
            self._audit("ChatUnlinked", other, caller.arn, reason="replaced by a new link")
        link = Link(user, caller.arn, to_iso(now))
        self._audit(
            "ChatLinked",
            link,
            caller.arn,
            previous_identity_arn=replaced.identity_arn
            if replaced and replaced.identity_arn != caller.arn
            else None,
        )
        return {"link": {**_user_view(user), "identity_arn": caller.arn, "linked_at": link.linked_at}}

    def unlink(self, caller: Caller) -> dict[str, Any]:
        removed = []
        for link in self.links.of_identity(caller.arn):
            if self.links.delete(link.user) is not None:
                self._audit("ChatUnlinked", link, caller.arn, reason="unlinked by its identity")
                removed.append(_user_view(link.user))
        return {"unlinked": removed}

    def _audit(self, event_type: str, link: Link, by: str, **extra: Any) -> None:
        at = to_iso(self.clock.now())
        payload: dict[str, Any] = {
            "at": at,
            **_user_view(link.user),
            "identity_arn": link.identity_arn,
            "principal_arn": link.identity_arn,
            "by": by,
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
