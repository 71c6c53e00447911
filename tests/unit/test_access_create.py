"""Creating requests on in-memory fakes: input errors, policy rules, duplicates, break-glass quota."""

from __future__ import annotations

import pytest

from sessiongate.access_requests.errors import Conflict, InvalidInput, NotAllowed, NotFound, Unavailable
from sessiongate.observability import logger
from tests.unit.access_world import ALICE, BOB, POLICY, caller, create, new_world
from tests.unit.fakes.access import World, world
from tests.unit.fakes.core import MEMBER


def test_a_request_is_pending_under_the_rule_of_its_instance_and_notified() -> None:
    w = new_world()
    out = w.service.create(caller(ALICE), {"instance_id": w.instance(), "reason": "restart nginx"})["request"]
    assert (out["status"], out["rule"], out["requester_arn"], out["duration_minutes"]) == (
        "PENDING",
        "default",
        ALICE,
        10,
    )
    assert w.notifier.types == ["AccessRequested"]
    assert w.bus.emitted == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"instance_id": "i-nope", "reason": "x"}, "invalid_instance_id"),
        ({"instance_id": "i-0123456789abcdef0"}, "missing_reason"),
        ({"instance_id": "i-0123456789abcdef0", "reason": "x", "requester_arn": BOB}, "identity_in_body"),
        ({"instance_id": "i-0123456789abcdef0", "reason": "x", "duration_minutes": 0}, "invalid_duration"),
        ({"instance_id": "i-0123456789abcdef0", "reason": "x", "colour": "red"}, "unknown_field"),
    ],
)
def test_input_errors_are_invalid_input_and_write_nothing(body: dict[str, object], code: str) -> None:
    w = new_world()
    with pytest.raises(InvalidInput) as err:
        w.service.create(caller(ALICE), body)
    assert err.value.code == code
    assert w.store.writes == []


def test_an_unknown_instance_is_not_found() -> None:
    w = new_world()
    with pytest.raises(NotFound) as err:
        w.service.create(caller(ALICE), {"instance_id": "i-0123456789abcdef0", "reason": "x"})
    assert err.value.code == "instance_not_found"


def test_the_rules_cap_on_duration_is_invalid_input() -> None:
    w = new_world()
    instance = w.instance(Environment="prod")
    with pytest.raises(InvalidInput) as err:
        create(w, instance_id=instance, duration_minutes=45)
    assert "at most 30 minutes" in err.value.message


def test_a_second_open_request_for_the_same_instance_is_a_conflict() -> None:
    w = new_world()
    first = create(w)
    with pytest.raises(Conflict) as err:
        create(w)
    assert err.value.code == "duplicate_request"
    assert first in err.value.message


def test_an_unusable_policy_is_unavailable() -> None:
    w = new_world()
    w.policies.broken = "bad document"
    with pytest.raises(Unavailable) as err:
        create(w)
    assert err.value.code == "policy_unavailable"


def test_a_policy_signed_before_the_one_in_effect_is_refused_and_the_sweep_says_so() -> None:
    """An older signed policy written back into the parameter: the recorded serial never goes down."""
    w = new_world()
    w.policies.serial = 9
    create(w)  # a write path records serial 9
    assert w.store.policy_serial() == 9
    w.policies.serial = 3
    w.service._recorded_policy = ""  # another Lambda instance: it asks the table
    with pytest.raises(Unavailable) as err:
        create(w, instance_id=w.instance("i-0123456789abcdef1"))
    assert err.value.code == "policy_rejected"
    assert w.store.policy_serial() == 9
    w.service.sweep()  # expiring requests needs no policy: the sweep runs and reports the rejection
    assert w.notifier.types[-1] == "PolicyRejected"
    assert w.store.policy_serial() == 9


def test_break_glass_self_approves_signed_and_is_handed_to_the_engine_once_per_quota() -> None:
    w = new_world()
    reason = "production is down, paging did not work"
    out = w.service.create(
        caller(ALICE),
        {"instance_id": w.instance(Environment="prod"), "reason": reason, "break_glass": True},
    )["request"]
    assert (out["status"], out["break_glass"], out["duration_minutes"]) == ("APPROVED", True, 10)
    [event] = w.bus.emitted
    assert event.approver_arns == (w.service.settings.break_glass_approver_arn,)
    assert w.store.get(out["request_id"]).approval_mac  # type: ignore[union-attr]
    assert w.notifier.types == ["BreakGlassUsed"]
    w.instance("i-0123456789abcdef1", Environment="prod")
    with pytest.raises(NotAllowed) as err:
        w.service.create(
            caller(ALICE), {"instance_id": "i-0123456789abcdef1", "reason": reason, "break_glass": True}
        )
    assert err.value.code == "break_glass_quota"


def test_break_glass_needs_a_long_reason() -> None:
    w = new_world()
    with pytest.raises(InvalidInput) as err:
        create(w, instance_id=w.instance(Environment="prod"), break_glass=True, reason="down")
    assert err.value.code == "break_glass_reason_too_short"


def test_a_refused_break_glass_is_logged_with_the_request_it_refused() -> None:
    """The quota refusal's log line (written by the http layer) names the request, instance and person."""

    w = new_world()
    reason = "production is down, paging did not work"
    w.instance("i-0123456789abcdef1", Environment="prod")
    w.service.create(
        caller(ALICE), {"instance_id": w.instance(Environment="prod"), "reason": reason, "break_glass": True}
    )
    with pytest.raises(NotAllowed):
        w.service.create(
            caller(ALICE), {"instance_id": "i-0123456789abcdef1", "reason": reason, "break_glass": True}
        )
    keys = logger().get_current_keys()
    assert keys.get("instance_id") == "i-0123456789abcdef1"
    assert keys.get("principal_arn") == ALICE
    assert len(str(keys.get("request_id", ""))) == 32


def test_an_instance_systems_manager_does_not_manage_is_refused_when_the_request_is_made() -> None:
    """The managed-node check moved from the grant to request time: the requester learns at once."""
    w = new_world()
    w.inventory.add("i-0123456789abcdef0", managed=False)
    with pytest.raises(NotAllowed) as err:
        w.service.create(caller(ALICE), {"instance_id": "i-0123456789abcdef0", "reason": "x"})
    assert err.value.code == "instance_not_managed"
    assert w.store.writes == []


# ------------------------------------------------------------------ the caller's account is the target
def _member_world() -> tuple[World, str, str]:
    """A world with member account MEMBER holding user alice and one instance; alice's ARN there."""
    w = world(POLICY, member_accounts=(MEMBER,))
    directory, inventory, _ = w.core.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add("i-0123456789abcdef0")
    return w, MEMBER, f"arn:aws:iam::{MEMBER}:user/alice"


def test_a_member_account_caller_requests_for_herself_on_an_instance_of_her_account() -> None:
    w, member, alice_there = _member_world()
    body = {"instance_id": "i-0123456789abcdef0", "reason": "replication"}
    out = w.service.create(caller(alice_there), body)["request"]
    assert (out["account"], out["principal_arn"], out["requester_arn"]) == (member, alice_there, alice_there)
    # Naming her own account changes nothing.
    w2, _, _ = _member_world()
    out = w2.service.create(caller(alice_there), {**body, "account": member})["request"]
    assert out["account"] == member


def test_nobody_asks_for_an_instance_of_another_account() -> None:
    """alice of the engine account is not alice of the member account (nor the other way round)."""
    w, member, alice_there = _member_world()
    for who, account in ((ALICE, member), (alice_there, ALICE.split(":")[4])):
        with pytest.raises(NotAllowed) as err:
            w.service.create(
                caller(who), {"instance_id": "i-0123456789abcdef0", "reason": "x", "account": account}
            )
        assert err.value.code == "cross_account"
        assert account in err.value.message
    assert w.store.writes == []


def test_a_caller_from_an_account_sessiongate_does_not_serve_is_refused() -> None:
    w, _, _ = _member_world()
    outsider = "arn:aws:sts::555555555555:assumed-role/AWSReservedSSO_Ops_0123456789abcdef/alice@example.com"
    with pytest.raises(NotAllowed) as err:
        w.service.create(caller(outsider), {"instance_id": "i-0123456789abcdef0", "reason": "x"})
    assert err.value.code == "account_not_allowed"
    assert "555555555555" in err.value.message
    assert w.store.writes == []
