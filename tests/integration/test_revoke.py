"""Revoke: untag only the slot still held by the grant, idempotent under redelivery."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from sessiongate.core.grant import new_record
from sessiongate.core.model import GrantStatus
from sessiongate.errors import TransientError
from tests.support.stack import ACCOUNT, Stack


def _granted(stack: Stack, principal: str = "alice", minutes: int = 10) -> str:
    request = stack.approved(instance_id=stack.instance(), principal=principal, minutes=minutes)
    assert stack.engine().grant(request.to_detail()).result == "granted"
    stack.notifications()
    return request.grant_id


def test_revoke_at_expiry_removes_the_tag_and_records_it(stack: Stack) -> None:
    stack.user("alice", tags={"Team": "ops"})
    grant_id = _granted(stack)
    stack.clock.advance(timedelta(minutes=10, seconds=30))

    outcome = stack.engine().on_revoke_schedule({"grant_id": grant_id, "reason": "expired"})

    assert outcome.result == "revoked"
    assert stack.tags("user", "alice") == {"Team": "ops"}  # foreign tags untouched
    grant = stack.engine().ledger.get_grant(grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.REVOKED
    assert grant.revoke_reason == "expired"
    assert grant.revoked_at == "2026-11-24T09:10:30Z"
    assert stack.engine().ledger.slot_holder(grant.principal_arn, 1) is None
    [note] = stack.notifications()
    assert note["attributes"]["event_type"] == "AccessRevoked"
    assert note["attributes"]["principal_arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"


def test_duplicate_revoke_is_a_no_op(stack: Stack) -> None:
    stack.user("alice")
    grant_id = _granted(stack)
    engine = stack.engine()
    assert engine.revoke(grant_id).result == "revoked"
    stack.notifications()
    stack.calls.clear()

    again = engine.on_revoke_schedule({"grant_id": grant_id, "reason": "expired"})

    assert again.result == "duplicate"
    assert dict(stack.calls) == {"dynamodb:GetItem": 1}
    assert stack.notifications() == []


def test_revoke_never_clears_a_newer_grant_in_the_same_slot(stack: Stack) -> None:
    """Grant A's slot was freed and re-used by grant B; A's late (re)delivered revoke must leave B alone."""
    stack.user("alice")
    engine = stack.engine()
    a = _granted(stack)
    assert engine.revoke(a).result == "revoked"
    b = _granted(stack)
    b_grant = engine.ledger.get_grant(b)
    assert b_grant is not None
    assert b_grant.slot == 1  # B re-used slot 1
    # A is redelivered after B took the slot (at-least-once delivery).
    assert engine.revoke(a).result == "duplicate"
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": b_grant.instance_id}


def test_revoke_of_a_grant_whose_slot_another_grant_holds_leaves_the_tag(stack: Stack) -> None:
    """Even a live record (say, restored from backup) cannot untag a slot it does not hold."""
    stack.user("alice")
    engine = stack.engine()
    a = _granted(stack)
    a_grant = engine.ledger.get_grant(a)
    assert a_grant is not None
    # Simulate the slot lock having moved to grant B (its tag now in the slot).
    engine.ledger.release_slot(a_grant.principal_arn, 1, a)
    b = stack.approved(instance_id=stack.instance(), principal="alice")
    one_slot = stack.engine(replace(stack.settings, slot_count=1))
    assert one_slot.grant(b.to_detail()).detail["slot"] == 1

    outcome = engine.revoke(a)

    assert outcome.result == "revoked"
    assert outcome.detail["untagged"] is False
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": b.instance_id}
    assert engine.ledger.slot_holder(a_grant.principal_arn, 1) == b.grant_id


def test_revoking_one_of_two_grants_keeps_the_other(stack: Stack) -> None:
    stack.user("alice")
    engine = stack.engine()
    a, b = _granted(stack), _granted(stack)
    engine.revoke(a)
    b_grant = engine.ledger.get_grant(b)
    assert b_grant is not None
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance2": b_grant.instance_id}


def test_early_revoke_deletes_the_pending_schedule(stack: Stack) -> None:
    stack.user("alice")
    grant_id = _granted(stack)
    assert list(stack.schedules()) == [f"sg-revoke-{grant_id}"]

    outcome = stack.engine().revoke(grant_id, reason="done", by=f"arn:aws:iam::{ACCOUNT}:user/alice")

    assert outcome.result == "revoked"
    assert stack.schedules() == {}
    assert stack.tags("user", "alice") == {}


def test_revoke_when_the_principal_was_deleted_still_completes(stack: Stack) -> None:
    stack.user("alice")
    grant_id = _granted(stack)
    stack.client("iam").untag_user(UserName="alice", TagKeys=["SecurityAllowSessionInstance"])
    stack.client("iam").delete_user(UserName="alice")
    assert stack.engine().revoke(grant_id).result == "revoked"


def test_revoke_of_a_grant_still_provisioning_is_retried(stack: Stack) -> None:
    stack.user("alice")
    engine = stack.engine()
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    grant = new_record(
        request, f"arn:aws:iam::{ACCOUNT}:user/alice", stack.clock.now(), GrantStatus.PROVISIONING
    )
    engine.ledger.create(grant)
    with pytest.raises(TransientError):
        engine.revoke(request.grant_id)
    stack.clock.advance(timedelta(minutes=6))
    assert engine.revoke(request.grant_id).result == "revoked"


def test_revoke_for_an_unknown_grant_is_ignored(stack: Stack) -> None:
    assert stack.engine().revoke("cm-00000000-0000-0000-0000-000000000000").result == "ignored"


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"grant_id": "x"},
        {"grant_id": "../../etc", "reason": "expired"},
        {"grant_id": 7, "reason": "expired"},
        [],
    ],
)
def test_malformed_revoke_payload_is_rejected(stack: Stack, event: object) -> None:
    assert stack.engine().on_revoke_schedule(event).result == "rejected"
