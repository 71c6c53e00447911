"""The transactional outbox: a record's own state transition IS its lifecycle event (pure, no AWS).

The ledger and the requests table stream every change (DynamoDB Streams, NEW_AND_OLD_IMAGES). The
stream consumer (``functions/publish_events``) hands each change's old and new record to
:func:`grant_events` or :func:`request_events`, which answer the lifecycle events it stands for, with
exactly the payloads and subjects subscribers received when the handlers published them in-path. So
an event is committed by the very write that makes the change (nothing to forget, nothing extra to
write), is never published for a change that did not commit, and never blocks the change.

Each event carries a deterministic ``event_id`` (a message attribute and a payload field): stream
delivery is at least once (a retried batch publishes again), so subscribers that must not act twice
drop repeated ids. A grant reaches each of ACTIVE, DENIED and REVOKED at most once, and every write of
a request raises its ``version``: the id names the grant and status, or the request and version.

Operational alerts that are no state change (EventRejected, ReconcilerRepaired, PolicyChanged,
PolicyRejected) are still published by the handler that sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sessiongate.access_requests.groups import group_names
from sessiongate.access_requests.policy import Level, Rule, current_level, progress
from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.access_requests.rule_limits import Reminders, SessionDocument
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.errors import TransientError
from sessiongate.observability import logger

LEDGER = "ledger"
REQUESTS = "requests"
# The sessions a SessionsRecorded event lists (the record keeps up to core/usage.py MAX_SESSIONS).
EVENT_SESSIONS = 20


@dataclass(frozen=True)
class Lifecycle:
    """One lifecycle notification: what :meth:`sessiongate.adapters.notifier.Notifier.publish` sends."""

    event_type: str
    payload: dict[str, Any]
    subject: str
    event_id: str


# -- grants (the ledger) ---------------------------------------------------------------------------
def grant_payload(grant: Grant, at: str) -> dict[str, Any]:
    """The notification payload of a grant (``core/notifications.py`` renders it)."""
    return {
        "at": at,
        "grant_id": grant.grant_id,
        "status": grant.status.value,
        "account": grant.account,
        "instance_id": grant.instance_id,
        "principal_arn": grant.principal_arn,
        "principal_name": grant.principal_name,
        "origin": grant.origin,
        "origin_ref": grant.origin_ref,
        "requester_arn": grant.requester_arn,
        "approver_arns": grant.approver_arns,
        "expires_at": grant.expires_at,
        "slot": grant.slot,
    }


def granted(grant: Grant, at: str) -> Lifecycle:
    return _grant_event(
        "AccessGranted",
        grant,
        grant_payload(grant, at),
        f"SessionGate: {grant.principal_name} may open a session on {grant.instance_id}",
    )


def denied(grant: Grant, at: str) -> Lifecycle:
    codes = [d["code"] for d in grant.denials]
    return _grant_event(
        "AccessDenied",
        grant,
        {**grant_payload(grant, at), "denials": grant.denials},
        f"SessionGate: request {grant.grant_id} denied ({', '.join(codes)[:60]})",
    )


def revoked(grant: Grant, at: str, reason: str, by: str) -> Lifecycle:
    payload = {**grant_payload(grant, at), "reason": reason, "revoked_by": by}
    if grant.log_destination:
        # Where the grant's sessions' logs went (RequireSessionLogging; core/session_logging.py).
        payload["log_destination"] = grant.log_destination
    return _grant_event(
        "AccessRevoked",
        grant,
        payload,
        f"SessionGate: access of {grant.principal_name} to {grant.instance_id} revoked",
    )


def sessions_recorded(grant: Grant) -> Lifecycle:
    """The sessions a revoked grant's principal opened (core/usage.py), recorded after the revocation."""
    payload = {
        **grant_payload(grant, grant.usage_recorded_at or grant.revoked_at or grant.created_at),
        "revoked_at": grant.revoked_at,
        # At most EVENT_SESSIONS of them (an SNS message is at most 256 KB): ``session_count`` counts all.
        "sessions": None if grant.sessions is None else grant.sessions[:EVENT_SESSIONS],
        "used": bool(grant.sessions),
    }
    if grant.sessions is not None:
        total = grant.session_count if grant.session_count is not None else len(grant.sessions)
        payload["session_count"] = total
        if total > EVENT_SESSIONS:
            payload["sessions_truncated"] = True
    if grant.usage_unknown:
        payload["usage_unknown"] = grant.usage_unknown
    if grant.log_destination:
        payload["log_destination"] = grant.log_destination
    count = "unknown" if grant.sessions is None else str(payload["session_count"])
    return _grant_event(
        "SessionsRecorded",
        grant,
        payload,
        f"SessionGate: {grant.principal_name} opened {count} session(s) on {grant.instance_id}",
    )


def _grant_event(event_type: str, grant: Grant, payload: dict[str, Any], subject: str) -> Lifecycle:
    event_id = f"{event_type}/{grant.grant_id}"
    return Lifecycle(event_type, {**payload, "event_id": event_id}, subject, event_id)


def grant_events(old: Grant | None, new: Grant | None) -> list[Lifecycle]:
    """The lifecycle events of one ledger change: the grant record's move into ACTIVE, DENIED or
    REVOKED (created in it, or moved from another status), and a revoked grant's sessions recorded
    (``SessionsRecorded``, once: ``usage_recorded_at`` is written once). Other changes (slot claims,
    tombstones, the schedule name, a record written again unchanged) are none."""
    if new is None:
        return []
    if old is not None and old.status is new.status:
        if new.status is GrantStatus.REVOKED and old.usage_recorded_at is None and new.usage_recorded_at:
            return [sessions_recorded(new)]
        return []
    if new.status is GrantStatus.ACTIVE:
        return [granted(new, new.activated_at or new.created_at)]
    if new.status is GrantStatus.DENIED:
        return [denied(new, new.denied_at or new.created_at)]
    if new.status is GrantStatus.REVOKED:
        return [revoked(new, new.revoked_at or new.created_at, new.revoke_reason or "", new.revoked_by or "")]
    return []


# -- native requests (the requests table) ----------------------------------------------------------
_REQUEST_SUBJECTS = {
    "AccessRequested": "SessionGate: approve {r.principal_name} on {r.instance_id}?",
    "ApprovalRecorded": "SessionGate: more approvals needed for request {r.request_id}",
    "AccessApproved": "SessionGate: request {r.request_id} approved",
    "AccessRejected": "SessionGate: request {r.request_id} rejected",
    "AccessRequestCancelled": "SessionGate: request {r.request_id} cancelled",
    "AccessRequestExpired": "SessionGate: request {r.request_id} expired unapproved",
    "BreakGlassUsed": "SessionGate: BREAK-GLASS {r.principal_name} on {r.instance_id}",
    "AccessRequestReminder": "SessionGate: reminder - request {r.request_id} waits for you",
    "AccessRequestEscalated": "SessionGate: ESCALATED - request {r.request_id} still waits",
    "AutoApproved": "SessionGate: AUTO-APPROVED {r.principal_name} on {r.instance_id}",
}
# The events whose payload describes the approval rule (the rule the writer decided under).
_WITH_RULE = frozenset(
    {
        "AccessRequested",
        "ApprovalRecorded",
        "AccessApproved",
        "AccessRejected",
        "BreakGlassUsed",
        "AccessRequestReminder",
        "AccessRequestEscalated",
        "AutoApproved",
    }
)


def rule_snapshot(rule: Rule) -> dict[str, Any]:
    """What a request record keeps of the rule its writer decided under (``Request.notice_rule``): the
    notification of that write describes the rule as it was then, whatever the policy says later.
    Its levels (ARN patterns and Identity Center groups), its Session Manager documents (hosts and
    ports, for the approvers) and whom an escalation notifies."""
    snapshot: dict[str, Any] = {
        "name": rule.name,
        "levels": [
            {
                "name": lv.name,
                "approvers": list(lv.approvers),
                "min_approvals": lv.min_approvals,
                "groups": list(lv.groups),
            }
            for lv in rule.levels
        ],
    }
    if rule.documents:
        snapshot["documents"] = [d.as_dict() for d in rule.documents]
    if rule.reminders is not None:
        snapshot["escalate_to"] = list(rule.reminders.escalate_to)
    if rule.slack_channel:  # issue 19: where the request's message is posted (only when set)
        snapshot["slack_channel"] = rule.slack_channel
    return snapshot


class _Accepted:
    """Group membership as the record's writer found it: every approval a record holds was accepted by
    the request API, which asked the identity store then (:mod:`.access_requests.groups`); the
    publisher describes that write and asks nobody (it has no identity store)."""

    def is_member(self, user_name: str, groups: Sequence[str]) -> bool:
        return True


def rule_from_snapshot(snapshot: Mapping[str, Any] | None, accepted: Sequence[str] = ()) -> Rule | None:
    """The rule of a snapshot (the numbers come back from DynamoDB as ``Decimal``); ``accepted``: the
    approvers the request API accepted, whose accounts it served (group members are only ever looked
    up in served accounts: :func:`.access_requests.groups.idc_user`)."""
    if not snapshot:
        return None
    served = frozenset(arn.split(":")[4] for arn in accepted if arn.count(":") >= 5)
    levels = tuple(
        Level(
            str(lv["name"]),
            tuple(str(a) for a in lv["approvers"]),
            int(lv["min_approvals"]),
            groups=tuple(str(g) for g in lv.get("groups") or ()),
            membership=_Accepted(),
            served=served,
        )
        for lv in snapshot.get("levels") or []
    )
    documents = tuple(
        SessionDocument(
            str(d["name"]),
            tuple(str(h) for h in d.get("hosts") or ()),
            tuple(int(p) for p in d.get("ports") or ()),
        )
        for d in snapshot.get("documents") or []
    )
    reminders = (
        Reminders(escalate_to=tuple(str(a) for a in snapshot["escalate_to"]))
        if "escalate_to" in snapshot
        else None
    )
    channel = snapshot.get("slack_channel")
    return Rule(
        str(snapshot["name"]),
        levels,
        documents=documents or None,
        reminders=reminders,
        slack_channel=str(channel) if channel else None,
    )


def request_payload(
    request: Request, at: str, rule: Rule | None, *, escalation: bool = False
) -> dict[str, Any]:
    """The notification payload of a native request (``core/notifications.py`` renders it);
    ``escalation``: an AccessRequestEscalated, which names whom the escalation notifies."""
    payload: dict[str, Any] = {
        "at": at,
        "request_id": request.request_id,
        "grant_id": request.grant_id,
        "status": request.status.value,
        "account": request.account,
        "instance_id": request.instance_id,
        "principal_arn": request.principal_arn,
        "principal_name": request.principal_name,
        "requester_arn": request.requester_arn,
        "approver_arns": [a.approver_arn for a in request.approvals],
        "duration_minutes": request.duration_minutes,
        "reason": request.reason,
        "ticket": request.ticket,
        "break_glass": request.break_glass,
        "origin": "native",
        "origin_ref": request.request_id,
    }
    if request.extends:
        payload["extends"] = request.extends
    if request.comment:
        payload["comment"] = request.comment
    if request.start_at:
        payload["start_at"] = request.start_at
    if request.documents:
        payload["documents"] = list(request.documents)
        if rule is not None and rule.documents:  # hosts and ports are for the approvers to judge
            payload["rule_documents"] = [d.as_dict() for d in rule.documents if d.name in request.documents]
    if request.auto_approval:
        payload["approval_kind"] = "AutoApproved"
        payload["auto_approval"] = request.auto_approval
    if rule is not None:
        payload["rule"] = rule.name
        if request.status is RequestStatus.PENDING:
            payload["approval_progress"] = progress(rule, request.approvals)
        level = current_level(rule, request.approvals)
        if level is not None and request.status is RequestStatus.PENDING:
            next_level = rule.levels[level]
            payload["next_approvers"] = [*next_level.approvers, *group_names(next_level.groups)]
        if escalation and rule.reminders is not None:
            payload["escalate_to"] = list(rule.reminders.escalate_to)
        if rule.slack_channel:  # issue 19 (added only when the rule names a channel)
            payload["slack_channel"] = rule.slack_channel
        if request.break_glass or request.auto_approval:
            arns = sorted({p for lv in rule.levels for p in lv.approvers})
            groups = sorted({g for lv in rule.levels for g in lv.groups})
            payload["notify_approvers"] = [*arns, *group_names(groups)]
    return payload


def request_event(event_type: str, request: Request, at: str) -> Lifecycle:
    accepted = [a.approver_arn for a in request.approvals]
    rule = rule_from_snapshot(request.notice_rule, accepted) if event_type in _WITH_RULE else None
    event_id = f"{event_type}/{request.request_id}/{request.version}"
    payload = request_payload(request, at, rule, escalation=event_type == "AccessRequestEscalated")
    return Lifecycle(
        event_type,
        {**payload, "event_id": event_id},
        _REQUEST_SUBJECTS[event_type].format(r=request),
        event_id,
    )


def _approved_event(request: Request) -> str:
    """How an approval is notified: a break-glass self-approval, an auto-approval (issue 18: never as
    a person's approval), or the approvers'."""
    if request.break_glass:
        return "BreakGlassUsed"
    return "AutoApproved" if request.auto_approval else "AccessApproved"


def request_events(old: Request | None, new: Request | None) -> list[Lifecycle]:
    """The lifecycle events of one change of a request record (see :mod:`.records` for the states):

    - created PENDING: AccessRequested; created APPROVED: BreakGlassUsed (a break-glass
      self-approval) or AutoApproved (a permit of the policy approved it, ``auto_approval``);
    - PENDING, one more approval, still PENDING: ApprovalRecorded;
    - PENDING, still PENDING, the sweep set ``escalated_at``: AccessRequestEscalated; else raised
      ``reminders_sent``: AccessRequestReminder (issue 18; the escalation names the awaited approvers
      too, so one sweep's write that does both is the escalation);
    - PENDING -> APPROVED: AccessApproved (BreakGlassUsed, AutoApproved as above); -> REJECTED:
      AccessRejected; -> CANCELLED: AccessRequestCancelled; -> EXPIRED: AccessRequestExpired.

    The moves that follow the grant (APPROVED -> ACTIVE, REVOKED, EXPIRED, DENIED) are the grant's own
    events, published from the ledger."""
    if new is None:
        return []
    if old is None:
        if new.status is RequestStatus.PENDING:
            return [request_event("AccessRequested", new, new.created_at)]
        if new.status is RequestStatus.APPROVED and (new.break_glass or new.auto_approval):
            return [request_event(_approved_event(new), new, new.approved_at or new.created_at)]
        return []
    if old.status is not RequestStatus.PENDING or old.version == new.version:
        return []
    if new.status is RequestStatus.PENDING:
        if len(new.approvals) > len(old.approvals):
            return [request_event("ApprovalRecorded", new, new.approvals[-1].at)]
        if new.escalated_at and new.escalated_at != old.escalated_at:
            return [request_event("AccessRequestEscalated", new, new.escalated_at)]
        if new.reminders_sent > old.reminders_sent:
            return [request_event("AccessRequestReminder", new, new.reminded_at or new.created_at)]
        return []
    event_type = {
        RequestStatus.APPROVED: _approved_event(new),
        RequestStatus.REJECTED: "AccessRejected",
        RequestStatus.CANCELLED: "AccessRequestCancelled",
        RequestStatus.EXPIRED: "AccessRequestExpired",
    }.get(new.status)
    if event_type is None:
        return []
    return [request_event(event_type, new, _moved_at(new))]


def _moved_at(request: Request) -> str:
    """When the request entered its status: its history's last entry (every move appends one)."""
    history: Sequence[Mapping[str, str]] = request.history
    if history and history[-1].get("status") == request.status.value:
        return str(history[-1]["at"])
    return request.approved_at or request.created_at


# -- stream records --------------------------------------------------------------------------------
def events_of(
    source: str, old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
) -> list[Lifecycle]:
    """The lifecycle events of one stream record of ``source`` (:data:`LEDGER` or :data:`REQUESTS`),
    its images in DynamoDB's typed JSON (``{"S": ...}``). Items that are not grant or request records
    (slot locks, lone tombstones, quotas, the policy record) stand for no event."""
    if source == LEDGER:
        from sessiongate.adapters.ledger import to_grant

        def grant(image: Mapping[str, Any] | None) -> Grant | None:
            if not image or "status" not in image or not str(image["pk"]["S"]).startswith("GRANT#"):
                return None
            return to_grant(dict(image))

        return grant_events(grant(old_image), grant(new_image))
    if source == REQUESTS:
        from sessiongate.adapters.request_store import from_item

        def request(image: Mapping[str, Any] | None) -> Request | None:
            return from_item(dict(image)) if image and "status" in image else None

        return request_events(request(old_image), request(new_image))
    raise ValueError(f"unknown outbox source {source!r}")


# -- the stream consumer -----------------------------------------------------------------------------
class Publishes(Protocol):
    def publish(
        self, event_type: str, payload: Mapping[str, Any], *, subject: str, event_id: str | None = None
    ) -> bool: ...


class Publisher:
    """Publishes the lifecycle events of stream records; raises when one could not be published, so
    the record is retried (and after the retries, reported to the on-failure queue)."""

    def __init__(self, notifier: Publishes, tables: Mapping[str, str]) -> None:
        self._notifier = notifier
        self._tables = dict(tables)  # table name -> LEDGER or REQUESTS

    def source_of(self, event_source_arn: str) -> str:
        """Which table a stream belongs to: ``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL``."""
        resource = event_source_arn.split(":", 5)[-1]
        parts = resource.split("/")
        if len(parts) < 2 or parts[0] != "table" or parts[1] not in self._tables:
            raise ValueError(f"records of an unknown stream {event_source_arn!r}")
        return self._tables[parts[1]]

    def publish(self, event_source_arn: str, change: Mapping[str, Any]) -> list[str]:
        """Publish the events of one stream record (``change``: its ``dynamodb`` part); their ids."""
        events = events_of(self.source_of(event_source_arn), change.get("OldImage"), change.get("NewImage"))
        for event in events:
            if not self._notifier.publish(
                event.event_type, event.payload, subject=event.subject, event_id=event.event_id
            ):
                raise TransientError(f"lifecycle event {event.event_id} was not published")
            logger().info("lifecycle event published", extra={"event_id": event.event_id})
        return [e.event_id for e in events]
