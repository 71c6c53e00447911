"""Change Manager front door: the pure part.

Turns an EventBridge ``Change Request Status Update`` event plus the change request as re-read from SSM
(``GetAutomationExecution``) into one :class:`AccessApproved`, or into denials. The event alone is never
trusted: status, requester, approvers and parameters all come from the SSM record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sessiongate.core.identity import (
    ACCOUNT_RE,
    INSTANCE_ID_RE,
    PRINCIPAL_NAME_RE,
    Identity,
    PrincipalType,
    is_idc_role,
    may_be_same,
    parse_identity,
    same_principal,
)
from sessiongate.core.model import AccessApproved, Denial, Origin
from sessiongate.errors import InvalidInput
from sessiongate.settings import Settings
from sessiongate.text import forbidden_characters

DETAIL_TYPE = "Change Request Status Update"
SOURCE = "aws.ssm"
DUE_SOURCE = "sessiongate.scheduler"
OPS_ITEM_RE = re.compile(r"^oi-[0-9a-f]{12}$")
EXECUTION_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
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
# ``ops-item-status`` values of a ``Change Request Status Update`` event that the adapter acts on (botocore's
# OpsItemStatus enum). Approved, Scheduled and RunbookInProgress come only after every approval was given;
# InProgress is routed too (it is the status of the published sample event, "Amazon EventBridge event
# examples for Systems Manager") but does not by itself say that the request was approved. Events are
# best effort and may come in any order, so each one re-reads SSM and the grant is idempotent: a late,
# repeated or missing Approved event still grants exactly once.
ROUTED_STATUSES = ("Approved", "Scheduled", "RunbookInProgress", "InProgress")
APPROVAL_IMPLIED = frozenset({"Approved", "Scheduled", "RunbookInProgress"})
# Change request statuses after which no approval can come any more (botocore's
# AutomationExecutionStatus enum). Any other status that is not approved (PendingApproval, or
# PendingChangeCalendarOverride: approved, but the change calendar is closed until someone approves an
# override) may still become approved: it decides nothing yet.
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
# Runbook parameters of AllowSsmSessionStartRunbook.
P_INSTANCE, P_TYPE, P_NAME, P_MINUTES = "InstanceId", "PrincipalType", "PrincipalName", "ValidityMinutes"
P_ACCOUNT = "AccountId"  # optional: a member account (Organizations); "this", empty or absent = this one


@dataclass(frozen=True)
class ChangeRequestRef:
    """What an incoming trigger says about a change request: only a pointer to re-read."""

    ops_item_id: str
    change_request_id: str | None
    status: str
    template_name: str | None
    created_by: str | None

    @classmethod
    def from_event(cls, event: object) -> ChangeRequestRef:
        if not isinstance(event, Mapping):
            raise InvalidInput("event must be an object")
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise InvalidInput("event has no detail object", field="detail")
        if event.get("source") == DUE_SOURCE:
            # Our own deferred trigger (a ScheduledTime in the future): only the pointer.
            return cls(_ops_item(detail), _opt(detail, "change-request-id"), "Approved", None, None)
        if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
            raise InvalidInput(
                f"unexpected event {event.get('source')!r}/{event.get('detail-type')!r}", field="detail-type"
            )
        status = detail.get("ops-item-status")
        if not isinstance(status, str):
            raise InvalidInput("ops-item-status is missing", field="ops-item-status")
        template = detail.get("change-template-document-name")
        if not isinstance(template, str) or not template:
            raise InvalidInput(
                "change-template-document-name is missing", field="change-template-document-name"
            )
        return cls(
            ops_item_id=_ops_item(detail),
            change_request_id=_opt(detail, "change-request-id"),
            status=status,
            template_name=template,
            created_by=_opt(detail, "ops-item-created-by"),
        )

    def due_event_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"ops-item-id": self.ops_item_id}
        if self.change_request_id:
            detail["change-request-id"] = self.change_request_id
        return detail


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
    return status not in FINAL_STATES or ref.status not in APPROVAL_IMPLIED


def interpret(
    ref: ChangeRequestRef,
    execution: Mapping[str, Any],
    settings: Settings,
    *,
    account: str,
    now: datetime,
    group_members: Callable[[str], Collection[str]] | None = None,
) -> AccessApproved | list[Denial]:
    """Build the normalized request from the SSM record, or say why it cannot be granted.

    ``group_members(name)``: the (lower-case) names of the IAM users in IAM group ``name`` now, needed
    when the stack's approver is an IamGroup (without it such approvals cannot be verified: denied).
    """
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

    approvals, approvers, approved_at = _approvals(execution.get("StepExecutions") or [])
    if not approvals:
        denials.append(Denial("change_request_not_approved", "the change request has no approval step"))
    elif any(a != "Approved" for a in approvals):
        denials.append(Denial("change_request_not_approved", f"approval steps are {approvals}"))
    if not approvers:
        denials.append(Denial("approvers_unknown", "cannot tell who approved the change request"))
    else:
        denials += approver_denials(approvers, settings, group_members)

    requester = execution.get("ExecutedBy")
    if not isinstance(requester, str) or parse_identity(requester) is None:
        denials.append(Denial("requester_unknown", "the change request has no parseable requester"))
        requester = ""
    elif ref.created_by and not _same_principal(ref.created_by, requester):
        denials.append(Denial("requester_mismatch", "event and SSM disagree about the requester"))

    execution_id = execution.get("AutomationExecutionId")
    if not isinstance(execution_id, str) or not EXECUTION_ID_RE.fullmatch(execution_id):
        denials.append(Denial("change_request_unknown", "the change request has no valid execution id"))
    elif ref.change_request_id and ref.change_request_id != execution_id:
        denials.append(
            Denial("change_request_mismatch", "event and SSM disagree about the change request id")
        )

    params, param_denials = _runbook_parameters(execution.get("Runbooks") or [], settings)
    denials += param_denials
    reason = str(execution.get("ChangeRequestName") or "")[:512]
    if forbidden_characters(reason):
        # The change request's name is the grant's reason, shown in e-mail and chat (see text.py).
        denials.append(
            Denial(
                "invalid_reason",
                "the change request name must be one line of visible text "
                f"(refused: {', '.join(forbidden_characters(reason))})",
            )
        )
    if denials:
        return denials

    scheduled = execution.get("ScheduledTime")
    starts = [t for t in (scheduled, approved_at) if isinstance(t, datetime)]
    not_before = max(starts) if starts else now
    return AccessApproved(
        grant_id=f"cm-{execution_id}",
        origin=Origin.CHANGE_MANAGER,
        origin_ref=ref.ops_item_id,
        account=params.get(P_ACCOUNT) or account,
        instance_id=params[P_INSTANCE],
        principal_type=PrincipalType.parse(params[P_TYPE]),
        principal_name=params[P_NAME],
        requester_arn=requester,
        approver_arns=tuple(approvers),
        duration_minutes=int(params[P_MINUTES]),
        not_before=not_before,
        approved_at=approved_at or now,
        reason=reason,
    )


def approver_denials(
    approvers: Sequence[str],
    settings: Settings,
    group_members: Callable[[str], Collection[str]] | None,
) -> list[Denial]:
    """The approvals SSM recorded came from the stack's approvers, at least MinRequiredApprovals people.

    The change template says who may approve, but anyone with ``ssm:UpdateDocument`` (an SSM admin)
    can rewrite it, and ``ssm:UpdateDocumentMetadata`` passes its review: so the stack's own settings
    (ApproverName, ApproverType, MinRequiredApprovals), not the template, decide. Each person counts
    once (:func:`may_be_same`: an approver who may be the same person as one already counted adds
    nothing), which may count fewer people than there are, never more.
    """
    kind, name = settings.approver_type, settings.approver_name
    if not kind or not name:
        return [Denial("approvers_unverifiable", "SessionGate has no configured change request approver")]
    if kind == "SSOGroup":
        # IAM Identity Center group membership is not visible in IAM, and an approver's record (an
        # assumed-role ARN) names no group: SessionGate cannot tell a member from anyone else.
        return [
            Denial(
                "approvers_unverifiable",
                "approvals by an SSOGroup cannot be verified: use an IamGroup, IamRole, IamUser or SSOUser",
            )
        ]
    members: Collection[str] | None = None
    if kind == "IamGroup":
        if group_members is None:
            return [Denial("approvers_unverifiable", f"cannot read the members of IAM group {name!r}")]
        members = group_members(name)
    counted: list[Identity] = []
    strangers: list[str] = []
    for arn in approvers:
        identity = parse_identity(arn)
        if identity is None or not _is_configured_approver(identity, settings, members):
            strangers.append(arn)
        elif not any(may_be_same(identity, other) for other in counted):
            counted.append(identity)
    if strangers:
        return [
            Denial(
                "approver_not_configured",
                f"approved by {', '.join(a[:160] for a in strangers[:3])}, not by the configured "
                f"approver {kind} {name}",
            )
        ]
    if len(counted) < settings.min_required_approvals:
        return [
            Denial(
                "approvals_insufficient",
                f"{len(counted)} distinct approver(s), {settings.min_required_approvals} required",
            )
        ]
    return []


def _is_configured_approver(identity: Identity, settings: Settings, members: Collection[str] | None) -> bool:
    """``identity`` is (a member of) the stack's approver, in the stack's account and partition.

    IamUser: the user of that name (any path). IamRole: the role or one of its sessions. IamGroup: an
    IAM user who is in the group now. SSOUser: a session of an IAM Identity Center permission-set role
    whose session name is that user (IdC sets it, see :data:`~sessiongate.core.identity.IDC_ROLE_PREFIX`).
    IAM names are not distinguished by case.
    """
    if identity.partition != settings.partition or identity.account != settings.account_id:
        return False
    kind, name = settings.approver_type, settings.approver_name.lower()
    if kind == "IamUser":
        return identity.kind == "user" and identity.name.lower() == name
    if kind == "IamRole":
        return identity.kind == "role" and identity.name.lower() == name
    if kind == "IamGroup":
        return identity.kind == "user" and members is not None and identity.name.lower() in members
    if kind == "SSOUser":
        return (
            identity.kind == "role"
            and identity.session is not None
            and is_idc_role(identity.name)
            and identity.session.lower() == name
        )
    return False


def _same_principal(a: str, b: str) -> bool:
    """A consistency check of two AWS records, not separation of duties: the same principal (a role and
    its sessions), never the wider "may be the same person" of :func:`may_be_same`."""
    x, y = parse_identity(a), parse_identity(b)
    return x is not None and y is not None and same_principal(x, y)


def _approvals(steps: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], datetime | None]:
    """Statuses of the ``aws:approve`` steps, the ARNs that approved, and when the last approval ended."""
    statuses: list[str] = []
    approvers: list[str] = []
    approved_at: datetime | None = None
    for step in steps:
        if step.get("Action") != "aws:approve":
            continue
        outputs = step.get("Outputs") or {}
        status_values = outputs.get("ApprovalStatus") or [step.get("StepStatus", "Unknown")]
        statuses.append(str(status_values[0]))
        # An approver is known by ARN only: SSM's automation records carry no sts:SourceIdentity (no
        # such member anywhere in botocore's SSM service model), so may_be_same compares ARNs.
        for raw in outputs.get("ApproverDecisions") or []:
            for decision in _decisions(raw):
                approver = decision.get("Approver")
                if (
                    decision.get("Decision") == "Approve"
                    and isinstance(approver, str)
                    and approver not in approvers
                ):
                    approvers.append(approver)
        end = step.get("ExecutionEndTime")
        if isinstance(end, datetime) and (approved_at is None or end > approved_at):
            approved_at = end
    return statuses, approvers, approved_at


def _decisions(raw: object) -> list[Mapping[str, Any]]:
    """ApproverDecisions entries arrive as JSON text (an object or a list of objects)."""
    value: object = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return []
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def _runbook_parameters(
    runbooks: Sequence[Mapping[str, Any]], settings: Settings
) -> tuple[dict[str, str], list[Denial]]:
    if len(runbooks) != 1:
        return {}, [Denial("invalid_parameters", f"expected exactly one runbook, found {len(runbooks)}")]
    raw = runbooks[0].get("Parameters") or {}
    params: dict[str, str] = {}
    denials: list[Denial] = []
    for name in (P_INSTANCE, P_TYPE, P_NAME, P_MINUTES):
        values = raw.get(name)
        if values is None and name == P_MINUTES:
            params[name] = str(settings.default_validity_minutes)
            continue
        if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
            denials.append(Denial("invalid_parameters", f"runbook parameter {name} must have one value"))
            continue
        params[name] = values[0].strip()
    target_account = raw.get(P_ACCOUNT)
    if target_account not in (None, [], [""], ["this"]):
        if (
            not isinstance(target_account, list)
            or len(target_account) != 1
            or not ACCOUNT_RE.fullmatch(str(target_account[0]))
        ):
            denials.append(Denial("invalid_parameters", f"{P_ACCOUNT} must be one 12-digit account id"))
        else:
            params[P_ACCOUNT] = str(target_account[0])
    if denials:
        return params, denials
    if not INSTANCE_ID_RE.fullmatch(params[P_INSTANCE]):
        denials.append(
            Denial("invalid_parameters", f"{P_INSTANCE} {params[P_INSTANCE][:40]!r} is not an instance id")
        )
    if params[P_TYPE].lower() not in ("user", "role"):
        denials.append(Denial("invalid_parameters", f"{P_TYPE} must be User or Role"))
    if not PRINCIPAL_NAME_RE.fullmatch(params[P_NAME]):
        denials.append(Denial("invalid_parameters", f"{P_NAME} {params[P_NAME][:64]!r} is not an IAM name"))
    if not params[P_MINUTES].isdigit() or not 1 <= int(params[P_MINUTES]) <= 100_000:
        denials.append(Denial("invalid_parameters", f"{P_MINUTES} must be a positive whole number"))
    return params, denials


def _ops_item(detail: Mapping[str, Any]) -> str:
    value = detail.get("ops-item-id")
    if not isinstance(value, str) or not OPS_ITEM_RE.fullmatch(value):
        raise InvalidInput(f"ops-item-id {str(value)[:40]!r} is not an OpsItem id", field="ops-item-id")
    return value


def _opt(detail: Mapping[str, Any], name: str) -> str | None:
    value = detail.get(name)
    return value if isinstance(value, str) and value else None
