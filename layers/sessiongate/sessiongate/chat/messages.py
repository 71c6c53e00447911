"""Request messages in the rule's channel, kept up to date from the lifecycle events (the outbox's SNS
topic; this module only reads the events' payloads, whose shapes it does not change).

A request whose rule names a channel (``slack_channel``, recorded in the request's rule snapshot and so
in its events) is posted with the first of its events that arrives (AccessRequested; BreakGlassUsed
and AutoApproved, without buttons); every other event of that request, and the grant's
(AccessGranted/Denied/Revoked, whose ``origin_ref`` is the request id), updates the same message: its
state and one history entry. The card's facts are kept with the message (the grant's events do not
carry the reason or the ticket). Events are delivered at least once and in no set order: an event id
already shown is skipped, a state never moves back, the history stays in time order.

An event is only a trigger: the topic may be published to by others than SessionGate (an IAM user with
sns:Publish, before the topic policy is deployed), and a forged AccessRequested showing harmless facts
next to real Approve buttons would get a real request approved. So the card's facts and its channel
come from the request's record (the requests table, which only SessionGate's roles may write: its
resource policy), read by the event's request id; an event whose request has no record, or whose
record's rule names no channel, posts nothing; the buttons are shown only while the record is PENDING.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from sessiongate.access_requests.records import Request
from sessiongate.chat.ports import ChatState, Outbound, RequestCard, StoredMessage, history_entry
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger

SAVE_ATTEMPTS = 3
# SNS invokes the notifier once per event, in no particular order: a state never moves back (an
# AccessRequested delivered after the AccessApproved does not reopen the message), and the history is
# kept in time order.
RANK = {"PENDING": 0, "APPROVED": 1, "ACTIVE": 2}
FINAL = 3  # REJECTED, CANCELLED, EXPIRED, DENIED, REVOKED


def _rank(state: str) -> int:
    return RANK.get(state, FINAL)


def _later(current: str, new: str | None) -> str:
    return new if new is not None and _rank(new) >= _rank(current) else current


def _approvers(payload: Mapping[str, Any]) -> str:
    return ", ".join(str(a) for a in payload.get("approver_arns") or []) or "-"


# A move's place in a request's life (history entries of the same second sort by it).
ORDER = {
    "AccessRequested": 0,
    "ApprovalRecorded": 1,
    "AccessRequestReminder": 1,
    "AccessRequestEscalated": 1,
    "AccessApproved": 2,
    "BreakGlassUsed": 2,
    "AutoApproved": 2,
    "AccessRejected": 3,
    "AccessRequestCancelled": 3,
    "AccessRequestExpired": 3,
    "AccessGranted": 4,
    "AccessDenied": 4,
    "AccessRevoked": 5,
}


def _move(event_type: str, p: Mapping[str, Any]) -> tuple[str | None, str]:
    """(the card's new state or None to keep it, the history entry) of one event."""
    state, text = _what(event_type, p)
    if not text:
        return state, ""
    return state, history_entry(str(p.get("at", "")), ORDER.get(event_type, 9), text)


def _what(event_type: str, p: Mapping[str, Any]) -> tuple[str | None, str]:
    if event_type == "AccessRequested":
        return "PENDING", f"requested by {p.get('requester_arn')}"
    if event_type == "ApprovalRecorded":
        return None, f"approval recorded ({_approvers(p)}); more approvals needed"
    if event_type == "AccessApproved":
        return "APPROVED", f"approved by {_approvers(p)}"
    if event_type == "BreakGlassUsed":
        return "APPROVED", f"BREAK-GLASS self-approval by {p.get('requester_arn')}"
    if event_type == "AutoApproved":
        return "APPROVED", f"auto-approved ({p.get('auto_approval', '')})"
    if event_type == "AccessRejected":
        return "REJECTED", f"rejected: {p.get('comment', '')}"
    if event_type == "AccessRequestCancelled":
        return "CANCELLED", "cancelled by the requester"
    if event_type == "AccessRequestExpired":
        return "EXPIRED", "expired before anyone decided"
    if event_type in ("AccessRequestReminder", "AccessRequestEscalated"):
        return None, f"{'escalated' if event_type.endswith('Escalated') else 'reminder sent'}"
    if event_type == "AccessGranted":
        return "ACTIVE", f"granted until {p.get('expires_at')}"
    if event_type == "AccessDenied":
        codes = ", ".join(str(d.get("code")) for d in p.get("denials") or [] if isinstance(d, Mapping))
        return "DENIED", f"denied by the engine ({codes})"
    if event_type == "AccessRevoked":
        reason = str(p.get("reason", ""))
        state = "EXPIRED" if reason == "expired" else "REVOKED"
        return (
            state,
            f"{'expired' if state == 'EXPIRED' else 'revoked'} ({reason}) by {p.get('revoked_by')}",
        )
    return None, ""


def card_of(record: Request, tags: Mapping[str, str]) -> RequestCard:
    """The card's facts, from the request's record only (never from an event's payload)."""
    return RequestCard(
        request_id=record.request_id,
        principal_name=record.principal_name,
        principal_arn=record.principal_arn,
        requester_arn=record.requester_arn,
        account=record.account,
        instance_id=record.instance_id,
        duration_minutes=record.duration_minutes,
        reason=record.reason,
        ticket=record.ticket,
        break_glass=record.break_glass,
        rule=record.rule,
        instance_tags=dict(tags),
    )


def channel_of(record: Request) -> str | None:
    """The channel of the record's rule (its rule snapshot, written by the request API), if any."""
    channel = (record.notice_rule or {}).get("slack_channel")
    return channel if isinstance(channel, str) and channel else None


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
    record_of: Callable[[str], Request | None]  # request id -> its record (the requests table)

    def on_event(self, event: Mapping[str, Any]) -> str:
        """One lifecycle event (the topic's ``lambda`` message: ``{"event_type": ..., **payload}``)."""
        event_type = str(event.get("event_type", ""))
        if event_type == "ChatUnlinked":  # a replaced link: its chat user is told (chat/links.py)
            from sessiongate.chat.links import tell_replaced

            return tell_replaced(self.chat, event)
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
                if not event.get("request_id"):
                    return "ignored"  # a grant's event before any request's
                record = self.record_of(request_id)
                channel = channel_of(record) if record is not None else None
                if record is None or channel is None:
                    return "ignored"  # no such request (a forged event), or no channel for its rule
                # Buttons only while the record itself is PENDING (a state never moves back).
                first = _later(state or "PENDING", str(record.status))
                card = replace(
                    card_of(record, self.tags_of(record.account, record.instance_id)),
                    state=first,
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
                stored.card,
                state=_later(stored.card.state, state),
                history=tuple(sorted((*stored.card.history, line))),
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
