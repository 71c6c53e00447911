"""Races and forged fields that must not leak access: duplicate grants, stale slot locks, forged bindings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.support.stack import ACCOUNT, Stack

SSO_ROLE = "AWSReservedSSO_Ops_0123456789abcdef"


def test_a_duplicate_that_read_the_principal_before_the_slot_claim_takes_no_second_slot(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries of one approval, both past their reads before either wrote: the other delivery
    opens, schedules and tags while this one is about to claim. Its principal read is stale (no tag:
    slot 1 looks free), but the grant's one transaction (record + slot lock, only when no item of the
    grant id exists) is cancelled on the record: it finds the grant there and never tries slot 2."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    first, other = stack.engine(), stack.engine()
    real_open = first.ledger.open
    opened: list[int | None] = []
    raced: list[Any] = []

    def racing_open(record: Any) -> Any:
        if not raced:
            raced.append(other.grant(request.to_detail()))  # the other delivery wins the race
        opened.append(record.slot)
        return real_open(record)

    monkeypatch.setattr(first.ledger, "open", racing_open)
    outcome = first.grant(request.to_detail())

    [won] = raced
    assert (won.result, won.detail["slot"]) == ("granted", 1), won
    # One transaction attempt, for the slot its stale read preferred: cancelled on the record, which
    # the cancellation returned; no other slot was tried.
    assert opened == [1]
    # Its stale read shows no tag: it resumes the grant it found (rebinds, tags the same slot again).
    assert (outcome.result, outcome.detail["slot"]) == ("granted", 1), outcome
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}
    arn = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert first.ledger.slot_holder(arn, 1) == request.grant_id
    assert [first.ledger.slot_holder(arn, slot) for slot in range(2, 6)] == [None] * 4
    assert stack.engine().revoke(request.grant_id).result == "revoked"
    assert stack.tags("user", "alice") == {}


@pytest.fixture
def operator_policy(stack: Stack) -> str:
    return stack.operator_policy()


def test_reconciler_releases_a_lock_left_by_a_grant_that_is_no_longer_live(
    stack: Stack, operator_policy: str
) -> None:
    stack.user("alice")
    stack.client("iam").attach_user_policy(UserName="alice", PolicyArn=operator_policy)
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine = stack.engine()
    assert engine.grant(request.to_detail()).result == "granted"
    assert engine.revoke(request.grant_id, reason="done", by="alice").result == "revoked"
    # An interrupted cleanup left the slot's lock naming the revoked grant, and its tag.
    arn = f"arn:aws:iam::{ACCOUNT}:user/alice"
    stack.client("dynamodb").put_item(
        TableName=stack.settings.table_name,
        Item={"pk": {"S": f"SLOT#{arn}#1"}, "kind": {"S": "slot"}, "grant_id": {"S": request.grant_id}},
    )
    stack.client("iam").tag_user(
        UserName="alice", Tags=[{"Key": "SecurityAllowSessionInstance", "Value": request.instance_id}]
    )

    outcome = engine.sweep()  # the daily sweep reads every slot lock

    assert outcome.detail["repairs"]["drift_removed"] == [f"{arn}#1"]
    assert stack.tags("user", "alice") == {}
    assert engine.ledger.slot_holder(arn, 1) is None
    # The slot serves the next grant again.
    again = stack.approved(instance_id=request.instance_id, principal="alice")
    assert engine.grant(again.to_detail()).detail["slot"] == 1


def test_a_live_grants_lock_is_left_alone(stack: Stack, operator_policy: str) -> None:
    stack.user("alice")
    stack.client("iam").attach_user_policy(UserName="alice", PolicyArn=operator_policy)
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine = stack.engine()
    assert engine.grant(request.to_detail()).result == "granted"
    for outcome in (engine.reconcile(), engine.sweep()):
        assert all(not items for items in outcome.detail["repairs"].values())
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}


@pytest.mark.parametrize(
    ("binding", "code"), [(False, "shared_role_refused"), (True, "shared_role_unbindable")]
)
def test_a_session_binding_in_the_event_is_never_believed(stack: Stack, binding: bool, code: str) -> None:
    """A forged ``bound_user_id`` would choose who may use a shared role: SessionGate derives its own."""
    stack.settings = replace(stack.settings, bind_shared_role_sessions=binding)
    stack.role(SSO_ROLE)
    request = stack.approved(
        instance_id=stack.instance(),
        principal=SSO_ROLE,
        kind="role",
        requester=f"arn:aws:iam::{ACCOUNT}:user/bob",
        approvers=(f"arn:aws:iam::{ACCOUNT}:user/carol",),
    )
    detail = {**request.to_detail(), "bound_user_id": "AROAFORGEDROLEID:mallory"}

    outcome = stack.engine().grant(detail)

    assert outcome.result == "denied", outcome
    assert [d["code"] for d in outcome.detail["denials"]] == [code]
    assert stack.tags("role", SSO_ROLE) == {}


def test_a_repair_lock_left_by_a_reconciler_run_that_died_is_released(
    stack: Stack, operator_policy: str
) -> None:
    stack.user("alice", tags={"SecurityAllowSessionInstance2": "i-0123456789abcdef0"})
    stack.client("iam").attach_user_policy(UserName="alice", PolicyArn=operator_policy)
    arn = f"arn:aws:iam::{ACCOUNT}:user/alice"
    engine = stack.engine()
    assert engine.ledger.lock_free_slot(arn, 2, "reconciler-repair")  # the run died holding it

    outcome = engine.sweep()

    assert outcome.detail["repairs"]["drift_removed"] == [f"{arn}#2"]
    assert stack.tags("user", "alice") == {}
    assert engine.ledger.slot_holder(arn, 2) is None
