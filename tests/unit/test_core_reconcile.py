"""The reconciler on in-memory fakes: no moto, no template."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.core.binding import instance_scope
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import GrantStatus, Outcome, Result
from sessiongate.core.ports import ServiceFailure, TagLimitExceeded
from sessiongate.core.slots import instance_key
from sessiongate.errors import TransientError
from tests.unit.fakes.core import ACCOUNT, INSTANCE, CoreWorld, Slot
from tests.unit.test_binding import ec2_event

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


def tag_event(
    name: str, keys: dict[str, str], *, call: str = "TagUser", account: str = ACCOUNT
) -> dict[str, Any]:
    """An IAM tag call's CloudTrail record as EventBridge delivers it (``AWS API Call via CloudTrail``)."""
    params: dict[str, Any] = {"userName" if call.endswith("User") else "roleName": name}
    if call.startswith(("Tag", "Create")):
        params["tags"] = [{"key": k, "value": v} for k, v in keys.items()]
    else:
        params["tagKeys"] = list(keys)
    return {
        "source": "aws.iam",
        "detail-type": "AWS API Call via CloudTrail",
        "account": account,
        "detail": {
            "eventSource": "iam.amazonaws.com",
            "eventName": call,
            "recipientAccountId": account,
            "requestParameters": params,
        },
    }


def test_drifted_slot_tags_are_removed_on_the_tag_event(world: CoreWorld) -> None:
    bob = world.directory.add("user", "bob", tags={"SecurityAllowSessionInstance3": INSTANCE, "team": "ops"})

    repairs = _repairs(
        world.engine.on_tag_event(tag_event("bob", {"SecurityAllowSessionInstance3": INSTANCE}))
    )

    assert repairs["drift_removed"] == [f"{bob}#3"]
    assert world.directory.tags_of("user", "bob") == {"team": "ops"}
    assert world.ledger.slots == {}  # the repair lock is released
    assert world.notifier.types() == ["ReconcilerRepaired"]
    assert world.ledger.batch_gets == 1  # the principal's five slot locks in one BatchGetItem


def test_a_principal_created_with_slot_tags_is_repaired_on_its_creation_event(world: CoreWorld) -> None:
    """CreateUser/CreateRole take tags too: a principal born with a slot tag is drift like a tag call."""
    bob = world.directory.add("user", "bob", tags={"SecurityAllowSessionInstance2": INSTANCE})

    event = tag_event("bob", {"SecurityAllowSessionInstance2": INSTANCE}, call="CreateUser")
    repairs = _repairs(world.engine.on_tag_event(event))

    assert repairs["drift_removed"] == [f"{bob}#2"]
    assert world.directory.tags_of("user", "bob") == {}


def test_tag_events_without_slot_keys_cost_nothing(world: CoreWorld) -> None:
    world.directory.add("user", "bob", tags={"SecurityAllowSessionInstance3": INSTANCE})
    for event in (
        tag_event("bob", {"team": "ops"}),
        {**tag_event("bob", {"SecurityAllowSession": "x"}), "detail": {"eventSource": "ec2.amazonaws.com"}},
        {"detail-type": "Scheduled Event", "detail": {}},
    ):
        assert world.engine.on_tag_event(event).result is Result.IGNORED
    assert world.directory.tags_of("user", "bob") == {"SecurityAllowSessionInstance3": INSTANCE}
    assert world.ledger.batch_gets == 0


def test_a_slot_key_in_any_case_or_removed_is_checked(world: CoreWorld) -> None:
    world.directory.add("user", "bob", tags={"securityallowsessioninstance2": INSTANCE})
    event = tag_event("bob", {"SECURITYALLOWSESSIONUSER2": "x"}, call="UntagUser")
    assert _repairs(world.engine.on_tag_event(event))["drift_removed"] != []
    assert world.directory.tags_of("user", "bob") == {}


def test_the_tag_of_a_live_grant_is_not_drift(world: CoreWorld) -> None:
    _granted(world)
    event = tag_event("alice", {"SecurityAllowSessionInstance": INSTANCE})
    for outcome in (world.engine.on_tag_event(event), world.engine.sweep(), world.engine.reconcile()):
        assert _repairs(outcome) == {"revoked": [], "abandoned": [], "drift_removed": []}
    assert world.directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance": INSTANCE}
    assert "ReconcilerRepaired" not in world.notifier.types()


def test_the_sweep_removes_drift_no_event_reported(world: CoreWorld) -> None:
    # e.g. a principal created with slot tags, or a lost CloudTrail event
    carol = world.directory.add("role", "carol", tags={"SecurityAllowSessionInstance": INSTANCE})
    world.directory.add("user", "dave", tags={"team": "ops"})
    _granted(world)

    outcome = world.engine.sweep()

    assert _repairs(outcome)["drift_removed"] == [f"{carol}#1"]
    assert outcome.detail["checked_principals"] == 3
    assert world.directory.tags_of("role", "carol") == {}
    assert world.directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance": INSTANCE}
    assert world.directory.authorization_detail_reads == 1
    # 3 principals x 5 slot locks in one BatchGetItem, the one live holder's record in another
    assert world.ledger.batch_gets == 2


def test_the_sweep_covers_member_accounts_and_reports_an_unreachable_one(world: CoreWorld) -> None:
    world = CoreWorld(member_accounts=("210987654321", "111111111111"))
    member_directory, _, _ = world.accounts.add("210987654321")
    erin = member_directory.add("user", "erin", tags={"SecurityAllowSessionInstance2": INSTANCE})
    with pytest.raises(TransientError, match="account 111111111111"):
        world.engine.sweep()
    assert member_directory.tags_of("user", "erin") == {}
    assert erin.startswith("arn:aws:iam::210987654321:")


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


def test_the_steady_run_reads_only_overdue_grants_and_no_schedule(world: CoreWorld) -> None:
    grant_id = _granted(world)
    world.schedules.schedules.clear()  # lost while the grant is live: it is not re-created any more
    read: list[str] = []
    get_grant = world.ledger.get_grant
    world.ledger.get_grant = lambda gid: read.append(gid) or get_grant(gid)  # type: ignore[method-assign]
    world.schedules.exists = lambda name: pytest.fail("the steady run reads no schedule")  # type: ignore[method-assign]

    assert _repairs(world.engine.reconcile()) == {"revoked": [], "abandoned": [], "drift_removed": []}
    assert read == []  # not overdue: not even its record is read
    world.clock.advance(timedelta(minutes=10, seconds=91))
    assert _repairs(world.engine.reconcile())["revoked"] == [grant_id]
    assert world.schedules.schedules == {}


def test_a_stuck_provisioning_grant_of_the_previous_release_is_undone_after_the_grace_period(
    world: CoreWorld,
) -> None:
    """The previous release wrote grants PROVISIONING first; a deployed table may hold one that stopped
    after tagging. This release never writes one, but its reconciler still undoes them."""
    request = world.approved()
    world.grant(request)
    legacy = world.ledger.grants[request.grant_id]
    legacy.status, legacy.activated_at, legacy.schedule_name = GrantStatus.PROVISIONING, None, None
    world.schedules.schedules.clear()
    assert _repairs(world.engine.sweep())["abandoned"] == []  # a grant invocation may be running

    world.clock.advance(timedelta(minutes=5))
    # It claimed its slot (indexed at its expiry now): the steady run finds it only once overdue, the
    # sweep (which reads every slot lock's grant) at once.
    assert _repairs(world.engine.reconcile())["abandoned"] == []
    assert _repairs(world.engine.sweep())["abandoned"] == [request.grant_id]
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED
    assert [d["code"] for d in grant.denials] == ["provisioning_timeout"]
    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}


def test_a_lock_left_by_a_dead_repair_is_released(world: CoreWorld) -> None:
    assert world.ledger.lock_free_slot(world.alice, 2, "reconciler-repair")
    repairs = _repairs(world.engine.sweep())
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


def test_a_stale_lock_of_a_grant_that_is_over_is_released_by_the_sweep(world: CoreWorld) -> None:
    grant_id = _granted(world)
    assert world.engine.revoke(grant_id, reason="manual", by="test").result == Result.REVOKED
    world.ledger.slots[(world.alice, 1)] = Slot(grant_id)  # as if the release had been lost
    assert _repairs(world.engine.sweep())["drift_removed"] == [f"{world.alice}#1 (stale lock)"]
    assert world.ledger.slots == {}


OTHER_INSTANCE = "i-0fedcba9876543210"


def _late_tag_over_the_next_grant(world: CoreWorld) -> str:
    """Grant 1 (INSTANCE) revoked, grant 2 (OTHER_INSTANCE) takes the same slot, then grant 1's TagUser
    lands late (IAM retried it past the bind window): the slot says INSTANCE again. Grant 2's id."""
    world.inventory.add(OTHER_INSTANCE)
    first = _granted(world)
    assert world.engine.revoke(first, reason="done", by="alice").result == "revoked"
    world.clock.advance(timedelta(minutes=1))
    second = _granted(world, instance=OTHER_INSTANCE)
    assert world.ledger.slot_holder(world.alice, 1) == second
    world.directory.tag(PrincipalType.USER, "alice", {"SecurityAllowSessionInstance": INSTANCE})
    return second


def test_a_late_tag_of_a_revoked_grant_over_the_slot_of_a_live_one_is_removed(world: CoreWorld) -> None:
    """Fail-closed: the revoked grant's instance is never reachable again; the live grant's person loses
    its access too (the reconciler may only untag), and is told by the report."""
    second = _late_tag_over_the_next_grant(world)
    world.clock.advance(timedelta(seconds=30))  # the CloudTrail event arrives later

    event = tag_event("alice", {"SecurityAllowSessionInstance": INSTANCE})
    repairs = _repairs(world.engine.on_tag_event(event))

    assert repairs["drift_removed"] == [f"{world.alice}#1 (wrong value)"]
    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slot_holder(world.alice, 1) == second  # its revocation frees it
    assert "ReconcilerRepaired" in world.notifier.types()
    assert [w for w in world.directory.writes if w[0] == "tag"][-1:] == [
        ("tag", "alice", ("SecurityAllowSessionInstance",))
    ]  # the reconciler never tags
    assert world.engine.revoke(second, reason="done", by="alice").result == "revoked"
    assert world.ledger.slots == {}


def test_the_sweep_removes_a_held_slot_whose_keys_are_not_its_grant(world: CoreWorld) -> None:
    """A bound-session key on an unbound grant's slot (or a wrong instance) is no tag of that grant."""
    _granted(world)
    world.directory.tag(
        PrincipalType.USER, "alice", {"SecurityAllowSessionUser1": "AROAEXAMPLE:mallory", "team": "ops"}
    )

    repairs = _repairs(world.engine.sweep())

    assert repairs["drift_removed"] == [f"{world.alice}#1 (wrong value)"]
    assert world.directory.tags_of("user", "alice") == {"team": "ops"}


def _during_the_abandonment(
    world: CoreWorld, late_tag: Callable[[], None], *meanwhile: Callable[[], None]
) -> None:
    """Virtual waits with what happens meanwhile: during the first wait (the abandonment's, until its
    last tag call cannot land) ``meanwhile`` runs in order; ``late_tag`` (a tag call of the abandoned
    grant, started within its bind window) lands 12 s after now, when a wait passes that time."""
    land_at = world.clock.now() + timedelta(seconds=12)  # < BIND_WINDOW + TAG_CALL_BOUND (15 s)
    pending, landing = list(reversed(meanwhile)), [late_tag]

    def sleeping(seconds: float) -> None:
        end = world.clock.now() + timedelta(seconds=seconds)
        while pending:
            pending.pop()()
        if landing and world.clock.now() <= land_at <= end:
            world.clock.set(land_at)
            landing.pop()()
        world.clock.set(max(end, world.clock.now()))

    world.clock.sleep = sleeping  # type: ignore[method-assign]


def test_an_abandoned_grants_lock_is_kept_until_its_last_tag_call_cannot_land(world: CoreWorld) -> None:
    """An abandoned grant (its tag refused) is DENIED at once, but a tag call of one of its deliveries may
    still land until activated_at + BIND_WINDOW + TAG_CALL_BOUND. A reconciler run in that gap must not
    free its slot: another grant would take the slot and the late tag land on it (the abandoned grant's
    instance on the other grant's slot). The run waits until no tag can land, then repairs."""
    world.inventory.add(OTHER_INSTANCE)
    request = world.approved()
    tag = world.directory.tag

    def refused(*args: Any) -> None:
        world.directory.tag = tag  # type: ignore[method-assign]
        raise TagLimitExceeded("alice")  # IAM refused it (e.g. the principal filled up meanwhile)

    landed: list[bool] = []

    def late_tag() -> None:
        tag(PrincipalType.USER, "alice", {"SecurityAllowSessionInstance": INSTANCE})
        landed.append(True)

    second: list[Outcome] = []
    _during_the_abandonment(
        world,
        late_tag,
        lambda: _repairs(
            world.engine.on_tag_event(tag_event("alice", {"SecurityAllowSessionInstance": "x"}))
        ),
        lambda: second.append(world.grant(world.approved(instance=OTHER_INSTANCE))),
    )
    world.directory.tag = refused  # type: ignore[method-assign]

    assert world.codes(world.grant(request)) == ["tag_limit"]

    assert landed == [True]
    [other] = second
    assert other.result == "granted"
    # Nothing names the abandoned grant's instance; the other grant's slot carries its own value.
    assert world.directory.tags_of("user", "alice") == {instance_key(other.detail["slot"]): OTHER_INSTANCE}
    assert world.ledger.slot_holder(world.alice, other.detail["slot"]) == other.grant_id
    assert world.status(request.grant_id) is GrantStatus.DENIED


def test_an_abandoned_instance_bound_grants_lock_is_kept_until_its_last_tag_call_cannot_land() -> None:
    """The same on an instance (instance binding): the late tag would name the abandoned grant's person
    on the slot another person's grant took."""
    world = CoreWorld(binding_mode="instance")
    world.directory.add("user", "bob")
    alice = world.directory.get_principal(PrincipalType.USER, "alice")
    assert alice is not None
    request = world.approved()
    tag = world.inventory.tag_instance

    def refused(*args: Any) -> None:
        world.inventory.tag_instance = tag  # type: ignore[method-assign]
        raise TagLimitExceeded(INSTANCE)

    second: list[Outcome] = []
    _during_the_abandonment(
        world,
        lambda: tag(INSTANCE, {"SecurityAllowSessionFor1": alice.id}),
        lambda: _repairs(world.engine.on_tag_event(ec2_event(INSTANCE, {"SecurityAllowSessionFor1": "x"}))),
        lambda: second.append(world.grant(world.approved(principal="bob"))),
    )
    world.inventory.tag_instance = refused  # type: ignore[method-assign]

    assert world.codes(world.grant(request)) == ["tag_limit"]

    [other] = second
    assert other.result == "granted"
    bob = world.directory.get_principal(PrincipalType.USER, "bob")
    assert bob is not None
    slot = other.detail["slot"]
    assert world.inventory.tags_of(INSTANCE) == {f"SecurityAllowSessionFor{slot}": bob.id}
    assert world.ledger.slot_holder(instance_scope(ACCOUNT, INSTANCE), slot) == other.grant_id


def test_a_clock_that_does_not_move_leaves_an_unsettled_lock_and_raises(world: CoreWorld) -> None:
    """The wait relies on the clock: if a wait did not move it, the run reports the slot unrepaired
    (it is retried) instead of reading it again and again, and the lock stays (fail closed)."""
    grant_id = _granted(world)
    record = world.ledger.get_grant(grant_id)
    assert record is not None
    assert world.ledger.mark_denied(record, [{"code": "tag_limit", "message": "refused"}])
    world.clock.sleep = lambda seconds: None  # type: ignore[method-assign]

    with pytest.raises(TransientError, match="1 item"):
        world.engine.on_tag_event(tag_event("alice", {"SecurityAllowSessionInstance": INSTANCE}))

    assert world.ledger.slot_holder(world.alice, 1) == grant_id
