"""Races and forged fields that must not leak access: duplicate grants, stale slot locks, forged bindings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sessiongate.core.model import GrantStatus
from tests.support.stack import ACCOUNT, Stack

SSO_ROLE = "AWSReservedSSO_Ops_0123456789abcdef"


def test_a_duplicate_that_read_the_record_before_the_slot_claim_takes_no_second_slot(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries of one approval: the second read the record while it had no slot yet."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    first = stack.engine()

    def stall(*_: Any, **__: Any) -> None:
        raise RuntimeError("the first invocation stalls after tagging")

    monkeypatch.setattr(first.schedules, "create_once", stall)
    with pytest.raises(RuntimeError):
        first.grant(request.to_detail())
    claimed = first.ledger.get_grant(request.grant_id)
    assert claimed is not None
    assert claimed.status is GrantStatus.PROVISIONING
    assert claimed.slot == 1

    duplicate = stack.engine()
    stale = replace(claimed, slot=None)
    reads = iter([stale])
    real_get = duplicate.ledger.get_grant
    monkeypatch.setattr(duplicate.ledger, "get_grant", lambda gid: next(reads, None) or real_get(gid))

    outcome = duplicate.grant(request.to_detail())

    assert outcome.result == "granted", outcome
    assert outcome.detail["slot"] == 1
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}
    arn = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert duplicate.ledger.slot_holder(arn, 2) is None
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
