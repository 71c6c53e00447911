"""Usage (issue 17): the sessions a grant's principal opened, recorded after the revocation by the
reconciler (never in the revoke path), and the weekly usage report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.clock import to_iso
from sessiongate.core import usage
from sessiongate.core.model import Grant, GrantStatus, Result
from sessiongate.core.ports import ServiceFailure
from sessiongate.errors import TransientError
from tests.unit.fakes.core import ACCOUNT, INSTANCE, MEMBER, CoreWorld

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


@pytest.fixture
def world() -> CoreWorld:
    return CoreWorld()


def _at(world: CoreWorld, minutes: float) -> str:
    return to_iso(world.clock.now() + timedelta(minutes=minutes))


def _granted_and_expired(world: CoreWorld, *, sessions: int = 1, principal: str = "alice") -> str:
    request = world.approved(principal=principal)
    assert world.grant(request).result is Result.GRANTED
    owner = f"arn:aws:iam::{ACCOUNT}:user/{principal}"
    for n in range(sessions):
        sid = f"{principal}-{request.grant_id}-{n}"
        world.sessions.start(sid, INSTANCE, owner, started_at=_at(world, 1 + n))
        world.sessions.end(sid, ended_at=_at(world, 2 + n))
    world.clock.advance(timedelta(minutes=10))
    assert world.engine.revoke(request.grant_id).result is Result.REVOKED
    return request.grant_id


def _record(world: CoreWorld) -> None:
    """The steady runs after the history settled, one every 5 minutes, until one records usage: each
    reads one USAGE shard (review M5), so it takes at most 16 runs."""
    world.clock.advance(usage.SETTLE)
    for _ in range(16):
        outcome = world.engine.reconcile()
        assert outcome.result is Result.RECONCILED
        if outcome.detail["usage_recorded"]:
            return
        world.clock.advance(timedelta(minutes=5))


def test_the_sessions_of_the_grant_are_recorded_after_the_revocation(world: CoreWorld) -> None:
    world.directory.add("user", "bob")
    request = world.approved()
    world.grant(request)
    world.sessions.start("alice-before", INSTANCE, ALICE, started_at=_at(world, -5))  # before the grant
    world.sessions.start("alice-1", INSTANCE, ALICE, started_at=_at(world, 1))
    world.sessions.start("bob-1", INSTANCE, f"arn:aws:iam::{ACCOUNT}:user/bob", started_at=_at(world, 2))
    world.sessions.start("alice-other", "i-0fedcba9876543210", ALICE, started_at=_at(world, 3))
    world.sessions.end("alice-1", ended_at=_at(world, 4))
    world.clock.advance(timedelta(minutes=10))
    world.engine.revoke(request.grant_id)
    world.sessions.start("alice-after", INSTANCE, ALICE, started_at=_at(world, 1))  # after the revocation
    assert world.sessions.describe_calls == 0  # the revoke path reads no sessions

    # Not before the history settled.
    assert world.engine.reconcile().detail["usage_recorded"] == 0
    _record(world)

    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.sessions == [
        {
            "session_id": "alice-1",
            "status": "Terminated",
            "started_at": "2026-11-24T09:01:00Z",
            "ended_at": "2026-11-24T09:04:00Z",
        }
    ]
    assert grant.usage_recorded_at == to_iso(world.clock.now())
    recorded = [p for t, p, _ in world.notifier.published if t == "SessionsRecorded"]
    assert len(recorded) == 1
    assert recorded[0]["sessions"] == grant.sessions
    assert recorded[0]["used"] is True
    assert recorded[0]["event_id"] == f"SessionsRecorded/{request.grant_id}"

    # Recorded once: the next run finds nothing pending.
    calls = world.sessions.describe_calls
    world.clock.advance(timedelta(minutes=1))
    assert world.engine.reconcile().detail["usage_recorded"] == 0
    assert world.sessions.describe_calls == calls


def test_a_grant_never_used_records_no_sessions(world: CoreWorld) -> None:
    grant_id = _granted_and_expired(world, sessions=0)
    _record(world)
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    assert grant.sessions == []
    assert grant.usage_unknown is None
    recorded = [p for t, p, _ in world.notifier.published if t == "SessionsRecorded"]
    assert recorded[0]["used"] is False


def test_an_unreachable_member_account_records_usage_unknown() -> None:
    world = CoreWorld(member_accounts=(MEMBER,))
    directory, inventory, _ = world.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add(INSTANCE)
    request = world.approved(account=MEMBER)
    assert world.grant(request).result is Result.GRANTED
    world.clock.advance(timedelta(minutes=10))
    world.engine.revoke(request.grant_id)
    world.accounts.unavailable.add(MEMBER)
    _record(world)

    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.sessions is None
    assert grant.usage_unknown is not None
    assert MEMBER in grant.usage_unknown
    assert world.ledger.usage_pending(limit=10) == []


def test_throttling_leaves_the_usage_pending_and_fails_the_run(world: CoreWorld) -> None:
    grant_id = _granted_and_expired(world)
    world.sessions.failure = ServiceFailure("Rate exceeded", code="ThrottlingException")
    world.clock.advance(usage.SETTLE)
    with pytest.raises(TransientError):
        world.engine.sweep()  # reads every shard
    assert [g.grant_id for g in world.ledger.usage_pending(limit=10)] == [grant_id]

    world.sessions.failure = None
    _record(world)
    assert world.ledger.get_grant(grant_id).sessions  # type: ignore[union-attr]


def test_a_grant_bound_to_one_role_session_counts_only_that_session() -> None:
    world = CoreWorld(shared_role_patterns=("Shared*",), bind_shared_role_sessions=True)
    world.directory.add("role", "SharedOps")
    request = world.approved(
        principal="SharedOps", kind="role", requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/SharedOps/alice"
    )
    outcome = world.grant(request)
    assert outcome.result is Result.GRANTED, outcome
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.bound_user_id is not None
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/SharedOps"
    world.sessions.start("alice-1", INSTANCE, f"{role}/alice", started_at=_at(world, 1))
    world.sessions.start("bob-1", INSTANCE, f"{role}/bob", started_at=_at(world, 1))
    world.clock.advance(timedelta(minutes=10))
    world.engine.revoke(request.grant_id)
    _record(world)
    assert [s["session_id"] for s in world.ledger.get_grant(request.grant_id).sessions or []] == ["alice-1"]  # type: ignore[union-attr]


def test_the_weekly_report_counts_grants_per_person_and_unused_ones(world: CoreWorld) -> None:
    world.directory.add("user", "bob")
    old = _granted_and_expired(world, sessions=1)
    _record(world)
    world.clock.advance(timedelta(days=7, minutes=1))  # ``old`` ends before the report's week
    used = _granted_and_expired(world, sessions=2)
    unused = _granted_and_expired(world, sessions=0)
    bobs = _granted_and_expired(world, sessions=1, principal="bob")
    world.clock.advance(usage.SETTLE)
    assert world.engine.sweep().detail["usage_recorded"] == 3  # the daily sweep reads every shard
    pending = _granted_and_expired(world, sessions=0)  # revoked, usage not recorded yet
    # The window is the 7 whole UTC days before today: the report of the next day counts them.
    world.clock.advance(timedelta(days=1))

    outcome = world.engine.usage_report()
    report = outcome.detail["report"]
    assert outcome.result is Result.EMITTED
    assert report["version"] == 1
    assert report["report"] == "usage"
    midnight = world.clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert (report["from"], report["to"]) == (to_iso(midnight - timedelta(days=7)), to_iso(midnight))
    assert (report["grants"], report["used_grants"], report["unused_grants"], report["usage_pending"]) == (
        4,
        2,
        1,
        1,
    )
    assert [u["grant_id"] for u in report["unused"]] == [unused]
    assert report["per_person"] == [
        {"principal_arn": ALICE, "grants": 3, "sessions": 2, "unused": 1, "usage_unknown": 1},
        {
            "principal_arn": f"arn:aws:iam::{ACCOUNT}:user/bob",
            "grants": 1,
            "sessions": 1,
            "unused": 0,
            "usage_unknown": 0,
        },
    ]
    assert old not in str(report)
    assert used not in [u["grant_id"] for u in report["unused"]]
    assert bobs
    assert pending
    published = [(p, s) for t, p, s in world.notifier.published if t == "UsageReport"]
    assert published[0][0] == report
    assert "4 grants" in published[0][1]
    assert "1 never used" in published[0][1]


def test_the_report_is_bounded_in_size() -> None:
    start = usage.summarize([], datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))
    assert start["grants"] == 0
    assert start["truncated"] is False
    many = [
        Grant(
            grant_id=f"g{n}",
            status=GrantStatus.REVOKED,
            origin="native",
            origin_ref="r",
            account=ACCOUNT,
            instance_id=INSTANCE,
            principal_type="user",
            principal_name=f"p{n}",
            principal_arn=f"arn:aws:iam::{ACCOUNT}:user/p{n}",
            requester_arn=ALICE,
            approver_arns=[],
            duration_minutes=10,
            created_at="2026-11-02T00:00:00Z",
            revoked_at="2026-11-02T00:10:00Z",
            sessions=[],
        )
        for n in range(usage.REPORT_LIST_LIMIT + 5)
    ]
    report = usage.summarize(many, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))
    assert report["unused_grants"] == usage.REPORT_LIST_LIMIT + 5
    assert len(report["unused"]) == len(report["per_person"]) == usage.REPORT_LIST_LIMIT
    assert report["truncated"] is True


def test_a_grant_revoked_before_it_opened_has_no_usage_to_record(world: CoreWorld) -> None:
    request = world.approved()
    world.engine.ledger.request_revoke(request.grant_id, at=_at(world, 0), reason="cancelled", by=ALICE)
    world.grant(request)
    assert world.status(request.grant_id) is GrantStatus.REVOKED
    assert world.ledger.usage_pending(limit=10) == []


def test_a_refusal_a_retry_would_repeat_records_usage_unknown(world: CoreWorld) -> None:
    """Review M3: an SCP denying ssm:DescribeSessions must not leave the usage pending forever."""
    grant_id = _granted_and_expired(world)
    world.sessions.failure = ServiceFailure("denied by an SCP", code="AccessDeniedException", retryable=False)
    world.clock.advance(usage.SETTLE)
    assert world.engine.sweep().detail["usage_recorded"] == 1
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    assert grant.sessions is None
    assert grant.usage_unknown == "Session Manager refused: AccessDeniedException"
    assert world.ledger.usage_pending(limit=10) == []


def test_usage_pending_past_the_30_day_history_records_unknown(world: CoreWorld) -> None:
    grant_id = _granted_and_expired(world)
    world.sessions.failure = ServiceFailure("Rate exceeded", code="ThrottlingException")
    world.clock.advance(timedelta(days=30, minutes=1))
    calls = world.sessions.describe_calls
    world.engine.sweep()
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    assert grant.usage_unknown is not None
    assert "30 days" in grant.usage_unknown
    assert world.sessions.describe_calls == calls  # not asked: its answer would miss ended sessions


def test_many_sessions_are_capped_on_the_record_and_in_the_event(world: CoreWorld) -> None:
    request = world.approved()
    assert world.grant(request).result is Result.GRANTED
    for n in range(150):
        world.sessions.start(f"s-{n:03d}", INSTANCE, ALICE, started_at=_at(world, 1 + n / 60))
    world.clock.advance(timedelta(minutes=10))
    world.engine.revoke(request.grant_id)
    grant_id = request.grant_id
    world.clock.advance(usage.SETTLE)
    world.engine.sweep()
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    assert grant.sessions is not None
    assert (len(grant.sessions), grant.session_count) == (usage.MAX_SESSIONS, 150)
    [event] = [p for t, p, _ in world.notifier.published if t == "SessionsRecorded"]
    assert (len(event["sessions"]), event["session_count"], event["sessions_truncated"]) == (20, 150, True)
    assert len(json.dumps(event)) < 20_000


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("AccessDeniedException", 400, False),
        ("ValidationException", 400, False),
        ("ThrottlingException", 400, True),
        ("InternalServerError", 500, True),
    ],
)
def test_the_adapters_tell_a_refusal_from_a_retryable_failure(
    code: str, status: int, retryable: bool
) -> None:
    from botocore.exceptions import ClientError

    from sessiongate.adapters.aws import ServiceCallFailed

    error = ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeSessions"
    )
    assert ServiceCallFailed(error).retryable is retryable


def test_an_extensions_overlap_counts_its_sessions_once() -> None:
    """Review L5: the parent and its extension are both live from the extension's grant until the
    request API revokes the parent (reason extended): a session of that overlap counts for the
    extension only."""
    world = CoreWorld(slot_count=2)
    root = "0123456789abcdef0123456789abcdef"
    parent = world.approved(grant_id=f"rq-{root}", minutes=30)
    assert world.grant(parent).result is Result.GRANTED
    world.sessions.start("before", INSTANCE, ALICE, started_at=_at(world, 1))
    world.clock.advance(timedelta(minutes=20))
    child = world.approved(grant_id=f"rq-{root}-x1", minutes=30)
    assert world.grant(child).result is Result.GRANTED
    world.sessions.start("overlap", INSTANCE, ALICE, started_at=_at(world, 1))
    world.clock.advance(timedelta(minutes=2))
    assert (
        world.engine.revoke(parent.grant_id, reason="extended", by=f"sessiongate:{root}-x1").result
        is Result.REVOKED
    )
    world.clock.advance(timedelta(minutes=30))  # the extension expires
    assert world.engine.revoke(child.grant_id).result is Result.REVOKED
    world.clock.advance(usage.SETTLE)
    world.engine.sweep()
    sessions = {
        g: [s["session_id"] for s in world.ledger.get_grant(g).sessions or []]
        for g in (parent.grant_id, child.grant_id)
    }  # type: ignore[union-attr]
    assert sessions == {parent.grant_id: ["before"], child.grant_id: ["overlap"]}
