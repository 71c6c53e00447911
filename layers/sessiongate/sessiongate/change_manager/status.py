"""Where a change request stands in SSM: approved, still awaiting approval, or past any decision.

Statuses are botocore's ``AutomationExecutionStatus`` (the change request) and ``StepStatus`` (its
``aws:approve`` steps) as ``GetAutomationExecution`` returns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiongate.change_manager.events import ChangeRequestRef

# Change request (automation) statuses reached only after every approval was given.
APPROVED_STATES = frozenset(
    {
        "Approved",
        "Scheduled",
        "Pending",
        "Waiting",
        "InProgress",
        "RunbookInProgress",
        "Success",
        "CompletedWithSuccess",
        "ChangeCalendarOverrideApproved",
    }
)
# Change request statuses after which no approval can come any more. Any other status that is not
# approved (PendingApproval, or PendingChangeCalendarOverride: approved, but the change calendar is
# closed until someone approves an override) may still become approved: it decides nothing yet.
FINAL_STATES = frozenset(
    {
        "Rejected",
        "Cancelled",
        "Cancelling",
        "Failed",
        "TimedOut",
        "ChangeCalendarOverrideRejected",
        "CompletedWithFailure",
        "Exited",
    }
)
# SSM records of a change request still waiting for its approvals (AutomationExecutionStatus, StepStatus).
AWAITING_STATES = frozenset({"PendingApproval"})
AWAITING_STEP_STATES = frozenset({"Pending", "InProgress", "Waiting"})


def awaiting_approval(execution: Mapping[str, Any]) -> bool:
    """SSM still shows the change request waiting for approval (no decision against it yet).

    After an event that implies approval this is SSM lagging behind its own event (eventual
    consistency): transient, re-read later. A rejection or any other end state is not "awaiting".
    """
    if execution.get("AutomationExecutionStatus") in AWAITING_STATES:
        return True
    steps = [s for s in execution.get("StepExecutions") or [] if s.get("Action") == "aws:approve"]
    return any(
        s.get("StepStatus") in AWAITING_STEP_STATES
        and (s.get("Outputs") or {}).get("ApprovalStatus") != ["Rejected"]
        for s in steps
    )


def undecided(ref: ChangeRequestRef, execution: Mapping[str, Any]) -> bool:
    """Nothing to grant or deny yet: SSM does not show the request approved, and either it may still
    be (a pending change calendar override, say) or this event does not claim it was (InProgress
    after a rejection, events arriving in any order). A later status event decides."""
    status = execution.get("AutomationExecutionStatus")
    if status in APPROVED_STATES:
        return False
    return status not in FINAL_STATES or not ref.implies_approval
