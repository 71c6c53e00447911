"""Reconciler: overdue grants (lost schedules), stuck grants and tag drift are repaired and reported, by
the steady run, the IAM tag event of one principal and the full sweep."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from sessiongate.clock import to_iso
from sessiongate.core.engine import Engine
from sessiongate.core.grant import new_record
from sessiongate.core.model import GrantStatus
from sessiongate.errors import TransientError
from tests.support.stack import ACCOUNT, Stack


@pytest.fixture
def engine(stack: Stack) -> Engine:
    stack.operator_policy()
    return stack.engine()


def _operator(stack: Stack, name: str, **tags: str) -> None:
    stack.user(name, tags=tags or None)
    stack.client("iam").attach_user_policy(UserName=name, PolicyArn=stack.settings.operator_policy_arn)


def _grant(stack: Stack, engine: Engine, principal: str = "alice", minutes: int = 10) -> str:
    request = stack.approved(instance_id=stack.instance(), principal=principal, minutes=minutes)
    assert engine.grant(request.to_detail()).result == "granted"
    return request.grant_id


def _repairs(outcome: object) -> dict[str, list[str]]:
    return outcome.detail["repairs"]  # type: ignore[attr-defined,no-any-return]


def test_nothing_to_repair_sends_nothing(stack: Stack, engine: Engine) -> None:
    _operator(stack, "alice")
    _grant(stack, engine)
    stack.notifications()
    outcome = engine.reconcile()
    assert outcome.result == "reconciled"
    assert all(not v for v in _repairs(outcome).values())
    assert stack.notifications() == []


def test_overdue_grant_whose_schedule_was_lost_is_revoked(stack: Stack, engine: Engine) -> None:
    _operator(stack, "alice")
    grant_id = _grant(stack, engine)
    engine.schedules.delete(f"sg-revoke-{grant_id}")
    stack.clock.advance(timedelta(minutes=12))
    stack.notifications()

    outcome = engine.reconcile()

    assert _repairs(outcome)["revoked"] == [grant_id]
    assert stack.tags("user", "alice") == {}
    grant = engine.ledger.get_grant(grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.REVOKED
    assert grant.revoked_by == "reconciler"
    types = [n["attributes"]["event_type"] for n in stack.notifications()]
    # The repair report is published by the run, the revocation from the ledger's stream: no set order.
    assert sorted(types) == ["AccessRevoked", "ReconcilerRepaired"]


def test_grant_just_past_expiry_is_left_to_its_schedule(stack: Stack, engine: Engine) -> None:
    _operator(stack, "alice")
    grant_id = _grant(stack, engine)
    stack.clock.advance(timedelta(minutes=10, seconds=30))
    assert _repairs(engine.reconcile())["revoked"] == []
    assert engine.ledger.get_grant(grant_id).status is GrantStatus.ACTIVE  # type: ignore[union-attr]


def test_lost_schedule_of_a_live_grant_is_repaired_by_revoking_it_when_overdue(
    stack: Stack, engine: Engine
) -> None:
    """Issue 16: the steady run reads no schedule. A schedule lost while its grant is live is not
    re-created; the grant shows up as overdue at expiry + tolerance and is revoked then."""
    _operator(stack, "alice")
    grant_id = _grant(stack, engine)
    engine.schedules.delete(f"sg-revoke-{grant_id}")
    assert all(not v for v in _repairs(engine.reconcile()).values())
    assert f"sg-revoke-{grant_id}" not in stack.schedules()
    stack.clock.advance(timedelta(minutes=10, seconds=91))
    assert _repairs(engine.reconcile())["revoked"] == [grant_id]
    assert stack.tags("user", "alice") == {}


def test_stuck_provisioning_grant_is_undone_and_denied(stack: Stack, engine: Engine) -> None:
    """A record as the previous release left it when its grant invocation died after tagging
    (PROVISIONING, slot claimed, tag on, no schedule): a deployed table may hold one."""
    _operator(stack, "alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    record = new_record(
        request, f"arn:aws:iam::{ACCOUNT}:user/alice", stack.clock.now(), GrantStatus.PROVISIONING
    )
    assert engine.ledger.create(record)
    assert engine.ledger.lock_free_slot(record.principal_arn, 1, request.grant_id)
    stack.client("dynamodb").update_item(
        TableName=stack.settings.table_name,
        Key={"pk": {"S": f"GRANT#{request.grant_id}"}},
        UpdateExpression="SET slot = :one, expires_at = :exp",
        ExpressionAttributeValues={":one": {"N": "1"}, ":exp": {"S": "2026-11-24T09:10:00Z"}},
    )
    stack.client("iam").tag_user(
        UserName="alice", Tags=[{"Key": "SecurityAllowSessionInstance", "Value": request.instance_id}]
    )
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}

    assert _repairs(engine.sweep())["abandoned"] == []  # still within the grace period
    stack.clock.advance(timedelta(minutes=6))
    # It claimed its slot (the index holds it at its expiry): the daily sweep, which reads the grant of
    # every slot lock, undoes it; the steady run would at expiry + tolerance.
    outcome = engine.sweep()

    assert _repairs(outcome)["abandoned"] == [request.grant_id]
    assert stack.tags("user", "alice") == {}
    grant = engine.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED
    assert grant.denials[0]["code"] == "provisioning_timeout"
    assert engine.ledger.slot_holder(grant.principal_arn, 1) is None
    # A late redelivery of the same approval does not bring it back.
    assert engine.grant(request.to_detail()).result == "duplicate"


def test_hand_made_slot_tags_are_removed_and_others_kept(stack: Stack, engine: Engine) -> None:
    _operator(stack, "alice")
    _operator(stack, "eve", Team="red", SecurityAllowSessionInstance3="i-0123456789abcdef0")
    grant_id = _grant(stack, engine)
    stack.client("iam").tag_user(
        UserName="alice", Tags=[{"Key": "SecurityAllowSessionInstance2", "Value": "i-0123456789abcdef0"}]
    )

    outcome = engine.sweep()

    assert sorted(_repairs(outcome)["drift_removed"]) == [
        f"arn:aws:iam::{ACCOUNT}:user/alice#2",
        f"arn:aws:iam::{ACCOUNT}:user/eve#3",
    ]
    grant = engine.ledger.get_grant(grant_id)
    assert grant is not None
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": grant.instance_id}
    assert stack.tags("user", "eve") == {"Team": "red"}
    # The repair lock is released: the slot is free for grants again.
    assert engine.ledger.slot_holder(f"arn:aws:iam::{ACCOUNT}:user/eve", 3) is None


def test_drift_repair_leaves_a_slot_that_a_grant_holds(stack: Stack, engine: Engine) -> None:
    """A grant that has opened (record ACTIVE + slot lock) and tagged, before anything else, is not drift."""
    _operator(stack, "alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    grant = replace(
        new_record(request, f"arn:aws:iam::{ACCOUNT}:user/alice", stack.clock.now(), GrantStatus.ACTIVE),
        slot=1,
        expires_at="2026-11-24T09:10:00Z",
        activated_at=to_iso(stack.clock.now()),
    )
    assert engine.ledger.open(grant).created
    stack.client("iam").tag_user(
        UserName="alice", Tags=[{"Key": "SecurityAllowSessionInstance", "Value": request.instance_id}]
    )

    event = _tag_event("alice", "SecurityAllowSessionInstance")
    for outcome in (engine.sweep(), engine.on_tag_event(event)):
        assert _repairs(outcome)["drift_removed"] == []
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}


def _tag_event(user: str, key: str) -> dict[str, object]:
    return {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": ACCOUNT,
        "detail": {
            "eventSource": "iam.amazonaws.com",
            "eventName": "TagUser",
            "recipientAccountId": ACCOUNT,
            "requestParameters": {"userName": user, "tags": [{"key": key, "value": "i-0123456789abcdef0"}]},
        },
    }


def test_a_late_tag_of_a_revoked_grant_over_the_next_grant_of_the_slot_is_removed(
    stack: Stack, engine: Engine
) -> None:
    """Grant 1 revoked, grant 2 (another instance) takes the same slot, then grant 1's TagUser lands late
    (IAM executed it after the client gave up): the slot lock names a live grant but the tag names the
    revoked grant's instance. The tag event removes it (the reconciler only untags), reported; grant 2
    keeps its lock and is still revoked cleanly."""
    _operator(stack, "alice")
    first = _grant(stack, engine)
    revoked_instance = engine.ledger.get_grant(first).instance_id  # type: ignore[union-attr]
    assert engine.revoke(first, reason="done", by="alice").result == "revoked"
    stack.clock.advance(timedelta(minutes=1))
    second = _grant(stack, engine)
    held = engine.ledger.get_grant(second)
    assert held is not None
    assert held.slot == 1
    assert held.instance_id != revoked_instance
    stack.client("iam").tag_user(
        UserName="alice", Tags=[{"Key": "SecurityAllowSessionInstance", "Value": revoked_instance}]
    )
    stack.clock.advance(timedelta(seconds=40))
    stack.notifications()

    outcome = engine.on_tag_event(_tag_event("alice", "SecurityAllowSessionInstance"))

    assert _repairs(outcome)["drift_removed"] == [f"arn:aws:iam::{ACCOUNT}:user/alice#1 (wrong value)"]
    assert stack.tags("user", "alice") == {}
    assert engine.ledger.slot_holder(f"arn:aws:iam::{ACCOUNT}:user/alice", 1) == second
    types = [n["attributes"]["event_type"] for n in stack.notifications()]
    assert types == ["ReconcilerRepaired"]
    assert engine.revoke(second, reason="done", by="alice").result == "revoked"
    assert engine.ledger.slot_holder(f"arn:aws:iam::{ACCOUNT}:user/alice", 1) is None


def test_a_tag_event_repairs_just_that_principal(stack: Stack, engine: Engine) -> None:
    stack.user("eve", tags={"SecurityAllowSessionInstance3": "i-0123456789abcdef0", "Team": "red"})
    stack.user("mallory", tags={"SecurityAllowSessionInstance": "i-0123456789abcdef0"})

    outcome = engine.on_tag_event(_tag_event("eve", "SecurityAllowSessionInstance3"))

    assert _repairs(outcome)["drift_removed"] == [f"arn:aws:iam::{ACCOUNT}:user/eve#3"]
    assert stack.tags("user", "eve") == {"Team": "red"}
    assert stack.tags("user", "mallory") == {
        "SecurityAllowSessionInstance": "i-0123456789abcdef0"
    }  # the sweep's


def test_one_failing_repair_does_not_stop_the_others(stack: Stack, engine: Engine) -> None:
    _operator(stack, "alice")
    _operator(stack, "bob")
    a, b = _grant(stack, engine, "alice"), _grant(stack, engine, "bob")
    for grant_id in (a, b):
        engine.schedules.delete(f"sg-revoke-{grant_id}")
    stack.clock.advance(timedelta(minutes=15))
    real_revoke = engine.revoke

    def flaky(grant_id: object, **kwargs: object) -> object:
        if grant_id == a:
            raise TransientError("IAM unavailable")
        return real_revoke(grant_id, **kwargs)  # type: ignore[arg-type]

    engine.revoke = flaky  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="1 item"):
        engine.reconcile()
    assert engine.ledger.get_grant(b).status is GrantStatus.REVOKED  # type: ignore[union-attr]
    assert engine.ledger.get_grant(a).status is GrantStatus.ACTIVE  # type: ignore[union-attr]
    engine.revoke = real_revoke  # type: ignore[method-assign]
    assert _repairs(engine.reconcile())["revoked"] == [a]
