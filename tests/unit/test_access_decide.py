"""Approve, reject, cancel on in-memory fakes: separation of duties, levels, concurrent decisions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sessiongate.access_requests.errors import Conflict, InvalidInput, NotAllowed
from sessiongate.access_requests.records import RequestStatus
from tests.unit.access_world import ALICE, BOB, CAROL, EVE, SAM, caller, create, new_world


def test_the_requester_cannot_approve_their_own_request() -> None:
    w = new_world()
    request_id = create(w)
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(ALICE), request_id, None)
    assert err.value.code == "self_approval"
    assert w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]


def test_someone_not_in_the_rule_cannot_approve() -> None:
    w = new_world()
    request_id = create(w)
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(EVE), request_id, None)
    assert err.value.code == "not_an_approver"


def test_levels_need_their_minimum_approvals_in_order_then_one_grant_is_emitted() -> None:
    w = new_world()
    request_id = create(w, instance_id=w.instance(Environment="prod"))
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(SAM), request_id, None)
    assert err.value.code == "level_not_reached"
    assert w.service.approve(caller(BOB), request_id, None)["request"]["status"] == "PENDING"
    with pytest.raises(Conflict) as again:
        w.service.approve(caller(BOB), request_id, None)
    assert again.value.code == "already_approved"
    assert w.service.approve(caller(CAROL), request_id, None)["request"]["status"] == "PENDING"
    assert w.bus.emitted == []
    assert w.service.approve(caller(SAM), request_id, None)["request"]["status"] == "APPROVED"
    [event] = w.bus.emitted
    assert event.approver_arns == (BOB, CAROL, SAM)
    assert w.notifier.types == ["AccessRequested", "ApprovalRecorded", "ApprovalRecorded", "AccessApproved"]


def test_a_concurrent_decision_wins_the_version_and_the_loser_re_decides() -> None:
    w = new_world()
    request_id = create(w)

    def carol_rejects_first(_: str) -> None:
        current = w.store.get(request_id)
        assert current is not None
        w.store.items[request_id] = replace(
            current, status=RequestStatus.REJECTED, version=current.version + 1
        )

    w.store.before_write = carol_rejects_first
    with pytest.raises(Conflict) as err:
        w.service.approve(caller(BOB), request_id, None)
    assert err.value.code == "not_pending"
    assert w.bus.emitted == []


def test_a_write_that_keeps_losing_is_a_conflict() -> None:
    w = new_world()
    request_id = create(w)
    real = w.store.replace
    w.store.replace = lambda request, *, expected_version: False  # type: ignore[method-assign]
    with pytest.raises(Conflict) as err:
        w.service.approve(caller(BOB), request_id, None)
    w.store.replace = real  # type: ignore[method-assign]
    assert err.value.code == "conflict"


def test_reject_needs_a_comment_and_an_approver() -> None:
    w = new_world()
    request_id = create(w)
    with pytest.raises(InvalidInput) as err:
        w.service.reject(caller(BOB), request_id, None)
    assert err.value.code == "missing_comment"
    with pytest.raises(NotAllowed):
        w.service.reject(caller(EVE), request_id, {"comment": "no"})
    out = w.service.reject(caller(BOB), request_id, {"comment": "not today"})["request"]
    assert (out["status"], out["comment"]) == ("REJECTED", "not today")
    with pytest.raises(Conflict):
        w.service.approve(caller(CAROL), request_id, None)


def test_only_the_requester_cancels_and_only_while_pending() -> None:
    w = new_world()
    request_id = create(w)
    with pytest.raises(NotAllowed) as err:
        w.service.cancel(caller(BOB), request_id, None)
    assert err.value.code == "not_requester"
    assert w.service.cancel(caller(ALICE), request_id, None)["request"]["status"] == "CANCELLED"
    with pytest.raises(Conflict) as again:
        w.service.cancel(caller(ALICE), request_id, None)
    assert again.value.code == "not_pending"
