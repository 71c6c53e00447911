"""The reconciler on in-memory fakes: no moto, no template."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sessiongate.core.model import GrantStatus, Outcome, Result
from sessiongate.core.ports import ServiceFailure
from sessiongate.errors import TransientError
from tests.unit.fakes.core import ACCOUNT, INSTANCE, CoreWorld

OPERATORS = f"arn:aws:iam::{ACCOUNT}:policy/AllowStartSsmSessionBasedOnIamTags"


@pytest.fixture
def world() -> CoreWorld:
    world = CoreWorld(operator_policy_arn=OPERATORS)
    world.directory.attach(OPERATORS, "user", "alice")
    return world


def _repairs(outcome: Outcome) -> dict[str, list[str]]:
    assert outcome.result is Result.RECONCILED
    repairs: dict[str, list[str]] = outcome.detail["repairs"]
    return repairs


def _granted(world: CoreWorld, **kwargs: Any) -> str:
    request = world.approved(**kwargs)
    assert world.grant(request).result == "granted"
    return request.grant_id


def test_drifted_slot_tags_of_an_operator_are_removed(world: CoreWorld) -> None:
    bob = world.directory.add("user", "bob", tags={"SecurityAllowSessionInstance3": INSTANCE, "team": "ops"})
    world.directory.attach(OPERATORS, "user", "bob")

    repairs = _repairs(world.engine.reconcile())

    assert repairs["drift_removed"] == [f"{bob}#3"]
    assert world.directory.tags_of("user", "bob") == {"team": "ops"}
    assert world.ledger.slots == {}  # the repair lock is released
    assert world.notifier.types() == ["ReconcilerRepaired"]


def test_the_tag_of_a_live_grant_is_not_drift(world: CoreWorld) -> None:
    _granted(world)
    repairs = _repairs(world.engine.reconcile())
    assert repairs == {"revoked": [], "abandoned": [], "schedules_recreated": [], "drift_removed": []}
    assert world.directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance": INSTANCE}
    assert "ReconcilerRepaired" not in world.notifier.types()


def test_an_overdue_grant_whose_schedule_was_lost_is_revoked(world: CoreWorld) -> None:
    grant_id = _granted(world)
    world.schedules.schedules.clear()  # the schedule fired into a failure, or was deleted
    world.clock.advance(timedelta(minutes=11))  # expiry + 60 s: Scheduler may still be firing
    assert _repairs(world.engine.reconcile())["revoked"] == []
    assert world.status(grant_id) is GrantStatus.ACTIVE

    world.clock.advance(timedelta(seconds=31))
    repairs = _repairs(world.engine.reconcile())

    assert repairs["revoked"] == [grant_id]
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    assert (grant.status, grant.revoked_by) == (GrantStatus.REVOKED, "reconciler")
    assert world.directory.tags_of("user", "alice") == {}


def test_a_missing_schedule_of_a_live_grant_is_recreated(world: CoreWorld) -> None:
    grant_id = _granted(world)
    name = f"sg-revoke-{grant_id}"
    world.schedules.schedules.clear()

    assert _repairs(world.engine.reconcile())["schedules_recreated"] == [grant_id]
    assert world.schedules.schedules[name].payload == {"grant_id": grant_id, "reason": "expired"}


def test_a_stuck_provisioning_grant_is_undone_after_the_grace_period(world: CoreWorld) -> None:
    request = world.approved()
    world.schedules.create_once = lambda *a: (_ for _ in ()).throw(ServiceFailure("down"))  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    del world.schedules.create_once  # back to the class's method
    assert _repairs(world.engine.reconcile())["abandoned"] == []  # a grant invocation may be running

    world.clock.advance(timedelta(minutes=5))
    assert _repairs(world.engine.reconcile())["abandoned"] == [request.grant_id]
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED
    assert [d["code"] for d in grant.denials] == ["provisioning_timeout"]
    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}


def test_a_lock_left_by_a_dead_repair_is_released(world: CoreWorld) -> None:
    assert world.ledger.lock_free_slot(world.alice, 2, "reconciler-repair")
    repairs = _repairs(world.engine.reconcile())
    assert repairs["drift_removed"] == [f"{world.alice}#2 (stale lock)"]
    assert world.ledger.slots == {}


def test_one_failing_repair_does_not_stop_the_others_and_the_run_raises(world: CoreWorld) -> None:
    first, second = _granted(world), _granted(world)
    world.clock.advance(timedelta(minutes=12))
    revoke = world.engine.revoke

    def flaky(grant_id: object, **kwargs: Any) -> Outcome:
        if grant_id == first:
            raise ServiceFailure("Rate exceeded", code="Throttling")
        return revoke(grant_id, **kwargs)

    world.engine.revoke = flaky  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="1 item"):
        world.engine.reconcile()
    assert world.status(first) is GrantStatus.ACTIVE
    assert world.status(second) is GrantStatus.REVOKED


def test_an_unlistable_operator_policy_is_a_failure_not_a_crash(world: CoreWorld) -> None:
    world.directory.policies.clear()  # IAM answers NoSuchEntity for the policy
    grant_id = _granted(world)
    world.schedules.schedules.clear()
    with pytest.raises(TransientError, match="1 item"):
        world.engine.reconcile()
    assert world.schedules.exists(f"sg-revoke-{grant_id}")  # the other repairs were made
