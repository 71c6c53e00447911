"""A change request as SSM records it -> one :class:`AccessApproved`, or the reasons it cannot be granted.

Pure: the record (``GetAutomationExecution``) and the trigger's pointer in, a decision out. Status,
requester, approvers and parameters all come from the SSM record; the trigger only has to agree with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sessiongate.change_manager.approvals import Approvals, GroupMembers, approver_denials, recorded_approvals
from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.runbook import runbook_parameters
from sessiongate.change_manager.status import APPROVED_STATES
from sessiongate.core.identity import parse_identity, same_principal
from sessiongate.core.model import AccessApproved, Denial, Origin
from sessiongate.settings import Settings
from sessiongate.text import forbidden_characters

EXECUTION_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REASON_LIMIT = 512


def interpret(
    ref: ChangeRequestRef,
    execution: Mapping[str, Any],
    settings: Settings,
    *,
    account: str,
    now: datetime,
    group_members: GroupMembers | None = None,
) -> AccessApproved | list[Denial]:
    """Build the normalized request from the SSM record, or say why it cannot be granted.
    ``group_members``: needed when the stack's approver is an IamGroup (without it: unverifiable)."""
    approvals = recorded_approvals(execution.get("StepExecutions") or [])
    requester, requester_denials = _requester(ref, execution)
    params = runbook_parameters(execution.get("Runbooks") or [], settings)
    reason = str(execution.get("ChangeRequestName") or "")[:REASON_LIMIT]
    denials = [
        *_record_denials(ref, execution, settings),
        *_approval_denials(approvals, settings, group_members),
        *requester_denials,
        *_execution_id_denials(ref, execution),
        *(params if isinstance(params, list) else []),  # the runbook's parameters are unusable
        *_reason_denials(reason),
    ]
    if isinstance(params, list) or denials:
        return denials
    return AccessApproved(
        grant_id=f"cm-{execution['AutomationExecutionId']}",
        origin=Origin.CHANGE_MANAGER,
        origin_ref=ref.ops_item_id,
        account=params.account or account,
        instance_id=params.instance_id,
        principal_type=params.principal_type,
        principal_name=params.principal_name,
        requester_arn=requester,
        approver_arns=tuple(approvals.approvers),
        duration_minutes=params.duration_minutes,
        not_before=_start(execution, approvals, now),
        approved_at=approvals.approved_at or now,
        reason=reason,
    )


def _start(execution: Mapping[str, Any], approvals: Approvals, now: datetime) -> datetime:
    """The later of the change's ScheduledTime and the last approval (``now`` if SSM shows neither)."""
    starts = [t for t in (execution.get("ScheduledTime"), approvals.approved_at) if isinstance(t, datetime)]
    return max(starts) if starts else now


def _record_denials(ref: ChangeRequestRef, execution: Mapping[str, Any], settings: Settings) -> list[Denial]:
    """The record is an approved change request of SessionGate's template, for the event's OpsItem."""
    denials: list[Denial] = []
    if execution.get("AutomationSubtype") != "ChangeRequest":
        denials.append(Denial("not_a_change_request", "the SSM execution is not a change request"))
    if execution.get("DocumentName") != settings.change_template_name:
        denials.append(
            Denial("unknown_template", f"change template {execution.get('DocumentName')!r} is not ours")
        )
    if execution.get("OpsItemId") != ref.ops_item_id:
        denials.append(Denial("ops_item_mismatch", "the change request belongs to another OpsItem"))
    status = execution.get("AutomationExecutionStatus")
    if status not in APPROVED_STATES:
        denials.append(Denial("change_request_not_approved", f"change request status is {status!r}"))
    return denials


def _approval_denials(
    approvals: Approvals, settings: Settings, group_members: GroupMembers | None
) -> list[Denial]:
    """Every approval step approved, and the approvers are the stack's (see :mod:`.approvals`)."""
    denials: list[Denial] = []
    if not approvals.statuses:
        denials.append(Denial("change_request_not_approved", "the change request has no approval step"))
    elif any(s != "Approved" for s in approvals.statuses):
        denials.append(Denial("change_request_not_approved", f"approval steps are {approvals.statuses}"))
    if not approvals.approvers:
        denials.append(Denial("approvers_unknown", "cannot tell who approved the change request"))
    else:
        denials += approver_denials(approvals.approvers, settings, group_members)
    return denials


def _requester(ref: ChangeRequestRef, execution: Mapping[str, Any]) -> tuple[str, list[Denial]]:
    """Who created the change request (``ExecutedBy``), the same principal as the event says if it does."""
    requester = execution.get("ExecutedBy")
    if not isinstance(requester, str) or parse_identity(requester) is None:
        return "", [Denial("requester_unknown", "the change request has no parseable requester")]
    if ref.created_by and not _same_principal(ref.created_by, requester):
        return requester, [Denial("requester_mismatch", "event and SSM disagree about the requester")]
    return requester, []


def _execution_id_denials(ref: ChangeRequestRef, execution: Mapping[str, Any]) -> list[Denial]:
    """The record has a valid execution id (the grant id), the one the trigger names if it names one."""
    execution_id = execution.get("AutomationExecutionId")
    if not isinstance(execution_id, str) or not EXECUTION_ID_RE.fullmatch(execution_id):
        return [Denial("change_request_unknown", "the change request has no valid execution id")]
    if ref.change_request_id and ref.change_request_id != execution_id:
        return [Denial("change_request_mismatch", "event and SSM disagree about the change request id")]
    return []


def _reason_denials(reason: str) -> list[Denial]:
    """The change request's name is the grant's reason, shown in e-mail and chat (see text.py)."""
    refused = forbidden_characters(reason)
    if not refused:
        return []
    return [
        Denial(
            "invalid_reason",
            f"the change request name must be one line of visible text (refused: {', '.join(refused)})",
        )
    ]


def _same_principal(a: str, b: str) -> bool:
    """A consistency check of two AWS records, not separation of duties: the same principal (a role and
    its sessions), never the wider "may be the same person" of :func:`may_be_same`."""
    x, y = parse_identity(a), parse_identity(b)
    return x is not None and y is not None and same_principal(x, y)
