"""The revoke path of the core on in-memory fakes: no moto, no template."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sessiongate.core.grant import new_record
from sessiongate.core.model import GrantStatus, Result
from sessiongate.errors import TransientError
from tests.unit.fakes.core import ACCOUNT, INSTANCE, MEMBER, CoreWorld

SESSION_OWNER = f"arn:aws:iam::{ACCOUNT}:user/alice"


@pytest.fixture
def world() -> CoreWorld:
    return CoreWorld(terminate_sessions_on_expiry=True)


def _granted(world: CoreWorld, minutes: int = 10) -> str:
    request = world.approved(minutes=minutes)
    assert world.grant(request).result == "granted"
    return request.grant_id


def test_expiry_removes_the_tag_frees_the_slot_and_ends_open_sessions(world: CoreWorld) -> None:
    grant_id = _granted(world)
    world.sessions.start("alice-1", INSTANCE, SESSION_OWNER)
    world.sessions.start("bob-1", INSTANCE, f"arn:aws:iam::{ACCOUNT}:user/bob")
    world.clock.advance(timedelta(minutes=10, seconds=20))

    outcome = world.engine.on_revoke_schedule({"grant_id": grant_id, "reason": "expired"})

    assert outcome.result is Result.REVOKED
    assert outcome.detail == {"reason": "expired", "untagged": True}
    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by) == (
        GrantStatus.REVOKED,
        "expired",
        "scheduler",
    )
    assert world.sessions.terminated == ["alice-1"]  # bob's session is not alice's
    assert world.schedules.deleted == []  # Scheduler deletes a fired at() schedule itself
    assert world.notifier.types() == ["AccessGranted", "AccessRevoked"]
    again = world.engine.on_revoke_schedule({"grant_id": grant_id, "reason": "expired"})
    assert again.result == "duplicate"


def test_early_revocation_deletes_the_pending_schedule(world: CoreWorld) -> None:
    grant_id = _granted(world)
    outcome = world.engine.revoke(grant_id, reason="done", by="alice")
    assert outcome.result == "revoked"
    assert world.schedules.deleted == [f"sg-revoke-{grant_id}"]
    assert world.schedules.schedules == {}


def test_extension_successor_keeps_the_shell_open(world: CoreWorld) -> None:
    parent = _granted(world)
    child = world.approved(minutes=20)
    assert world.grant(child).detail["slot"] == 2
    world.sessions.start("alice-1", INSTANCE, SESSION_OWNER)

    outcome = world.engine.revoke(parent, reason="extended", by="sessiongate:nr-child")

    assert outcome.result == "revoked"
    assert world.sessions.terminated == []
    assert world.directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance2": INSTANCE}
    assert world.ledger.slot_holder(world.alice, 2) == child.grant_id


def test_explicit_revocation_ends_the_shell_even_with_a_successor(world: CoreWorld) -> None:
    parent = _granted(world)
    assert world.grant(world.approved(minutes=20)).result == "granted"
    world.sessions.start("alice-1", INSTANCE, SESSION_OWNER)

    world.engine.revoke(parent, reason="done", by="alice")

    assert world.sessions.terminated == ["alice-1"]


def test_a_successor_elsewhere_is_no_continuation(world: CoreWorld) -> None:
    world.inventory.add("i-0fedcba9876543210")
    parent = _granted(world)
    assert world.grant(world.approved(instance="i-0fedcba9876543210", minutes=20)).result == "granted"
    world.sessions.start("alice-1", INSTANCE, SESSION_OWNER)

    world.engine.revoke(parent, reason="extended", by="sessiongate:nr-child")

    assert world.sessions.terminated == ["alice-1"]


def test_untags_only_while_the_slot_still_names_the_grant() -> None:
    world = CoreWorld(slot_count=1)
    old = _granted(world)
    # The slot went to a newer grant (a lock released by a repair, then claimed again).
    world.ledger.release_slot(world.alice, 1, old)
    newer = world.approved(minutes=30)
    assert world.grant(newer).detail["slot"] == 1

    outcome = world.engine.revoke(old, reason="done", by="alice")

    assert outcome.detail == {"reason": "done", "untagged": False}
    assert world.directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance": INSTANCE}
    assert world.ledger.slot_holder(world.alice, 1) == newer.grant_id
    assert world.status(old) is GrantStatus.REVOKED
    assert world.status(newer.grant_id) is GrantStatus.ACTIVE


def test_a_deleted_principal_is_revoked_without_error(world: CoreWorld) -> None:
    grant_id = _granted(world)
    world.directory.delete("user", "alice")

    outcome = world.engine.revoke(grant_id, reason="done", by="alice")

    assert outcome.result == "revoked"
    assert world.ledger.slots == {}
    assert world.status(grant_id) is GrantStatus.REVOKED


def test_a_grant_still_provisioning_is_retried_later(world: CoreWorld) -> None:
    request = world.approved()
    record = new_record(request, world.alice, world.clock.now(), GrantStatus.PROVISIONING)
    assert world.ledger.create(record)
    with pytest.raises(TransientError, match="still being provisioned"):
        world.engine.revoke(request.grant_id)
    world.clock.advance(timedelta(minutes=5))
    assert world.engine.revoke(request.grant_id).result == "revoked"


def test_an_unreachable_member_account_raises_so_the_revocation_is_retried() -> None:
    world = CoreWorld(member_accounts=(MEMBER,))
    directory, inventory, _ = world.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add(INSTANCE)
    request = world.approved(account=MEMBER)
    assert world.grant(request).result == "granted"
    world.accounts.unavailable.add(MEMBER)

    with pytest.raises(TransientError, match="cannot reach account"):
        world.engine.revoke(request.grant_id, reason="done", by="alice")
    assert world.status(request.grant_id) is GrantStatus.ACTIVE
    assert directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance": INSTANCE}


def test_unknown_and_malformed_revocations(world: CoreWorld) -> None:
    assert world.engine.revoke("cm-nothing").result == "ignored"
    assert world.engine.revoke("bad id!").result == "rejected"
    assert world.engine.on_revoke_schedule({"grant_id": "cm-x", "reason": "other"}).result == "rejected"


def test_the_schedule_payload_reads_record_and_lock_in_one_call(world: CoreWorld) -> None:
    grant_id = _granted(world)
    payload = world.schedules.schedules[f"sg-revoke-{grant_id}"].payload
    world.clock.advance(timedelta(minutes=10))
    reads = world.ledger.batch_gets

    assert world.engine.on_revoke_schedule(payload).result == "revoked"
    assert world.ledger.batch_gets == reads + 1  # record + lock, one BatchGetItem
    assert world.directory.tags_of("user", "alice") == {}
    assert world.engine.on_revoke_schedule(payload).result == "duplicate"


def test_an_old_schedule_firing_after_an_in_place_extension_does_not_revoke_early(world: CoreWorld) -> None:
    """A schedule whose expiry the grant no longer has (moved on later) is superseded: nothing happens;
    the schedule for the new expiry revokes."""
    grant_id = _granted(world)
    old = dict(world.schedules.schedules[f"sg-revoke-{grant_id}"].payload)
    world.ledger.grants[grant_id].expires_at = "2026-11-24T09:30:00Z"
    world.clock.advance(timedelta(minutes=10))

    outcome = world.engine.on_revoke_schedule(old)

    assert (outcome.result, outcome.detail) == (Result.IGNORED, {"why": "schedule superseded"})
    assert world.status(grant_id) is GrantStatus.ACTIVE
    assert world.directory.tags_of("user", "alice") != {}
    world.clock.advance(timedelta(minutes=20))
    assert world.engine.on_revoke_schedule({**old, "expires_at": "2026-11-24T09:30:00Z"}).result == "revoked"


def test_a_revocation_of_a_grant_in_its_bind_window_waits_it_out_first(world: CoreWorld) -> None:
    grant_id = _granted(world)
    start = world.clock.now()
    assert world.engine.revoke(grant_id, reason="done", by="alice").result == "revoked"
    assert world.clock.now() - start == timedelta(seconds=15)  # BIND_WINDOW + TAG_CALL_BOUND
    world.clock.advance(timedelta(minutes=1))
    other = _granted(world)
    world.clock.advance(timedelta(minutes=1))
    start = world.clock.now()
    assert world.engine.revoke(other, reason="done", by="alice").result == "revoked"
    assert world.clock.now() == start  # an older grant is revoked at once
