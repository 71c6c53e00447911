"""The interactions endpoint's core: the chat's signature first, then a link code or a decision.

Order (issue 19): (1) the chat adapter verifies the request's signature and timestamp window; a bad one
is answered 401 and counted (``ChatBadSignatures``) before anything is read; (2) the signature is
remembered (conditional write with a TTL): the same signed request again is a replay, 401 and counted
(``ChatReplays``); (3) only then is the body read. A click acts as the AWS identity the clicker linked,
through the request API's own approve/reject (:class:`.access_requests.deciding.Deciding`: the same
separation-of-duties checks and conditional writes), with ``via="chat"`` so a rule's
``approve_in_chat: false`` refuses it. Every refusal is a private answer to the clicker (and a metric).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sessiongate.access_requests.caller import Caller, caller_from_context
from sessiongate.access_requests.errors import Refused
from sessiongate.chat.links import CODE_TTL, Linking
from sessiongate.chat.ports import (
    Answer,
    ChatState,
    Click,
    Inbound,
    Link,
    LinkCommand,
    Links,
    Outbound,
)
from sessiongate.clock import Clock
from sessiongate.observability import bind, logger, metrics

# A signature is remembered at least as long as its timestamp is accepted (five minutes either way).
REPLAY_MEMORY_SECONDS = 15 * 60
HELP = "SessionGate: `/sessiongate link` shows a one-time code to link your Slack user to your AWS identity."


class Decisions(Protocol):
    """The request API's approve and reject (:class:`.access_requests.service.NativeService`)."""

    def approve(self, caller: Caller, request_id: str, body: object, *, via: str = ...) -> dict[str, Any]: ...

    def reject(self, caller: Caller, request_id: str, body: object, *, via: str = ...) -> dict[str, Any]: ...


@dataclass
class ChatInteractions:
    inbound: Inbound
    outbound: Outbound
    state: ChatState
    links: Links
    linking: Linking
    decisions: Decisions
    clock: Clock
    chat_name: str = "Slack"
    # The workspaces acted on (empty: any). A Slack app distributed to several workspaces signs for
    # each of them with the same secret: a click from another workspace is refused, privately.
    team_ids: frozenset[str] = frozenset()

    def handle(self, headers: Mapping[str, str], body: str) -> Answer:
        proof = self.inbound.verify(headers, body)
        if proof is None:
            logger().warning("chat request refused: bad or stale signature")
            metrics().add("ChatBadSignatures")
            return Answer(401)
        now = int(self.clock.now().timestamp())
        if not self.state.first_seen(proof, now=now, keep_until=now + REPLAY_MEMORY_SECONDS):
            logger().warning("chat request refused: replayed signature")
            metrics().add("ChatReplays")
            return Answer(401)
        interaction = self.inbound.parse(headers, body)
        if isinstance(interaction, (LinkCommand, Click)) and not self._team_allowed(interaction.user.team_id):
            logger().warning(
                "chat request refused: another workspace", extra={"team": interaction.user.team_id}
            )
            metrics().add("ChatRefusals", reason="other_workspace")
            return Answer(200, f"SessionGate does not take requests from this {self.chat_name} workspace.")
        if isinstance(interaction, LinkCommand):
            code = self.linking.issue_code(interaction.user, interaction.user_name, interaction.team_domain)
            minutes = int(CODE_TTL.total_seconds() // 60)
            return Answer(
                200,
                f"Your one-time code: `{code}` (valid {minutes} minutes, once). Run "
                f"`sessiongate chat link {code}` with your own AWS credentials to link this {self.chat_name} "
                "user to your AWS identity. Never give this code to anyone else: whoever runs it lets you "
                "approve as them.",
            )
        if isinstance(interaction, Click):
            self.outbound.reply_privately(interaction.reply_to, self._decide(interaction))
            return Answer(200)
        logger().info("chat interaction ignored", extra={"what": interaction.what})
        return Answer(200, HELP)

    def _team_allowed(self, team_id: str) -> bool:
        return not self.team_ids or team_id in self.team_ids

    def _decide(self, click: Click) -> str:
        log = bind(chat_user=click.user.key, request_id=click.request_id, action=click.action)
        link = self.links.get(click.user)
        if link is None:
            log.info("chat decision refused", extra={"error": "not_linked"})
            metrics().add("ChatRefusals", reason="not_linked")
            return (
                f"Not done: your {self.chat_name} user is not linked to an AWS identity. Run "
                "`/sessiongate link`, then `sessiongate chat link CODE` with your AWS credentials."
            )
        refused = self._unusable(link, log)
        if refused:
            return refused
        comment = f"{click.action}d in {self.chat_name} by {click.user.user_id} ({click.user.team_id})"
        try:
            caller = caller_from_context({"identity": {"userArn": link.identity_arn}})
            act = self.decisions.approve if click.action == "approve" else self.decisions.reject
            view = act(caller, click.request_id, {"comment": comment}, via="chat")
        except Refused as exc:
            log.info("chat decision refused", extra={"error": exc.code, "identity_arn": link.identity_arn})
            metrics().add("ChatRefusals", reason=exc.code)
            return f"Not done ({exc.code}): {exc.message}"
        status = view.get("request", {}).get("status", "?")
        log.info("chat decision recorded", extra={"identity_arn": link.identity_arn, "status": status})
        return f"Done: you {click.action}d request {click.request_id} as {link.identity_arn}; it is {status}."

    def _unusable(self, link: Link, log: Any) -> str | None:
        """Why a stored link may not act (expired, or not sealed by the request API), else None."""
        from sessiongate.adapters.kms import MacUnavailable

        again = (
            "Run `/sessiongate link`, then `sessiongate chat link CODE` with your AWS credentials, "
            "to link again."
        )
        if link.expires_at <= int(self.clock.now().timestamp()):
            # (DynamoDB TTL deletes an expired link only within days: checked here on every read.)
            log.info(
                "chat decision refused", extra={"error": "link_expired", "identity_arn": link.identity_arn}
            )
            metrics().add("ChatRefusals", reason="link_expired")
            return f"Not done: your {self.chat_name} link to an AWS identity has expired. {again}"
        seal = self.linking.seal
        try:
            valid = seal is not None and seal.valid(link)
        except MacUnavailable as exc:
            log.error("chat decision refused: approval key unusable", extra={"problem": str(exc)})
            metrics().add("ApprovalKeyErrors")
            return "Not done (approval_key_unavailable): SessionGate cannot check links; tell its admins."
        if not valid:
            log.error(
                "chat link refused: its MAC does not verify (written outside SessionGate: tampering?)",
                extra={"error": "link_tampered", "identity_arn": link.identity_arn},
            )
            metrics().add("ChatLinkTampering")
            metrics().add("ChatRefusals", reason="link_invalid")
            return f"Not done: your {self.chat_name} link is not valid. {again}"
        return None
