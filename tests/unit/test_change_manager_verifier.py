"""The grant's origin check: at grant time the change request is re-read and must say what the event says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sessiongate.core.model import AccessApproved
from sessiongate.errors import TransientError
from tests.unit.fakes.change_manager import (
    EXECUTION_ID,
    MALLORY,
    FrontDoor,
    awaiting,
    change_request,
    load_event,
)


def _approved() -> AccessApproved:
    return AccessApproved.from_detail(load_event("access_approved.json")["detail"])


def test_the_change_request_that_says_what_the_event_says_passes() -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    assert door.verifier().verify(_approved()) == []
    assert door.changes.calls == ["get"]


def test_a_change_request_that_does_not_exist_is_not_found() -> None:
    [denial] = FrontDoor().verifier().verify(_approved())
    assert denial.code == "origin_not_found"
    assert EXECUTION_ID in denial.message


def test_a_change_request_not_yet_shown_approved_is_transient() -> None:
    """The adapter saw the approval; this later read does not yet (eventual consistency): retried."""
    door = FrontDoor()
    record = door.changes.add(change_request())
    door.changes.lag(EXECUTION_ID, awaiting(record), 30)
    with pytest.raises(TransientError, match="not shown as approved yet"):
        door.verifier().verify(_approved())


@pytest.mark.parametrize(
    "change",
    [
        {"instance_id": "i-0a1b2c3d4e5f60719"},
        {"principal_name": "mallory"},
        {"duration_minutes": 60},
        {"approver_arns": (MALLORY,)},
        {"requester_arn": MALLORY},
        {"account": "210987654321"},
    ],
)
def test_an_event_that_disagrees_with_the_change_request_is_a_mismatch(change: dict[str, object]) -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    [denial] = door.verifier().verify(replace(_approved(), **change))  # type: ignore[arg-type]
    assert denial.code == "origin_mismatch"
    assert next(iter(change)) in denial.message


def test_a_change_request_that_cannot_be_granted_any_more_is_denied_with_its_reasons() -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Cancelled"))
    assert [d.code for d in door.verifier().verify(_approved())] == ["change_request_not_approved"]


def test_an_approver_who_left_the_group_since_the_adapter_ran_no_longer_counts() -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    door.directory.groups["SessionGateApprovers"].discard("bob")
    assert [d.code for d in door.verifier().verify(_approved())] == ["approver_not_configured"]
