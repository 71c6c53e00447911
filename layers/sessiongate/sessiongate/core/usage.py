"""Usage (issue 17): the sessions a grant's principal opened, and a weekly usage report.

Out of the revoke path (its 3 calls are a goal): the revocation's own write leaves the record in the
ledger's "usage pending" state (``adapters/ledger.py``: ``live = USAGE``, no extra call), and the
reconciler's steady run (:func:`record_pending`) reads Session Manager's history of the instance in the
target account (DescribeSessions, Active then History, filtered by target and by the grant's window),
keeps the sessions the grant's principal (its role session, when the grant is bound to one) started,
and writes them onto the record. That write is a record change: it reaches the outbox
(``SessionsRecorded``) and the history export like every other transition.

:func:`weekly_report` (the reconciler, on a weekly schedule) reads the grants revoked in the last 7 days
(one query per day of the ledger's index, not a scan) and publishes a summary (``UsageReport``, its
format in README "Usage") to the notification topic.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.identity import Identity
from sessiongate.core.model import Grant
from sessiongate.core.ports import AccountNotAllowed, MemberUnavailable, ServiceFailure
from sessiongate.core.revoke import REASON_EXTENDED
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger, metrics

if TYPE_CHECKING:
    from sessiongate.core.context import Context

# Session Manager shows a session a revocation terminated in its history shortly after: wait this long
# after the revocation before reading it (a judgment, not a documented bound; a session missed is one
# that started within the grant and is not found: the record says so only by its absence).
SETTLE = timedelta(seconds=60)
# DescribeSessions lists "terminated sessions from the past 30 days" (SSM API Reference,
# DescribeSessions): a grant revoked longer ago than that cannot be recorded any more: usage unknown.
HISTORY = timedelta(days=30)
# The sessions kept on a record (DynamoDB items are at most 400 KB; a session is ~0.5 KB); more are
# counted (``session_count``) and the record says it is truncated. SessionsRecorded carries fewer.
MAX_SESSIONS = 100
# Grants recorded per reconciler run (each costs two DescribeSessions calls, more when paged).
BATCH = 50
REPORT_DAYS = 7
REPORT_VERSION = 1
# The report lists at most this many unused grants and people (an SNS message is at most 256 KB).
REPORT_LIST_LIMIT = 100


def run_number(ctx: Context, now: datetime) -> int:
    """The steady run's number: consecutive runs (``ReconcilerRateMinutes`` apart) get consecutive
    numbers, so the ledger's rotation reads every ``USAGE#<n>`` shard once in 16 runs (80 minutes at
    the default 5; the daily sweep reads them all)."""
    return int(now.timestamp() // (max(1, ctx.settings.reconciler_rate_minutes) * 60))


def record_pending(ctx: Context, now: datetime, *, every_shard: bool = False) -> tuple[int, list[str]]:
    """Record the sessions of revoked grants whose usage is pending: (how many recorded, failures).
    The steady run reads one shard of the pending grants (``run_number``), the sweep every shard.

    A member account that cannot be reached, a refusal a retry would repeat (an SCP denying
    ssm:DescribeSessions: ``ServiceFailure.retryable`` False) and a grant revoked more than ``HISTORY``
    ago record the usage as unknown (``usage_unknown``), so the grant leaves the pending state; a
    failure that is no answer (throttling) leaves it pending for the next run and is a failure of this
    one. More than ``MAX_SESSIONS`` sessions: the first ones are kept, ``session_count`` says how many."""
    recorded, failures = 0, []
    rotation = None if every_shard else run_number(ctx, now)
    for grant in ctx.ledger.usage_pending(limit=BATCH, rotation=rotation):
        if grant.revoked_at is None or parse_iso(grant.revoked_at) + SETTLE > now:
            continue
        log = bind(grant_id=grant.grant_id, instance_id=grant.instance_id)
        sessions: list[dict[str, str]] | None
        unknown: str | None
        try:
            if parse_iso(grant.revoked_at) + HISTORY < now:
                sessions = None
                unknown = f"revoked more than {HISTORY.days} days ago: past Session Manager's history"
            else:
                try:
                    sessions, unknown = _sessions_of(ctx, grant)
                except ServiceFailure as exc:
                    if exc.retryable:
                        raise
                    sessions, unknown = None, f"Session Manager refused: {exc.code or exc}"
            count = None
            if sessions is not None and len(sessions) > MAX_SESSIONS:
                sessions, count = sessions[:MAX_SESSIONS], len(sessions)
            if ctx.ledger.record_usage(
                grant, sessions=sessions, at=to_iso(now), unknown=unknown, session_count=count
            ):
                recorded += 1
                log.info(
                    "grant usage recorded",
                    extra={"sessions": len(sessions) if sessions is not None else None, "unknown": unknown},
                )
                metrics().add("UsageRecorded")
        except (ServiceFailure, TransientError) as exc:
            logger().exception("could not record a grant's usage", extra={"grant_id": grant.grant_id})
            failures.append(f"usage of {grant.grant_id}: {exc}")
    return recorded, failures


def _sessions_of(ctx: Context, grant: Grant) -> tuple[list[dict[str, str]] | None, str | None]:
    try:
        sessions = ctx.adapters_in(grant.account).sessions
    except (MemberUnavailable, AccountNotAllowed) as exc:
        return None, f"account {grant.account} unreachable: {exc}"
    if sessions is None:
        return None, f"no Session Manager client for account {grant.account}"
    owner = Identity(ctx.settings.partition, grant.account, grant.principal_type, grant.principal_name)
    # A grant bound to one role session (shared roles) counts only that session's sessions.
    bound = grant.bound_user_id or ""
    session_name = bound.split(":", 1)[1] if ":" in bound else None
    assert grant.revoked_at is not None
    start = parse_iso(grant.activated_at or grant.created_at)
    # A grant resumed after a crash moved activated_at on: its window starts at its creation.
    start = min(start, parse_iso(grant.created_at))
    end = parse_iso(grant.revoked_at)
    successor = _extended_by(ctx, grant)
    if successor is not None:
        # An extension replaced this grant: both were live from the successor's creation until this
        # one's revocation; sessions of that overlap count once, for the successor (its window starts
        # at its creation).
        end = max(start, min(end, parse_iso(successor.created_at)))
    return sessions.opened(grant.instance_id, owner, session_name, start, end), None


def _extended_by(ctx: Context, grant: Grant) -> Grant | None:
    """The grant of the extension that replaced ``grant`` (revoked ``extended`` by the request API,
    ``revoked_by`` = ``sessiongate:<the extension's request id>``), if the ledger holds it."""
    by = grant.revoked_by or ""
    if grant.revoke_reason != REASON_EXTENDED or not by.startswith("sessiongate:"):
        return None
    # The request API's grant id of a request (access_requests/ids.py ``grant_id_for``: ``rq-<id>``).
    successor = ctx.ledger.get_grant(f"rq-{by.removeprefix('sessiongate:')}")
    same = successor is not None and (successor.principal_arn, successor.instance_id) == (
        grant.principal_arn,
        grant.instance_id,
    )
    return successor if same else None


def weekly_report(ctx: Context, now: datetime) -> dict[str, Any]:
    """The usage of the grants revoked in the ``REPORT_DAYS`` days before ``now``, published to the
    notification topic as ``UsageReport`` (best effort, as every notification) and returned.

    The window is whole UTC days: [midnight ``REPORT_DAYS`` days ago, today's midnight), so reports
    of successive weeks neither overlap nor leave gaps when the schedule fires at a different time of
    day (a schedule's ``rate(7 days)`` counts from its creation)."""
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=REPORT_DAYS)
    grants = ctx.ledger.ended_between(to_iso(start), to_iso(end))
    report = summarize(grants, start, end)
    ctx.notifier.publish(
        "UsageReport",
        report,
        subject=(
            f"SessionGate: {report['grants']} grants in the last {REPORT_DAYS} days, "
            f"{report['unused_grants']} never used"
        ),
    )
    metrics().add("UsageReports")
    return report


def summarize(grants: list[Grant], start: datetime, end: datetime) -> dict[str, Any]:
    """The report's record (``version`` 1, README "Usage"): grants revoked in [start, end)."""
    per_person: dict[str, Counter[str]] = defaultdict(Counter)
    unused: list[dict[str, Any]] = []
    pending = unknown = 0
    for grant in sorted(grants, key=lambda g: (g.revoked_at or "", g.grant_id)):
        person = per_person[grant.principal_arn]
        person["grants"] += 1
        if grant.sessions is None:
            if grant.usage_unknown:
                unknown += 1
                person["usage_unknown"] += 1
            else:
                pending += 1
                person["usage_pending"] += 1
            continue
        person["sessions"] += len(grant.sessions)
        if not grant.sessions:
            person["unused"] += 1
            unused.append(
                {
                    "grant_id": grant.grant_id,
                    "principal_arn": grant.principal_arn,
                    "account": grant.account,
                    "instance_id": grant.instance_id,
                    "approver_arns": list(grant.approver_arns),
                    "granted_at": grant.activated_at or grant.created_at,
                    "revoked_at": grant.revoked_at,
                    "revoke_reason": grant.revoke_reason,
                    "duration_minutes": grant.duration_minutes,
                }
            )
    people = [
        {
            "principal_arn": arn,
            "grants": c["grants"],
            "sessions": c["sessions"],
            "unused": c["unused"],
            "usage_unknown": c["usage_unknown"] + c["usage_pending"],
        }
        for arn, c in sorted(per_person.items(), key=lambda kv: (-kv[1]["grants"], kv[0]))
    ]
    return {
        "report": "usage",
        "version": REPORT_VERSION,
        "from": to_iso(start),
        "to": to_iso(end),
        "grants": len(grants),
        "used_grants": len(grants) - len(unused) - pending - unknown,
        "unused_grants": len(unused),
        "usage_pending": pending,
        "usage_unknown": unknown,
        "people": len(people),
        "per_person": people[:REPORT_LIST_LIMIT],
        "unused": unused[:REPORT_LIST_LIMIT],
        "truncated": len(people) > REPORT_LIST_LIMIT or len(unused) > REPORT_LIST_LIMIT,
    }
