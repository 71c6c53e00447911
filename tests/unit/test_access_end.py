"""Revoke, extend and the scheduled sweep on in-memory fakes, with the real grant core behind them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from sessiongate.access_requests.errors import Conflict, NotAllowed
from sessiongate.access_requests.records import RequestStatus
from sessiongate.core import slots
from sessiongate.core.model import GrantStatus
from sessiongate.core.revoke import PROVISIONING_GRACE
from sessiongate.errors import TransientError
from tests.unit.access_world import (
    ALICE,
    BOB,
    EVE,
    POLICY,
    caller,
    create,
    granted,
    new_world,
    slot_tags,
    stuck_provisioning,
)
from tests.unit.fakes.access import world
from tests.unit.fakes.core import MEMBER


def test_the_requester_revokes_live_access_through_the_engine() -> None:
    w = new_world()
    request_id = granted(w)
    assert slot_tags(w)
    with pytest.raises(NotAllowed):
        w.service.revoke(caller(EVE), request_id, None)
    out = w.service.revoke(caller(ALICE), request_id, {"reason": "done here"})["request"]
    assert out["status"] == "REVOKED"
    grant = w.ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by) == (GrantStatus.REVOKED, "done", ALICE)
    assert w.ledger.tombstones[f"rq-{request_id}"].reason == "done"
    assert slot_tags(w) == {}
    assert w.core.schedules.deleted == [f"sg-revoke-rq-{request_id}"]
    with pytest.raises(Conflict) as err:
        w.service.revoke(caller(ALICE), request_id, None)
    assert err.value.code == "not_active"


def test_revoking_a_request_not_yet_granted_leaves_a_tombstone_and_the_grant_never_goes_live() -> None:
    w = new_world()
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    assert w.service.revoke(caller(BOB), request_id, None)["request"]["status"] == "REVOKED"
    assert w.ledger.get_grant(f"rq-{request_id}") is None  # unknown to the engine: nothing to revoke
    assert w.ledger.tombstones[f"rq-{request_id}"].reason == "revoked"
    assert w.engine.revoke(f"rq-{request_id}", reason="revoked", by=BOB).result == "ignored"
    # The hand-over arrives late: the grant's transaction finds the tombstone (and the request REVOKED),
    # the grant is recorded REVOKED untagged (it no longer reads the record before: issue 16).
    outcome = w.grant()
    assert outcome.result == "revoked"
    assert w.grant_status(request_id) is GrantStatus.REVOKED
    assert slot_tags(w) == {}
    assert w.ledger.slots == {}


def test_revoking_a_young_provisioning_grant_leaves_the_tombstone_and_the_sweep_undoes_it() -> None:
    """A PROVISIONING record of the previous release may still be in a grant invocation's hands: the
    request API does not race it through the engine (whose revoke would refuse, grant_in_progress). A
    redelivery changes nothing (the record exists); past the grace the sweep undoes it."""
    w = new_world()
    request_id = stuck_provisioning(w)
    w.clock.advance(PROVISIONING_GRACE - timedelta(seconds=1))
    out = w.service.revoke(caller(ALICE), request_id, None)["request"]
    assert out["status"] == "REVOKED"
    assert w.grant_status(request_id) is GrantStatus.PROVISIONING
    assert w.ledger.tombstones[f"rq-{request_id}"].reason == "done"
    assert w.grant().result == "duplicate"
    w.clock.advance(timedelta(seconds=1))
    assert w.engine.sweep().detail["repairs"]["abandoned"] == [f"rq-{request_id}"]
    assert w.grant_status(request_id) is GrantStatus.DENIED
    assert slot_tags(w) == {}
    assert w.grant().result == "duplicate"  # later deliveries change nothing
    assert w.service.get(caller(ALICE), request_id)["request"]["status"] == "REVOKED"


def test_a_revocation_while_the_grant_runs_waits_out_its_bind_window_and_the_tag_never_lands() -> None:
    """Alice revokes between the grant's transaction and its tag: the revocation waits until the grant
    can no longer tag (its bind window), revokes, and the grant, past its window, does not tag; its
    redelivery is a duplicate. Without the window check the tag would outlive the REVOKED grant."""
    w = new_world()
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    schedules = w.core.schedules
    real = schedules.create_once

    def alice_revokes_meanwhile(*args: object, **kwargs: object) -> bool:
        out = w.service.revoke(caller(ALICE), request_id, None)["request"]
        assert out["status"] == "REVOKED"
        return real(*args, **kwargs)  # type: ignore[arg-type]

    schedules.create_once = alice_revokes_meanwhile  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="bind window"):
        w.grant()
    schedules.create_once = real  # type: ignore[method-assign]
    grant = w.ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert (grant.status, grant.revoked_by) == (GrantStatus.REVOKED, ALICE)
    assert slot_tags(w) == {}
    assert w.grant().result == "duplicate"
    assert slot_tags(w) == {}
    assert w.core.notifier.types()[-1] == "AccessRevoked"


def test_a_provisioning_grant_past_its_grace_is_revoked_through_the_engine() -> None:
    w = new_world()
    request_id = stuck_provisioning(w)
    w.clock.advance(PROVISIONING_GRACE)
    assert w.service.revoke(caller(ALICE), request_id, None)["request"]["status"] == "REVOKED"
    assert w.grant_status(request_id) is GrantStatus.REVOKED
    assert slot_tags(w) == {}
    assert w.grant().result == "duplicate"


def test_an_engine_that_still_sees_the_grant_provisioning_answers_grant_in_progress() -> None:
    """The engine's revoke refuses a PROVISIONING grant inside its grace (TransientError). The request
    API only calls it past the grace by its own clock; an engine clock a second behind (two Lambdas)
    refuses: the revocation is reported as not finished (409), the tombstone is in place, the record
    stays live, and a retry ends it."""
    w = new_world()
    request_id = stuck_provisioning(w)
    w.clock.advance(PROVISIONING_GRACE - timedelta(seconds=1))
    w.service.clock = type(w.clock)(w.clock.now() + timedelta(seconds=1))
    with pytest.raises(Conflict) as err:
        w.service.revoke(caller(ALICE), request_id, None)
    assert err.value.code == "partly_revoked"
    assert f"{request_id} (grant_in_progress)" in err.value.message
    assert w.ledger.revoke_request(f"rq-{request_id}") is not None
    assert w.store.get(request_id).status is RequestStatus.APPROVED  # type: ignore[union-attr]
    assert w.grant_status(request_id) is GrantStatus.PROVISIONING
    w.clock.advance(timedelta(seconds=1))
    assert w.service.revoke(caller(ALICE), request_id, None)["request"]["status"] == "REVOKED"
    assert w.grant_status(request_id) is GrantStatus.REVOKED
    assert slot_tags(w) == {}


def test_access_that_already_ended_is_not_revoked_again() -> None:
    """The grant expired (the scheduler's revoke): the request reads EXPIRED and a revoke is refused
    without touching the ledger; the engine itself answers a second revoke as a duplicate."""
    w = new_world()
    request_id = granted(w)
    w.clock.advance(timedelta(minutes=10))
    expiry = {"grant_id": f"rq-{request_id}", "reason": "expired"}
    assert w.engine.on_revoke_schedule(expiry).result == "revoked"
    before = w.ledger.get_grant(f"rq-{request_id}")
    with pytest.raises(Conflict) as err:
        w.service.revoke(caller(ALICE), request_id, None)
    assert err.value.code == "not_active"
    assert w.ledger.get_grant(f"rq-{request_id}") == before
    assert f"rq-{request_id}" not in w.ledger.tombstones
    again = w.engine.revoke(f"rq-{request_id}", reason="done", by=ALICE)
    assert (again.result, again.detail) == ("duplicate", {"status": "REVOKED"})
    assert w.ledger.get_grant(f"rq-{request_id}") == before


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
    assert w.grant().result == "granted"
    w.service.sweep()
    parent = w.ledger.get_grant(f"rq-{request_id}")
    assert parent is not None
    assert (parent.status, parent.revoke_reason) == (GrantStatus.REVOKED, "extended")
    assert w.grant_status(child["request_id"]) is GrantStatus.ACTIVE
    assert w.store.get(child["request_id"]).status is RequestStatus.ACTIVE  # type: ignore[union-attr]
    # Only the extension's slot (2) is left on alice: slot 1's tag went with the parent.
    assert slots.slot_keys(2)[0] in slot_tags(w)
    assert set(slot_tags(w)) <= set(slots.slot_keys(2))


def test_only_active_access_can_be_extended() -> None:
    w = new_world()
    request_id = create(w)
    with pytest.raises(Conflict) as err:
        w.service.extend(caller(ALICE), request_id, {"reason": "more"})
    assert err.value.code == "not_active"


def test_the_sweep_expires_pending_requests_once_and_settles_granted_ones() -> None:
    w = new_world()
    stale = create(w)
    other = create(w, instance_id=w.instance("i-0123456789abcdef1"))
    w.service.approve(caller(BOB), other, None)
    w.instance("i-0123456789abcdef1", SessionGate="deny")  # tagged off limits before the grant ran
    assert w.grant().result == "denied"
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
    # The engine re-checks the MAC too: the forged record is not granted.
    outcome = w.grant()
    assert [d["code"] for d in outcome.detail["denials"]] == ["approval_not_signed"]


def test_a_member_account_out_of_reach_leaves_the_revocation_unfinished_and_retryable() -> None:
    """The engine cannot reach the member account to untag (TransientError): the request API reports
    the revocation as not finished (409, the engine's refusal mapped to grant_in_progress), the
    tombstone stays and the record stays live; once the account answers again, a retry ends it."""
    w = world(POLICY, member_accounts=(MEMBER,))
    directory, inventory, _ = w.core.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add("i-0123456789abcdef0")
    member_alice = f"arn:aws:iam::{MEMBER}:user/alice"  # alice calls with her identity in the member account
    request_id = create(w, member_alice, instance_id="i-0123456789abcdef0")
    w.service.approve(caller(BOB), request_id, None)
    assert w.grant().result == "granted"
    w.core.accounts.unavailable.add(MEMBER)
    with pytest.raises(Conflict) as err:
        w.service.revoke(caller(member_alice), request_id, None)
    assert err.value.code == "partly_revoked"
    assert f"{request_id} (grant_in_progress)" in err.value.message
    assert w.ledger.revoke_request(f"rq-{request_id}") is not None
    assert w.grant_status(request_id) is GrantStatus.ACTIVE
    w.core.accounts.unavailable.clear()
    assert w.service.revoke(caller(member_alice), request_id, None)["request"]["status"] == "REVOKED"
    assert w.grant_status(request_id) is GrantStatus.REVOKED
    assert not [k for k in directory.tags_of("user", "alice") if k.startswith(slots.INSTANCE_KEY)]
