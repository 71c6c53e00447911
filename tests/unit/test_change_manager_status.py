"""Where a change request stands: every status SSM can report is classified, and awaiting approval means
SSM has not shown a decision yet."""

from __future__ import annotations

import botocore.session
import pytest

from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.status import (
    APPROVED_STATES,
    AWAITING_STATES,
    AWAITING_STEP_STATES,
    FINAL_STATES,
    awaiting_approval,
    undecided,
)
from tests.unit.fakes.change_manager import OPS_ITEM, awaiting, change_request

# botocore's AutomationExecutionStatus: the change request's status and its steps' StepStatus.
STATUSES = frozenset(
    botocore.session.get_session().get_service_model("ssm").shape_for("AutomationExecutionStatus").enum
)


def test_every_status_is_approved_final_or_still_open() -> None:
    """A status AWS adds later fails here: decide where it belongs before it reaches a grant."""
    assert APPROVED_STATES | FINAL_STATES | AWAITING_STATES | AWAITING_STEP_STATES <= STATUSES
    assert not APPROVED_STATES & FINAL_STATES
    still_open = STATUSES - APPROVED_STATES - FINAL_STATES
    assert still_open == {"PendingApproval", "PendingChangeCalendarOverride"}


def test_a_record_before_approval_is_awaiting_and_an_approved_one_is_not() -> None:
    assert awaiting_approval(awaiting(change_request()))
    assert not awaiting_approval(change_request())


def test_a_waiting_approval_step_is_awaiting_unless_it_was_rejected() -> None:
    record = change_request(status="InProgress")
    record["StepExecutions"][0]["StepStatus"] = "Waiting"
    assert awaiting_approval(record)
    record["StepExecutions"][0]["Outputs"]["ApprovalStatus"] = ["Rejected"]
    assert not awaiting_approval(record)


def test_other_steps_do_not_count() -> None:
    record = change_request(status="InProgress")
    record["StepExecutions"][0].update(Action="aws:executeScript", StepStatus="InProgress")
    assert not awaiting_approval(record)


@pytest.mark.parametrize("event_status", ["Approved", "Scheduled", "RunbookInProgress", "InProgress"])
@pytest.mark.parametrize("status", ["PendingApproval", "PendingChangeCalendarOverride"])
def test_a_request_that_may_still_be_approved_is_undecided(status: str, event_status: str) -> None:
    ref = ChangeRequestRef(OPS_ITEM, None, event_status, None, None)
    assert undecided(ref, change_request(status=status))


@pytest.mark.parametrize("status", ["Rejected", "Cancelled", "Failed", "TimedOut", "Exited"])
def test_a_final_status_is_decided_only_when_the_event_claims_an_approval(status: str) -> None:
    """InProgress after a rejection claims nothing (events come in any order): nothing to record."""
    record = change_request(status=status)
    assert undecided(ChangeRequestRef(OPS_ITEM, None, "InProgress", None, None), record)
    assert not undecided(ChangeRequestRef(OPS_ITEM, None, "Approved", None, None), record)


@pytest.mark.parametrize("status", ["Approved", "Scheduled", "RunbookInProgress", "Success", "InProgress"])
def test_an_approved_status_is_decided_whatever_the_event(status: str) -> None:
    for event_status in ("Approved", "InProgress"):
        assert not undecided(
            ChangeRequestRef(OPS_ITEM, None, event_status, None, None), change_request(status=status)
        )
