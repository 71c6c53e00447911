"""Instance-side binding (issue 15): the mode per principal, the person's aws:userid, the instance slot
tags and their repair, on in-memory fakes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.core import binding, guardrails, slots
from sessiongate.core.guardrails import PrincipalFacts
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import Result
from sessiongate.core.ports import InstanceGone, ServiceFailure
from sessiongate.core.slots import BindingMode
from sessiongate.errors import ConfigError
from sessiongate.settings import Settings
from tests.unit.fakes.core import ACCOUNT, INSTANCE, CoreWorld, FakeInventory

IDC_PATH = "/aws-reserved/sso.amazonaws.com/"
IDC_ROLE = "AWSReservedSSO_Operators_0123456789abcdef"
ROLE_ID = "AROA00000000000000001"


def _user(name: str = "alice") -> PrincipalFacts:
    return PrincipalFacts(
        f"arn:aws:iam::{ACCOUNT}:user/{name}", name, "/", "user", {}, "AIDA00000000000000001"
    )


def _role(name: str, path: str = "/") -> PrincipalFacts:
    return PrincipalFacts(f"arn:aws:iam::{ACCOUNT}:role{path}{name}", name, path, "role", {}, ROLE_ID)


@pytest.mark.parametrize(
    ("mode", "principal", "expected"),
    [
        ("auto", _user(), BindingMode.PRINCIPAL),
        ("auto", _role("ops-alice"), BindingMode.PRINCIPAL),  # a per-person role
        ("auto", _role(IDC_ROLE, IDC_PATH), BindingMode.INSTANCE),  # IAM Identity Center
        ("auto", _role("ops-shared"), BindingMode.INSTANCE),  # SharedRolePatterns
        ("auto", _role("AWSReservedSSO_X_1", "/elsewhere/"), BindingMode.INSTANCE),  # the default pattern
        ("principal", _role(IDC_ROLE, IDC_PATH), BindingMode.PRINCIPAL),
        ("instance", _user(), BindingMode.INSTANCE),
    ],
)
def test_the_binding_mode_of_a_principal(mode: str, principal: PrincipalFacts, expected: BindingMode) -> None:
    settings = Settings(binding_mode=mode, shared_role_patterns=("ops-shared", "AWSReservedSSO_*"))
    assert guardrails.binding_mode(principal, settings) is expected


def test_the_binding_mode_setting_is_validated() -> None:
    assert Settings.from_env({"SESSIONGATE_BINDING_MODE": "instance"}).binding_mode == "instance"
    with pytest.raises(ConfigError, match="binding mode must be one of principal, instance, auto"):
        Settings.from_env({"SESSIONGATE_BINDING_MODE": "instances"})


def test_stacks_that_predate_the_setting_bind_on_the_principal() -> None:
    """A function whose environment lacks SESSIONGATE_BINDING_MODE (an earlier release) keeps binding on
    the principal; the template's parameter defaults to auto."""
    assert Settings.from_env({}).binding_mode == "principal"


def _request(world: CoreWorld, **kwargs: Any) -> Any:
    return world.approved(**kwargs)


def test_the_bound_user_id_is_the_persons_aws_userid() -> None:
    world = CoreWorld(binding_mode="instance")
    settings = world.settings
    alice = _user()
    assert guardrails.bind_to_requester(world.approved(), alice, settings) == alice.id
    idc = _role(IDC_ROLE, IDC_PATH)
    own = world.approved(
        principal=IDC_ROLE,
        kind="role",
        requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_ROLE}/alice@example.com",
    )
    assert guardrails.bind_to_requester(own, idc, settings) == f"{ROLE_ID}:alice@example.com"
    # Someone else asking for the role: no person to bind to.
    other = world.approved(principal=IDC_ROLE, kind="role", requester=f"arn:aws:iam::{ACCOUNT}:user/bob")
    assert guardrails.bind_to_requester(other, idc, settings) is None
    # A session of another role with the same session name is not the requester's own session.
    elsewhere = world.approved(
        principal=IDC_ROLE,
        kind="role",
        requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Other_1/alice@example.com",
    )
    assert guardrails.bind_to_requester(elsewhere, idc, settings) is None


def test_identity_center_roles_are_no_denial_when_bound_on_the_instance() -> None:
    world = CoreWorld(binding_mode="auto")
    idc = _role(IDC_ROLE, IDC_PATH)
    request = world.approved(
        principal=IDC_ROLE,
        kind="role",
        requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_ROLE}/alice@example.com",
    )
    bound = replace(request, bound_user_id=guardrails.bind_to_requester(request, idc, world.settings))
    assert guardrails.check_principal(bound, idc, world.settings) == []
    # Unbound (requested by someone else): one person only, so denied.
    assert [d.code for d in guardrails.check_principal(request, idc, world.settings)] == [
        "instance_binding_unbindable"
    ]
    # Bound on the principal instead, IAM would refuse the tag: denied before any write, as before.
    on_principal = replace(world.settings, binding_mode="principal")
    assert "principal_unmodifiable" in [d.code for d in guardrails.check_principal(bound, idc, on_principal)]


def test_instance_slot_keys_in_any_letter_case() -> None:
    assert slots.for_key(1) == "SecurityAllowSessionFor1"
    assert slots.slot_of_for_key("securityallowsessionfor3", 5) == 3
    assert slots.slot_of_for_key("SecurityAllowSessionFor6", 5) is None
    assert slots.slot_of_for_key("SecurityAllowSessionInstance", 5) is None
    tags = {"SecurityAllowSessionFor1": "x", "SECURITYALLOWSESSIONFOR2": "y", "Name": "web"}
    assert slots.instance_slot_preference(3, tags) == [3, 1, 2]
    # aws: tags do not count against EC2's 50 (Tag your Amazon EC2 resources).
    assert slots.user_tag_count({**tags, "aws:cloudformation:stack-name": "s"}) == 3


def _instance_binding(inventory: FakeInventory, value: str = "AIDA1") -> binding.InstanceBinding:
    scope = binding.instance_scope(ACCOUNT, INSTANCE)
    return binding.InstanceBinding(inventory, INSTANCE, scope, value, inventory.tags_of(INSTANCE))


def test_an_instance_with_49_tags_has_room_for_one_slot_tag_and_50_is_a_denial() -> None:
    inventory = FakeInventory()
    inventory.add(INSTANCE, tags={f"t{n}": "x" for n in range(49)})
    bound = _instance_binding(inventory)
    assert bound.room_denial(5) is None
    assert bound.tag(1) is None
    assert inventory.tags_of(INSTANCE)["SecurityAllowSessionFor1"] == "AIDA1"
    full = _instance_binding(inventory, "AIDA2")
    denial = full.room_denial(5)
    assert denial is not None
    assert denial.code == "tag_limit"
    # Read before someone else added a tag: EC2's own refusal is the same denial, nothing written.
    denial = full.tag(2)
    assert denial is not None
    assert (denial.code, denial.message) == (
        "tag_limit",
        "EC2 refused the tag: 50 tags per instance",
    )
    assert "SecurityAllowSessionFor2" not in inventory.tags_of(INSTANCE)


def test_untagging_an_instance_removes_only_the_grants_own_value() -> None:
    inventory = FakeInventory()
    inventory.add(INSTANCE, tags={"SecurityAllowSessionFor1": "AROA1:erin"})
    mine = _instance_binding(inventory, "AROA1:dave")
    assert mine.untag(1) is True  # DeleteTags succeeded, but the value was not the grant's
    assert inventory.tags_of(INSTANCE) == {"SecurityAllowSessionFor1": "AROA1:erin"}
    assert _instance_binding(inventory, "AROA1:erin").untag(1) is True
    assert inventory.tags_of(INSTANCE) == {}


def test_a_terminated_instance_is_a_denial_not_a_retry() -> None:
    inventory = FakeInventory()
    inventory.add(INSTANCE)
    bound = _instance_binding(inventory)
    inventory.add(INSTANCE, state="terminated")
    denial = bound.tag(1)
    assert denial is not None
    assert denial.code == "instance_not_found"
    assert bound.untag(1) is False


def ec2_event(instance_id: str, keys: dict[str, str], *, call: str = "CreateTags") -> dict[str, Any]:
    """An EC2 tag call's CloudTrail record as EventBridge delivers it."""
    return {
        "source": "aws.ec2",
        "detail-type": "AWS API Call via CloudTrail",
        "account": ACCOUNT,
        "detail": {
            "eventSource": "ec2.amazonaws.com",
            "eventName": call,
            "recipientAccountId": ACCOUNT,
            "requestParameters": {
                "resourcesSet": {"items": [{"resourceId": instance_id}]},
                "tagSet": {"items": [{"key": k, "value": v} for k, v in keys.items()]},
            },
        },
    }


def test_a_slot_tag_set_on_an_instance_by_hand_is_removed_on_its_event() -> None:
    world = CoreWorld(binding_mode="auto")
    drift = {"SecurityAllowSessionFor2": "AIDAMALLORY", "securityallowsessionfor3": "AIDAMALLORY"}
    world.inventory.add(INSTANCE, tags={"Name": "web", **drift})
    outcome = world.engine.on_tag_event(ec2_event(INSTANCE, drift))
    assert outcome.result is Result.RECONCILED
    scope = binding.instance_scope(ACCOUNT, INSTANCE)
    assert sorted(outcome.detail["repairs"]["drift_removed"]) == [f"{scope}#2", f"{scope}#3"]
    assert world.inventory.tags_of(INSTANCE) == {"Name": "web"}
    # The repair lock is released again.
    assert world.ledger.slot_holder(scope, 2) is None


def test_instance_tag_events_without_slot_keys_are_ignored() -> None:
    world = CoreWorld()
    world.inventory.add(INSTANCE, tags={"Name": "web"})
    assert world.engine.on_tag_event(ec2_event(INSTANCE, {"Name": "db"})).result is Result.IGNORED
    assert world.inventory.writes == []


def test_an_instance_launched_with_a_slot_tag_is_repaired() -> None:
    world = CoreWorld()
    world.inventory.add(INSTANCE, tags={"SecurityAllowSessionFor1": "AIDAMALLORY"})
    event = ec2_event(INSTANCE, {}, call="RunInstances")
    event["detail"]["requestParameters"] = {
        "tagSpecificationSet": {
            "items": [
                {"resourceType": "instance", "tags": [{"key": "SecurityAllowSessionFor1", "value": "x"}]}
            ]
        }
    }
    event["detail"]["responseElements"] = {"instancesSet": {"items": [{"instanceId": INSTANCE}]}}
    assert world.engine.on_tag_event(event).result is Result.RECONCILED
    assert world.inventory.tags_of(INSTANCE) == {}


def test_the_sweep_removes_instance_slot_tags_no_event_reported() -> None:
    world = CoreWorld()
    world.inventory.add(INSTANCE, tags={"SecurityAllowSessionFor4": "AIDAMALLORY", "Name": "web"})
    world.inventory.add("i-0fedcba9876543210", tags={"Name": "db"})
    outcome = world.engine.sweep()
    assert outcome.detail["checked_instances"] == 2
    assert outcome.detail["repairs"]["drift_removed"] == [f"{binding.instance_scope(ACCOUNT, INSTANCE)}#4"]
    assert world.inventory.tags_of(INSTANCE) == {"Name": "web"}


# ---------------------------------------------------------------- grants bound on the instance
def _idc_world(**settings: Any) -> CoreWorld:
    world = CoreWorld(binding_mode="auto", **settings)
    world.directory.add("role", IDC_ROLE, path=IDC_PATH)
    return world


def _idc_request(world: CoreWorld, person: str = "alice@example.com", **kwargs: Any) -> Any:
    return world.approved(
        principal=IDC_ROLE,
        kind="role",
        requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_ROLE}/{person}",
        **kwargs,
    )


def _userid(world: CoreWorld, person: str) -> str:
    facts = world.directory.get_principal(PrincipalType.ROLE, IDC_ROLE)
    assert facts is not None
    return f"{facts.id}:{person}"


def test_an_identity_center_grant_tags_the_instance_with_the_persons_userid() -> None:
    world = _idc_world()
    request = _idc_request(world)
    outcome = world.grant(request)
    assert outcome.result is Result.GRANTED
    assert world.inventory.tags_of(INSTANCE) == {
        "SecurityAllowSessionFor1": _userid(world, "alice@example.com")
    }
    assert world.directory.tags_of("role", IDC_ROLE) == {}  # the shared role is never written
    record = world.ledger.get_grant(request.grant_id)
    assert record is not None
    assert (record.binding, record.slot) == ("instance", 1)
    # The slot lock is the instance's, not the role's.
    assert world.ledger.slot_holder(binding.instance_scope(ACCOUNT, INSTANCE), 1) == request.grant_id
    assert world.ledger.slot_holder(record.principal_arn, 1) is None
    # A duplicate delivery changes nothing.
    assert world.grant(request).result is Result.DUPLICATE
    assert len(world.inventory.writes) == 1


def test_two_people_on_one_permission_set_hold_two_slots_of_the_instance() -> None:
    world = _idc_world()
    assert world.grant(_idc_request(world, "alice@example.com")).result is Result.GRANTED
    assert world.grant(_idc_request(world, "bob@example.com")).result is Result.GRANTED
    assert world.inventory.tags_of(INSTANCE) == {
        "SecurityAllowSessionFor1": _userid(world, "alice@example.com"),
        "SecurityAllowSessionFor2": _userid(world, "bob@example.com"),
    }


def test_iam_users_stay_bound_on_the_principal_in_auto_mode() -> None:
    world = _idc_world()
    request = world.approved()
    assert world.grant(request).result is Result.GRANTED
    assert world.directory.tags_of("user", "alice") == {"SecurityAllowSessionInstance": INSTANCE}
    assert world.inventory.tags_of(INSTANCE) == {}
    record = world.ledger.get_grant(request.grant_id)
    assert record is not None
    assert record.binding == "principal"


def test_instance_mode_binds_iam_users_on_the_instance_too() -> None:
    world = CoreWorld(binding_mode="instance")
    request = world.approved()
    assert world.grant(request).result is Result.GRANTED
    alice = world.directory.get_principal(PrincipalType.USER, "alice")
    assert alice is not None
    assert world.inventory.tags_of(INSTANCE) == {"SecurityAllowSessionFor1": alice.id}
    assert world.directory.tags_of("user", "alice") == {}


def test_revocation_removes_only_the_grants_own_instance_tag() -> None:
    world = _idc_world()
    request = _idc_request(world)
    assert world.grant(request).result is Result.GRANTED
    # Someone rewrote the slot's value by hand (the guard would refuse; the value is no longer the grant's).
    world.inventory.instances[INSTANCE] = replace(
        world.inventory.instances[INSTANCE], tags={"SecurityAllowSessionFor1": "AIDAMALLORY"}
    )
    assert world.engine.revoke(request.grant_id, reason="done", by="alice").result is Result.REVOKED
    assert world.inventory.tags_of(INSTANCE) == {"SecurityAllowSessionFor1": "AIDAMALLORY"}
    assert world.ledger.slot_holder(binding.instance_scope(ACCOUNT, INSTANCE), 1) is None
    # The untouched case: expiry removes the grant's tag.
    again = _idc_request(world, "bob@example.com")
    assert world.grant(again).result is Result.GRANTED
    world.clock.advance(timedelta(minutes=10))
    assert world.engine.revoke(again.grant_id, reason="expired", by="scheduler").result is Result.REVOKED
    assert "SecurityAllowSessionFor2" not in world.inventory.tags_of(INSTANCE)


def test_a_full_instance_is_a_tag_limit_denial() -> None:
    world = _idc_world()
    world.inventory.add(INSTANCE, tags={f"t{n}": "x" for n in range(50)})
    request = _idc_request(world)
    outcome = world.grant(request)
    assert outcome.result is Result.DENIED
    assert world.codes(outcome) == ["tag_limit"]
    assert world.ledger.slot_holder(binding.instance_scope(ACCOUNT, INSTANCE), 1) is None


def test_all_slots_of_an_instance_in_use_is_no_free_slot() -> None:
    world = _idc_world(slot_count=1)
    assert world.grant(_idc_request(world, "alice@example.com")).result is Result.GRANTED
    outcome = world.grant(_idc_request(world, "bob@example.com"))
    assert world.codes(outcome) == ["no_free_slot"]


def test_an_identity_center_request_by_someone_else_is_denied() -> None:
    world = _idc_world()
    request = world.approved(principal=IDC_ROLE, kind="role", requester=f"arn:aws:iam::{ACCOUNT}:user/bob")
    outcome = world.grant(request)
    assert world.codes(outcome) == ["instance_binding_unbindable"]
    assert world.inventory.writes == []


def test_an_extension_keeps_the_shell_and_the_expiry_of_the_last_ends_it() -> None:
    world = _idc_world(terminate_sessions_on_expiry=True)
    first = _idc_request(world)
    assert world.grant(first).result is Result.GRANTED
    sts = f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_ROLE}/"
    world.sessions.start("alice@example.com-0123456789abcdef0", INSTANCE, sts + "alice@example.com")
    world.sessions.start("bob@example.com-0123456789abcdef0", INSTANCE, sts + "bob@example.com")
    world.clock.advance(timedelta(minutes=8))
    extension = _idc_request(world)
    assert world.grant(extension).result is Result.GRANTED
    assert world.engine.revoke(first.grant_id, reason="extended", by="api").result is Result.REVOKED
    assert [s.session_id for s in world.sessions.active] == [
        "alice@example.com-0123456789abcdef0",
        "bob@example.com-0123456789abcdef0",
    ]
    world.clock.advance(timedelta(minutes=10))
    assert world.engine.revoke(extension.grant_id, reason="expired", by="scheduler").result is Result.REVOKED
    # Only the person's own session of the shared role ends.
    assert [s.session_id for s in world.sessions.active] == ["bob@example.com-0123456789abcdef0"]
    assert world.inventory.tags_of(INSTANCE) == {}


def test_drift_on_a_held_instance_slot_leaves_only_the_holders_tag() -> None:
    world = _idc_world()
    request = _idc_request(world)
    assert world.grant(request).result is Result.GRANTED
    own = _userid(world, "alice@example.com")
    drift = {"SecurityAllowSessionFor1".lower(): "AIDAMALLORY"}
    world.inventory.tag_instance(INSTANCE, drift)
    outcome = world.engine.on_tag_event(ec2_event(INSTANCE, drift))
    scope = binding.instance_scope(ACCOUNT, INSTANCE)
    assert outcome.detail["repairs"]["drift_removed"] == [f"{scope}#1 (not the holder's)"]
    assert world.inventory.tags_of(INSTANCE) == {"SecurityAllowSessionFor1": own}
    # The grant's own tag is no drift, for the sweep either.
    assert world.engine.sweep().detail["repairs"]["drift_removed"] == []


def test_the_request_apis_member_session_may_untag_instances_but_never_tag_them() -> None:
    """An early revocation ("I'm done") of an instance-bound grant in a member account removes the tag
    through the request API's narrowed session of the member role."""
    from sessiongate.adapters.accounts import READ_AND_UNTAG_ONLY

    [statement] = READ_AND_UNTAG_ONLY["Statement"]
    assert "ec2:DeleteTags" in statement["Action"]
    assert not {"ec2:CreateTags", "iam:TagUser", "iam:TagRole"} & set(statement["Action"])


def test_an_iam_users_instance_bound_grant_ends_her_sessions_at_expiry() -> None:
    """An IAM user's aws:userid has no session part: the revocation ends the user's sessions (it used to
    read a session name out of every bound user id)."""
    world = CoreWorld(binding_mode="instance", terminate_sessions_on_expiry=True)
    request = world.approved()
    assert world.grant(request).result is Result.GRANTED
    world.sessions.start("alice-0123456789abcdef0", INSTANCE, f"arn:aws:iam::{ACCOUNT}:user/alice")
    world.clock.advance(timedelta(minutes=10))
    assert world.engine.revoke(request.grant_id, reason="expired", by="scheduler").result is Result.REVOKED
    assert world.sessions.terminated == ["alice-0123456789abcdef0"]
    assert world.inventory.tags_of(INSTANCE) == {}


def test_the_revoke_schedule_names_the_instance_lock_read_with_the_record() -> None:
    """Issue 16: the scheduled revocation reads record and slot lock in one BatchGetItem; bound on the
    instance, the payload says so, and no separate lock read follows."""
    world = _idc_world()
    request = _idc_request(world)
    assert world.grant(request).result is Result.GRANTED
    [schedule] = world.schedules.schedules.values()
    assert schedule.payload["binding"] == "instance"
    reads: list[tuple[str, str, int]] = []
    real = world.ledger.grant_and_holder

    def spied(grant_id: str, scope: str, slot: int) -> Any:
        reads.append((grant_id, scope, slot))
        return real(grant_id, scope, slot)

    world.ledger.grant_and_holder = spied  # type: ignore[method-assign]
    world.clock.advance(timedelta(minutes=10))
    assert world.engine.on_revoke_schedule(schedule.payload).result is Result.REVOKED
    # Record and the instance's lock in one BatchGetItem (not the role's lock, which no grant holds).
    assert reads == [(request.grant_id, binding.instance_scope(ACCOUNT, INSTANCE), 1)]
    assert world.inventory.tags_of(INSTANCE) == {}


def test_an_instance_gone_before_its_tag_is_denied_and_its_slot_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EC2 answers InvalidInstanceID.NotFound to CreateTags (terminated between the read and the tag):
    a denial; the grant's undo frees the instance's slot lock, not the role's."""
    world = _idc_world()
    request = _idc_request(world)

    def gone(instance_id: str, tags: Any) -> None:
        raise InstanceGone(instance_id)

    monkeypatch.setattr(world.inventory, "tag_instance", gone)
    outcome = world.grant(request)
    assert world.codes(outcome) == ["instance_not_found"]
    assert world.ledger.slot_holder(binding.instance_scope(ACCOUNT, INSTANCE), 1) is None
    record = world.ledger.get_grant(request.grant_id)
    assert record is not None
    assert record.status.value == "DENIED"


def test_an_instance_bound_grant_interrupted_before_its_tag_is_resumed_and_a_duplicate_is_not() -> None:
    """The one-transaction grant (issue 16) bound on the instance: a crash after the transaction leaves
    the record ACTIVE and the instance untagged (nothing opens); the redelivery resumes it and tags the
    instance; a further delivery finds the instance's tag and does nothing."""
    world = _idc_world()
    request = _idc_request(world)

    def down(instance_id: str, tags: Any) -> None:
        raise ServiceFailure("Rate exceeded", code="RequestLimitExceeded")

    world.inventory.tag_instance = down  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    assert world.inventory.tags_of(INSTANCE) == {}
    del world.inventory.tag_instance
    world.clock.advance(timedelta(seconds=30))
    assert world.grant(request).result is Result.GRANTED
    assert world.inventory.tags_of(INSTANCE) == {
        "SecurityAllowSessionFor1": _userid(world, "alice@example.com")
    }
    writes = len(world.inventory.writes)
    assert world.grant(request).result is Result.DUPLICATE
    assert len(world.inventory.writes) == writes
