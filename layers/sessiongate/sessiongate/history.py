"""The history export (issue 17): every ledger transition as one JSON Lines record in S3 (pure, no AWS).

The stream consumer (``functions/export_history``) reads the same change streams as
``functions/publish_events`` and maps each change with the very same interpretation
(:func:`sessiongate.outbox.grant_events`, :func:`sessiongate.outbox.request_events`): a change that
is a lifecycle event is a history record, nothing else is. Reminders and escalations are
notifications about a waiting request, not transitions of it: they are not exported.

Record format: ``docs/audit/history-record.v1.schema.json`` (versioned: a change of meaning or type
is a new version under a new prefix, ``history/v2/``; adding an optional field is not).

Object keys are idempotent: one object per record, named after the record's own identity
(``history/v1/dt=<date of the transition>/<record id>.jsonl``). Stream delivery is at least once, and
a retried batch is not the same batch (bisection splits it, a partial-batch retry resumes at the
failed record), so a key per batch could not be idempotent; a key per record is: a redelivered record
overwrites its own object, whichever batch carries it, and the backfill
(:func:`backfill_records`, rebuilt from the tables) writes the same keys. No line is ever duplicated.
One limit: a grant resumed after a crash moves its ``activated_at`` on (seconds later); should that
cross midnight UTC, a backfill would date its grant record a day later than the stream did (two
objects of one record id in two partitions; ``sessiongate audit`` keeps one per grant).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

from sessiongate import outbox
from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.observability import logger
from sessiongate.outbox import (
    LEDGER,
    REQUESTS,
    Lifecycle,
    denied,
    grant_events,
    granted,
    request_event,
    request_events,
    revoked,
)

SCHEMA = "sessiongate.history.v1"
PREFIX = "history/v1/"

Via = Literal["stream", "backfill"]

# Lifecycle event -> the transition it records ("extension": the approval of a request that extends an
# active grant; its grant is then an ordinary "grant").
TRANSITIONS: dict[str, str] = {
    "AccessRequested": "request",
    "ApprovalRecorded": "approval",
    "AccessApproved": "approved",
    "AutoApproved": "approved",
    "BreakGlassUsed": "approved",
    "AccessRejected": "rejected",
    "AccessRequestCancelled": "cancelled",
    "AccessRequestExpired": "expired",
    "AccessGranted": "grant",
    "AccessDenied": "denial",
    "AccessRevoked": "revocation",
    # The sessions a revoked grant's person opened, recorded after the revocation (issue 17, usage:
    # ``outbox.sessions_recorded`` where the release has it).
    "SessionsRecorded": "sessions",
}
_APPROVAL_KINDS = {"AccessApproved": "approvers", "AutoApproved": "auto", "BreakGlassUsed": "break_glass"}
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


@dataclass(frozen=True)
class HistoryRecord:
    """One record and where it lives (``key``)."""

    key: str
    record: dict[str, Any]

    def line(self) -> bytes:
        """The object's body: the record as one JSON line (keys sorted: the same record, the same bytes)."""
        return (json.dumps(self.record, sort_keys=True, separators=(",", ":")) + "\n").encode()


def day_of(at: str) -> date:
    """The UTC date of an ISO-8601 time (``...Z`` or with an offset)."""
    when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).date()


def object_key(record_id: str, at: str) -> str:
    """``history/v1/dt=YYYY-MM-DD/<record id>.jsonl``: the record id's ``/`` become ``.``, any other
    character outside ``[A-Za-z0-9._=-]`` a ``_`` (ids are UUIDs, ARNs never appear in them)."""
    name = _SAFE.sub("_", record_id.replace("/", "."))
    return f"{PREFIX}dt={day_of(at).isoformat()}/{name}.jsonl"


def _record_id(event: Lifecycle, request: Request | None, grant: Grant | None) -> str:
    transition = _transition(event, request)
    if grant is not None:
        return f"grant/{grant.grant_id}/{transition}"
    assert request is not None
    if transition == "approval":
        # One per approval: the n-th approval of the request (its approvals only grow while PENDING).
        return f"request/{request.request_id}/approval/{len(event.payload['approver_arns'])}"
    return f"request/{request.request_id}/{transition}"


def _transition(event: Lifecycle, request: Request | None) -> str:
    transition = TRANSITIONS[event.event_type]
    if transition == "approved" and request is not None and request.extends:
        return "extension"
    return transition


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def to_record(
    event: Lifecycle, *, grant: Grant | None = None, request: Request | None = None, via: Via
) -> HistoryRecord | None:
    """The history record of a lifecycle event of ``grant`` (the ledger) or ``request`` (the requests
    table), as the record stood after the change; ``None`` for events that are no transition."""
    if event.event_type not in TRANSITIONS:
        return None
    p = event.payload
    at = str(p["at"])
    record_id = _record_id(event, request, grant)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "record_id": record_id,
        # The lifecycle notification's id (subscribers saw it); a request event's id names the record's
        # version, which a backfill cannot know: null there.
        "event_id": event.event_id if via == "stream" or grant is not None else None,
        "event_type": event.event_type,
        "transition": _transition(event, request),
        "at": at,
        "via": via,
        "grant_id": _text(p.get("grant_id")),
        "request_id": _text(p.get("request_id")),
        "status": str(p["status"]),
        "account": str(p["account"]),
        "instance_id": str(p["instance_id"]),
        "principal_arn": str(p["principal_arn"]),
        "principal_name": str(p["principal_name"]),
        "requester_arn": str(p["requester_arn"]),
        "approver_arns": [str(a) for a in p.get("approver_arns") or []],
        "approval_kind": _APPROVAL_KINDS.get(event.event_type),
        "origin": str(p["origin"]),
        "origin_ref": str(p["origin_ref"]),
        "duration_minutes": None,
        "expires_at": _text(p.get("expires_at")),
        "reason": _text(p.get("reason")),
        "ticket": _text(p.get("ticket")),
        "extends": _text(p.get("extends")),
        "comment": _text(p.get("comment")),
        "rule": _text(p.get("rule")),
        "denials": [
            {"code": str(d.get("code", "")), "message": str(d.get("message", ""))}
            for d in p.get("denials") or []
        ],
        "revoke_reason": _text(p.get("reason")) if event.event_type == "AccessRevoked" else None,
        "revoked_by": _text(p.get("revoked_by")),
        "sessions": _sessions(p.get("sessions")),
        "usage_unknown": _text(p.get("usage_unknown")),
        "log_destination": _destination(p.get("log_destination")),
    }
    if grant is not None:
        # A grant's payload has no request facts of its own: the request id of a native grant is its
        # origin reference; its length and reason come from the record.
        record["request_id"] = grant.origin_ref if grant.origin == "native" else None
        record["duration_minutes"] = grant.duration_minutes
        record["reason"] = _text(grant.reason)
    else:
        assert request is not None
        record["duration_minutes"] = request.duration_minutes
        if request.auto_approval and event.event_type == "AutoApproved":
            record["approver_arns"] = []  # issue 18: an auto-approval is nobody's approval
    return HistoryRecord(object_key(record_id, at), record)


def _destination(value: Any) -> dict[str, str | None] | None:
    """Where the grant's sessions' logs go (RequireSessionLogging), when the record says."""
    if not isinstance(value, Mapping) or not value:
        return None
    return {k: _text(value.get(k)) for k in ("s3_bucket", "s3_prefix", "log_group")}


def _sessions(value: Any) -> list[dict[str, str | None]]:
    """Sessions the person opened under the grant, when the record names them (issue 17, usage)."""
    out: list[dict[str, str | None]] = []
    for s in value or []:
        if isinstance(s, Mapping) and s.get("session_id"):
            out.append(
                {
                    "session_id": str(s["session_id"]),
                    "started_at": _text(s.get("started_at")),
                    "ended_at": _text(s.get("ended_at")),
                }
            )
    return out


# -- stream records -------------------------------------------------------------------------------
def _grant(image: Mapping[str, Any] | None) -> Grant | None:
    from sessiongate.adapters.ledger import to_grant

    if not image or "status" not in image or not str(image["pk"]["S"]).startswith("GRANT#"):
        return None
    return to_grant(dict(image))


def _request(image: Mapping[str, Any] | None) -> Request | None:
    from sessiongate.adapters.request_store import from_item

    return from_item(dict(image)) if image and "status" in image else None


def records_of(
    source: str, old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None
) -> list[HistoryRecord]:
    """The history records of one stream record of ``source`` (``outbox.LEDGER`` or ``outbox.REQUESTS``),
    its images in DynamoDB's typed JSON: exactly the transitions ``outbox.events_of`` publishes."""
    if source == LEDGER:
        new = _grant(new_image)
        events = grant_events(_grant(old_image), new)
        return [r for e in events if (r := to_record(e, grant=new, via="stream")) is not None]
    if source == REQUESTS:
        req = _request(new_image)
        events = request_events(_request(old_image), req)
        return [r for e in events if (r := to_record(e, request=req, via="stream")) is not None]
    raise ValueError(f"unknown history source {source!r}")


# -- the backfill: the transitions a record's current state proves -----------------------------------
def grant_history(grant: Grant) -> list[tuple[Lifecycle, Grant]]:
    """The lifecycle events a grant record went through, rebuilt from its current state as the stream
    saw them (``outbox.grant_events``), each with the grant as it stood then: granted when it was ever
    bound (``activated_at``: the engine creates grants ACTIVE), then denied or revoked."""
    from dataclasses import replace

    out: list[tuple[Lifecycle, Grant]] = []
    if grant.activated_at and grant.status is not GrantStatus.PROVISIONING:
        active = replace(grant, status=GrantStatus.ACTIVE)
        out.append((granted(active, grant.activated_at), active))
    if grant.status is GrantStatus.DENIED:
        out.append((denied(grant, grant.denied_at or grant.created_at), grant))
    if grant.status is GrantStatus.REVOKED:
        at = grant.revoked_at or grant.created_at
        out.append((revoked(grant, at, grant.revoke_reason or "", grant.revoked_by or ""), grant))
        # The sessions recorded after the revocation, where this release records them.
        recorded = getattr(outbox, "sessions_recorded", None)
        if recorded is not None and getattr(grant, "usage_recorded_at", None):
            out.append((recorded(grant), grant))
    return out


def request_history(request: Request) -> list[tuple[Lifecycle, Request]]:
    """The transitions of a request record, rebuilt from its current state as the stream saw them
    (``outbox.request_events``): created PENDING, each approval that left it PENDING, then its one move
    out of PENDING (approved, or rejected, cancelled, expired: the first such entry of its history);
    or created APPROVED (break-glass, auto-approval). Each with the request as it stood then."""
    from dataclasses import replace

    approved = request.approved_at is not None or request.status is RequestStatus.APPROVED
    if request.break_glass or request.auto_approval:
        if not approved:
            return []
        then = replace(request, status=RequestStatus.APPROVED)
        kind = "BreakGlassUsed" if request.break_glass else "AutoApproved"
        return [(request_event(kind, then, request.approved_at or request.created_at), then)]
    pending = replace(request, status=RequestStatus.PENDING, approvals=())
    out = [(request_event("AccessRequested", pending, request.created_at), pending)]
    recorded = len(request.approvals) - (1 if approved and request.approvals else 0)
    for n in range(1, recorded + 1):
        then = replace(request, status=RequestStatus.PENDING, approvals=request.approvals[:n])
        out.append((request_event("ApprovalRecorded", then, request.approvals[n - 1].at), then))
    moves = [
        (RequestStatus(str(e["status"])), str(e["at"]))
        for e in request.history
        if str(e.get("status")) in _LEAVES_PENDING and "at" in e
    ]
    if approved:
        at = next(
            (a for s, a in moves if s is RequestStatus.APPROVED), request.approved_at or request.created_at
        )
        then = replace(request, status=RequestStatus.APPROVED)
        out.append((request_event("AccessApproved", then, at), then))
    elif moves:
        status, at = moves[0]
        then = replace(request, status=status)
        out.append((request_event(_LEAVES_PENDING[status.value], then, at), then))
    return out


_LEAVES_PENDING = {
    RequestStatus.APPROVED.value: "AccessApproved",
    RequestStatus.REJECTED.value: "AccessRejected",
    RequestStatus.CANCELLED.value: "AccessRequestCancelled",
    RequestStatus.EXPIRED.value: "AccessRequestExpired",
}


def backfill_records(
    grant_items: Iterable[Mapping[str, Any]],
    request_items: Iterable[Mapping[str, Any]],
    since: date,
    until: date,
    *,
    failed: list[str] | None = None,
) -> list[HistoryRecord]:
    """The records of the transitions dated ``since``..``until`` (inclusive) that the tables' items (a
    scan, typed JSON) prove: the same keys the stream export writes for them.

    ``failed``: where to list the items that cannot be read (their keys, :func:`item_id`), which are
    then left out (the others are still exported); without it such an item raises."""

    def grant_records(item: Mapping[str, Any]) -> list[HistoryRecord | None]:
        grant = _grant(item)
        return (
            [] if grant is None else [to_record(e, grant=g, via="backfill") for e, g in grant_history(grant)]
        )

    def request_records(item: Mapping[str, Any]) -> list[HistoryRecord | None]:
        request = _request(item)
        return (
            []
            if request is None
            else [to_record(e, request=q, via="backfill") for e, q in request_history(request)]
        )

    out: list[HistoryRecord] = []
    for items, records_of, kind in (
        (grant_items, grant_records, "ledger"),
        (request_items, request_records, "request"),
    ):
        for item in items:
            try:
                records = records_of(item)
            except Exception:
                if failed is None:
                    raise
                failed.append(item_id(item))
                logger().exception(f"backfill: unreadable {kind} item", extra={"item": item_id(item)})
                continue
            out += [r for r in records if r is not None]
    return [r for r in out if since <= day_of(r.record["at"]) <= until]


def item_id(item: Mapping[str, Any]) -> str:
    """An item's key attributes (``pk``, ``sk``) as ``pk/sk``, for reports of items left out."""
    parts = []
    for name in ("pk", "sk"):
        value = item.get(name)
        if isinstance(value, Mapping) and value:
            parts.append(str(next(iter(value.values()))))
    return "/".join(parts) or "?"


@dataclass(frozen=True)
class Backfilled:
    """What a backfill wrote (``keys``) and the items it could not read (``failed``, :func:`item_id`)."""

    keys: list[str]
    failed: list[str]


# -- the stream consumer -------------------------------------------------------------------------------
class HistoryWrites(Protocol):
    def put(self, key: str, body: bytes) -> None:
        """Write one object (overwrite when it exists); raise when it could not be written."""


class Exporter:
    """Writes the history records of stream records; an error propagates so the record is retried (and
    after the retries, reported to the on-failure queue)."""

    def __init__(self, store: HistoryWrites, tables: Mapping[str, str], scanner: Any = None) -> None:
        self._store = store
        self._tables = dict(tables)  # table name -> LEDGER or REQUESTS
        self._scanner = scanner  # (table name) -> its items; the backfill's

    def source_of(self, event_source_arn: str) -> str:
        """Which table a stream belongs to: ``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL``."""
        parts = event_source_arn.split(":", 5)[-1].split("/")
        if len(parts) < 2 or parts[0] != "table" or parts[1] not in self._tables:
            raise ValueError(f"records of an unknown stream {event_source_arn!r}")
        return self._tables[parts[1]]

    def export(self, event_source_arn: str, change: Mapping[str, Any]) -> list[str]:
        """Write the records of one stream record (``change``: its ``dynamodb`` part); their keys."""
        records = records_of(self.source_of(event_source_arn), change.get("OldImage"), change.get("NewImage"))
        for record in records:
            self._store.put(record.key, record.line())
            logger().info("history record exported", extra={"key": record.key})
        return [r.key for r in records]

    def backfill(self, since: date, until: date) -> Backfilled:
        """Rebuild ``since``..``until`` from the tables (a scan of each): the keys written, and the items
        that could not be read (left out; one bad item does not stop the others)."""
        if self._scanner is None:
            raise ValueError("no table reader configured for the backfill")
        by_source: dict[str, list[Mapping[str, Any]]] = {LEDGER: [], REQUESTS: []}
        for table, source in self._tables.items():
            by_source[source] += list(self._scanner(table))
        failed: list[str] = []
        records = backfill_records(by_source[LEDGER], by_source[REQUESTS], since, until, failed=failed)
        for record in records:
            self._store.put(record.key, record.line())
        logger().info(
            "history backfilled",
            extra={
                "since": since.isoformat(),
                "until": until.isoformat(),
                "records": len(records),
                "failed_items": len(failed),
            },
        )
        return Backfilled([r.key for r in records], failed)


def parse_lines(body: bytes | str) -> list[dict[str, Any]]:
    """The records of a history object (JSON Lines; blank lines skipped)."""
    text = body.decode() if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def keys_between(since: date, until: date) -> Sequence[str]:
    """The partition prefixes of ``since``..``until`` (inclusive)."""
    from datetime import timedelta

    days = (until - since).days
    return [f"{PREFIX}dt={(since + timedelta(days=n)).isoformat()}/" for n in range(max(days + 1, 0))]
