"""Request messages in the rule's channel, kept up to date from the lifecycle events (the outbox's SNS
topic; this module only reads the events' payloads, whose shapes it does not change).

A request whose rule names a channel (``slack_channel``, recorded in the request's rule snapshot and so
in its events) is posted when it appears (AccessRequested; BreakGlassUsed and AutoApproved, without
buttons); every later event of that request, and the grant's (AccessGranted/Denied/Revoked, whose
``origin_ref`` is the request id), updates the same message: its state and one history line. The card's
facts are kept with the message (the grant's events do not carry the reason or the ticket). Events are
delivered at least once: an event id already shown is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from sessiongate.chat.ports import ChatState, Outbound, RequestCard, StoredMessage
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger

POSTED = frozenset({"AccessRequested", "BreakGlassUsed", "AutoApproved"})
SAVE_ATTEMPTS = 3


def _approvers(payload: Mapping[str, Any]) -> str:
    return ", ".join(str(a) for a in payload.get("approver_arns") or []) or "-"


def _move(event_type: str, p: Mapping[str, Any]) -> tuple[str | None, str]:
    """(the card's new state or None to keep it, the history line) of one event."""
    at = str(p.get("at", ""))
    if event_type == "AccessRequested":
        return "PENDING", f"{at} requested by {p.get('requester_arn')}"
    if event_type == "ApprovalRecorded":
        return None, f"{at} approval recorded ({_approvers(p)}); more approvals needed"
    if event_type == "AccessApproved":
        return "APPROVED", f"{at} approved by {_approvers(p)}"
    if event_type == "BreakGlassUsed":
        return "APPROVED", f"{at} BREAK-GLASS self-approval by {p.get('requester_arn')}"
    if event_type == "AutoApproved":
        return "APPROVED", f"{at} auto-approved ({p.get('auto_approval', '')})"
    if event_type == "AccessRejected":
        return "REJECTED", f"{at} rejected: {p.get('comment', '')}"
    if event_type == "AccessRequestCancelled":
        return "CANCELLED", f"{at} cancelled by the requester"
    if event_type == "AccessRequestExpired":
        return "EXPIRED", f"{at} expired before anyone decided"
    if event_type in ("AccessRequestReminder", "AccessRequestEscalated"):
        return None, f"{at} {'escalated' if event_type.endswith('Escalated') else 'reminder sent'}"
    if event_type == "AccessGranted":
        return "ACTIVE", f"{at} granted until {p.get('expires_at')}"
    if event_type == "AccessDenied":
        codes = ", ".join(str(d.get("code")) for d in p.get("denials") or [] if isinstance(d, Mapping))
        return "DENIED", f"{at} denied by the engine ({codes})"
    if event_type == "AccessRevoked":
        reason = str(p.get("reason", ""))
        state = "EXPIRED" if reason == "expired" else "REVOKED"
        return (
            state,
            f"{at} {'expired' if state == 'EXPIRED' else 'revoked'} ({reason}) by {p.get('revoked_by')}",
        )
    return None, ""


def card_from(payload: Mapping[str, Any], tags: Mapping[str, str]) -> RequestCard:
    return RequestCard(
        request_id=str(payload["request_id"]),
        principal_name=str(payload.get("principal_name", "")),
        principal_arn=str(payload.get("principal_arn", "")),
        requester_arn=str(payload.get("requester_arn", "")),
        account=str(payload.get("account", "")),
        instance_id=str(payload.get("instance_id", "")),
        duration_minutes=int(payload.get("duration_minutes") or 0),
        reason=str(payload.get("reason", "")),
        ticket=str(payload.get("ticket") or ""),
        break_glass=bool(payload.get("break_glass")),
        rule=str(payload.get("rule", "")),
        instance_tags=dict(tags),
    )


def card_to_json(card: RequestCard) -> str:
    return json.dumps(asdict(card), sort_keys=True)


def card_from_json(text: str) -> RequestCard:
    data = json.loads(text)
    data["instance_tags"] = dict(data.get("instance_tags") or {})
    data["history"] = tuple(data.get("history") or ())
    return RequestCard(**data)


@dataclass
class RequestMessages:
    state: ChatState
    chat: Outbound
    tags_of: Callable[[str, str], Mapping[str, str]]  # (account, instance id) -> its tags ({}: unknown)

    def on_event(self, event: Mapping[str, Any]) -> str:
        """One lifecycle event (the topic's ``lambda`` message: ``{"event_type": ..., **payload}``)."""
        event_type = str(event.get("event_type", ""))
        request_id = self._request_id(event)
        if request_id is None:
            return "ignored"
        event_id = str(event.get("event_id") or f"{event_type}/{request_id}/{event.get('at')}")
        state, line = _move(event_type, event)
        if not line:
            return "ignored"
        log = bind(request_id=request_id, event_id=event_id)
        for _ in range(SAVE_ATTEMPTS):
            stored = self.state.message_of(request_id)
            if stored is None:
                channel = event.get("slack_channel")
                if event_type not in POSTED or not isinstance(channel, str) or not channel:
                    return "ignored"  # no channel for its rule, or its message was never posted
                card = replace(
                    card_from(
                        event, self.tags_of(str(event.get("account", "")), str(event.get("instance_id")))
                    ),
                    state=state or "PENDING",
                    history=(line,),
                )
                channel_id, ref = self.chat.post(channel, card)
                if self.state.save_message(request_id, StoredMessage(channel_id, ref, card, 1, (event_id,))):
                    log.info("chat message posted", extra={"channel": channel_id})
                    return "posted"
                continue  # a concurrent delivery posted too: update that one
            if event_id in stored.seen:
                return "duplicate"
            card = replace(
                stored.card, state=state or stored.card.state, history=(*stored.card.history, line)
            )
            updated = StoredMessage(
                stored.channel, stored.ref, card, stored.version + 1, (*stored.seen[-20:], event_id)
            )
            self.chat.update(stored.channel, stored.ref, card)  # (again, if the save below loses a race)
            if self.state.save_message(request_id, updated):
                log.info("chat message updated", extra={"state": card.state})
                return "updated"
        raise TransientError(f"the message of request {request_id} kept changing")

    @staticmethod
    def _request_id(event: Mapping[str, Any]) -> str | None:
        if event.get("request_id"):
            return str(event["request_id"])
        if event.get("origin") == "native" and event.get("origin_ref"):
            return str(event["origin_ref"])  # a grant's event: the request it came from
        logger().debug("event without a native request")
        return None
