"""Revoke, extend and the scheduled sweep on in-memory fakes (the engine is a fake port)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from sessiongate.access_requests.errors import Conflict, NotAllowed
from sessiongate.access_requests.records import RequestStatus
from sessiongate.core.model import GrantStatus
from tests.unit.access_world import ALICE, BOB, EVE, caller, create, granted, new_world


def test_the_requester_revokes_live_access_through_the_engine() -> None:
    w = new_world()
    request_id = granted(w)
    with pytest.raises(NotAllowed):
        w.service.revoke(caller(EVE), request_id, None)
    out = w.service.revoke(caller(ALICE), request_id, {"reason": "done here"})["request"]
    assert out["status"] == "REVOKED"
    assert w.engine.revoked == [(f"rq-{request_id}", "done")]
    assert w.engine.ledger.tombstones == {f"rq-{request_id}": "done"}
    with pytest.raises(Conflict) as err:
        w.service.revoke(caller(ALICE), request_id, None)
    assert err.value.code == "not_active"


def test_revoking_a_request_not_yet_granted_leaves_a_tombstone_and_no_engine_call() -> None:
    w = new_world()
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    assert w.service.revoke(caller(BOB), request_id, None)["request"]["status"] == "REVOKED"
    assert w.engine.revoked == []
    assert w.engine.ledger.tombstones == {f"rq-{request_id}": "revoked"}


def test_an_extension_is_a_new_pending_request_and_its_grant_retires_the_parent() -> None:
    w = new_world()
    request_id = granted(w)
    with pytest.raises(NotAllowed):
        w.service.extend(caller(BOB), request_id, {"reason": "more"})
    child = w.service.extend(caller(ALICE), request_id, {"reason": "more time"})["request"]
    assert (child["request_id"], child["status"], child["extends"]) == (
        f"{request_id}-x1",
        "PENDING",
        request_id,
    )
    w.service.approve(caller(BOB), child["request_id"], None)
    w.engine.grant(w.bus.emitted[-1])
    w.service.sweep()
    assert w.engine.revoked == [(f"rq-{request_id}", "extended")]
    assert w.store.get(child["request_id"]).status is RequestStatus.ACTIVE  # type: ignore[union-attr]


def test_only_active_access_can_be_extended() -> None:
    w = new_world()
    request_id = create(w)
    with pytest.raises(Conflict) as err:
        w.service.extend(caller(ALICE), request_id, {"reason": "more"})
    assert err.value.code == "not_active"


def test_the_sweep_expires_pending_requests_once_and_settles_granted_ones() -> None:
    w = new_world()
    stale = create(w)
    w.instance("i-0123456789abcdef1")
    other = create(w, instance_id="i-0123456789abcdef1")
    w.service.approve(caller(BOB), other, None)
    w.engine.grant(w.bus.emitted[-1], status=GrantStatus.DENIED)
    w.clock.advance(timedelta(minutes=61))
    assert w.service.sweep() == {"result": "swept", "expired": 1, "reemitted": 0, "settled": 1}
    assert w.store.get(stale).status is RequestStatus.EXPIRED  # type: ignore[union-attr]
    assert w.store.get(other).status is RequestStatus.DENIED  # type: ignore[union-attr]
    assert w.notifier.types.count("AccessRequestExpired") == 1
    assert w.service.sweep()["expired"] == 0


def test_the_sweep_re_emits_a_lost_hand_over_only_when_the_api_signed_it() -> None:
    w = new_world()
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    record = w.store.get(request_id)
    assert record is not None
    w.store.items[request_id] = replace(record, emitted_at=None)
    w.clock.advance(timedelta(minutes=2))
    assert w.service.sweep()["reemitted"] == 1
    assert len(w.bus.emitted) == 2
    forged = replace(w.store.items[request_id], emitted_at=None, approval_mac="00")
    w.store.items[request_id] = forged
    assert w.service.sweep()["reemitted"] == 0
