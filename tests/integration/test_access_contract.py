"""The native front door's requests-table fake keeps the real adapter's rules: the same assertions against
``tests/unit/fakes/access.FakeRequestStore`` and against ``adapters.request_store.RequestStore`` on moto
(the requests table as ``template.yaml`` declares it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sessiongate.access_requests.policy import ApprovalPolicy, PolicyRejected, VerifiedPolicy, policy_digest
from sessiongate.access_requests.records import Approval, RequestStatus
from sessiongate.adapters.request_store import RequestStore
from tests.support.people import ALICE, BOB, POLICY, make_request
from tests.support.template import create_table
from tests.unit import access_world
from tests.unit.fakes.access import FakeRequestStore

REGION = "us-east-1"
TABLE = "contract-requests"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
RID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["fake", "moto"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeRequestStore()
        return
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        create_table(db, "RequestsTable", TABLE)
        yield RequestStore(db, TABLE)


def _policy(serial: int | None, *, name: str = "default") -> VerifiedPolicy:
    document = {**POLICY, "rules": [{**POLICY["rules"][1], "name": name}]}
    source = "stack default" if serial is None else "/sessiongate/approval-policy"
    return VerifiedPolicy(ApprovalPolicy.parse(document), policy_digest(document), source, None, serial)


def test_create_is_create_if_absent_and_get_returns_what_was_written(store: Any) -> None:
    request = make_request(
        request_id=RID,
        instance_tags=(("Environment", "prod"), ("Team", "web")),
        approvals=(Approval(BOB, 0, "2026-11-24T09:01:00Z", "ok"),),
        history=({"status": "PENDING", "at": "2026-11-24T09:00:00Z", "by": ALICE},),
    )
    assert store.create(request)
    assert not store.create(replace(request, reason="a second writer"))
    assert store.get(RID) == request
    assert store.get("f" * 32) is None


def test_replace_writes_the_next_version_and_a_stale_version_loses(store: Any) -> None:
    first = make_request(request_id=RID)
    assert store.create(first)
    approved = replace(first, status=RequestStatus.APPROVED, version=1, approved_at="2026-11-24T09:02:00Z")
    assert store.replace(approved, expected_version=0)
    # A writer that read version 0 too: its write loses, the record keeps the winner's.
    assert not store.replace(replace(first, status=RequestStatus.REJECTED, version=1), expected_version=0)
    assert store.get(RID) == approved
    with pytest.raises(ValueError, match="next version"):
        store.replace(replace(approved, version=5), expected_version=1)
    # No record: nothing to replace.
    assert not store.replace(make_request(request_id="f" * 32, version=1), expected_version=0)
    assert store.get("f" * 32) is None


def test_an_extension_and_its_parent_are_written_together_or_not_at_all(store: Any) -> None:
    parent = make_request(request_id=RID, status=RequestStatus.APPROVED)
    assert store.create(parent)
    bumped = replace(parent, extension_count=1, version=1)
    child = make_request(request_id=f"{RID}-x1", extends=RID, created_at="2026-11-24T09:05:00Z")
    # A stale parent: neither item is written.
    assert not store.create_extension(replace(bumped, version=2), expected_version=1, child=child)
    assert store.get(child.request_id) is None
    assert store.get(RID) == parent
    assert store.create_extension(bumped, expected_version=0, child=child)
    assert (store.get(RID), store.get(child.request_id)) == (bumped, child)
    # The child exists already: the parent is not bumped again.
    again = replace(bumped, extension_count=2, version=2)
    assert not store.create_extension(again, expected_version=1, child=replace(child, reason="other"))
    assert (store.get(RID), store.get(child.request_id)) == (bumped, child)


def test_a_quota_counts_the_uses_inside_its_window_up_to_its_limit(store: Any) -> None:
    window = timedelta(hours=24)
    assert store.take_quota("bg#alice", now=NOW, window=window, limit=2) == 0
    assert store.take_quota("bg#alice", now=NOW + timedelta(hours=1), window=window, limit=2) == 1
    assert store.take_quota("bg#alice", now=NOW + timedelta(hours=2), window=window, limit=2) is None
    assert store.take_quota("bg#bob", now=NOW + timedelta(hours=2), window=window, limit=2) == 0
    # The first use leaves the window (strictly older than now - window): one use left in it.
    later = NOW + window + timedelta(seconds=1)
    assert store.take_quota("bg#alice", now=later, window=window, limit=2) == 1
    assert store.take_quota("bg#alice", now=later, window=window, limit=2) is None
    # The quota items are in neither index.
    assert store.pending(limit=10) == []
    assert store.approved(limit=10) == []


def test_the_recorded_policy_serial_never_goes_down(store: Any) -> None:
    assert store.policy_serial() is None
    assert store.record_policy(_policy(None), now=NOW)  # the stack default: no serial
    assert not store.record_policy(_policy(None), now=NOW)  # unchanged: not reported again
    assert store.policy_serial() is None
    assert store.record_policy(_policy(5, name="signed"), now=NOW)
    assert store.policy_serial() == 5
    assert not store.record_policy(_policy(7, name="signed"), now=NOW)  # same document, newer serial
    assert store.policy_serial() == 7
    with pytest.raises(PolicyRejected, match="serial 3"):
        store.record_policy(_policy(3, name="old"), now=NOW)
    assert store.policy_serial() == 7
    # The same serial is no older: a changed document under it is recorded.
    assert store.record_policy(_policy(7, name="re-signed"), now=NOW)
    assert not store.record_policy(_policy(7, name="re-signed"), now=NOW)
    # The stack default (unsigned) is not checked against the serial, and does not lower it.
    assert store.record_policy(_policy(None), now=NOW)
    assert store.policy_serial() == 7
    # The refused envelope changed nothing: the document in effect is still the stack default.
    assert not store.record_policy(_policy(None), now=NOW)


def test_the_service_queries_mine_pending_and_approved(store: Any) -> None:
    def at(minute: int, **changes: Any) -> Any:
        return make_request(
            request_id=f"{minute:032x}", created_at=f"2026-11-24T09:{minute:02d}:00Z", **changes
        )

    old_pending, new_pending = at(1), at(4)
    approved_a, approved_b = at(2, status=RequestStatus.APPROVED), at(5, status=RequestStatus.APPROVED)
    rejected = at(3, status=RequestStatus.REJECTED)
    bobs = at(6, requester_arn=BOB, principal_name="bob", principal_arn=BOB)
    for request in (old_pending, new_pending, approved_a, approved_b, rejected, bobs):
        assert store.create(request)
    store.take_quota("bg#alice", now=NOW, window=timedelta(hours=1), limit=1)
    store.record_policy(_policy(1), now=NOW)
    mine = [r.request_id for r in store.by_requester(ALICE, limit=50)]
    assert mine == [r.request_id for r in (approved_b, new_pending, rejected, approved_a, old_pending)]
    assert [r.request_id for r in store.by_requester(ALICE, limit=2)] == mine[:2]
    # Pending: newest first by default (the inbox), oldest first for the sweep; bob's too.
    assert [r.request_id for r in store.pending(limit=50)] == [
        r.request_id for r in (bobs, new_pending, old_pending)
    ]
    assert [r.request_id for r in store.pending(limit=2, oldest_first=True)] == [
        r.request_id for r in (old_pending, new_pending)
    ]
    assert [r.request_id for r in store.approved(limit=50)] == [approved_a.request_id, approved_b.request_id]
    # A record that leaves PENDING or APPROVED leaves the index with it.
    assert store.replace(replace(approved_a, status=RequestStatus.ACTIVE, version=1), expected_version=0)
    assert store.replace(replace(old_pending, status=RequestStatus.EXPIRED, version=1), expected_version=0)
    assert [r.request_id for r in store.approved(limit=50)] == [approved_b.request_id]
    assert old_pending.request_id not in [r.request_id for r in store.pending(limit=50)]


def test_the_records_the_service_writes_read_back_unchanged(store: Any) -> None:
    """Every field the service sets (approvals, history, MAC, denials, extension links) survives the
    table: records made by the real service on the unit tier's fakes, written and read back."""
    w = access_world.new_world()
    live = access_world.granted(w)
    w.service.extend(access_world.caller(ALICE), live, {"reason": "more time"})
    denied = access_world.create(w, instance_id=w.instance("i-0123456789abcdef1"))
    w.service.approve(access_world.caller(BOB), denied, None)
    w.instance("i-0123456789abcdef1", SessionGate="deny")
    assert w.grant().result == "denied"
    w.clock.advance(timedelta(minutes=2))
    w.service.sweep()
    w.service.revoke(access_world.caller(ALICE), live, {"reason": "done here"})
    records = list(w.store.items.values())
    statuses = {r.status for r in records}
    assert statuses == {RequestStatus.REVOKED, RequestStatus.DENIED, RequestStatus.CANCELLED}
    assert any(r.denials for r in records)
    assert all(r.history for r in records)
    for record in records:
        assert store.create(record)
        assert store.get(record.request_id) == record
