"""Who approved a change request, checked against the stack's approver and MinRequiredApprovals.

The approvals are read from the change request's ``aws:approve`` steps (``ApproverDecisions``); the
change template's own approver list is not trusted (an SSM admin can rewrite it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sessiongate.core.identity import Identity, is_idc_role, may_be_same, parse_identity
from sessiongate.core.model import Denial
from sessiongate.settings import Settings

# The (lower-case) names of the IAM users in an IAM group now.
GroupMembers = Callable[[str], Collection[str]]


@dataclass(frozen=True)
class Approvals:
    """What the ``aws:approve`` steps recorded."""

    statuses: list[str]  # one per step: its ApprovalStatus (or StepStatus when it has none)
    approvers: list[str]  # the ARNs that approved, each once, in order
    approved_at: datetime | None  # when the last approval step ended


def recorded_approvals(steps: Sequence[Mapping[str, Any]]) -> Approvals:
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
        approvers += [a for a in _approvers(outputs.get("ApproverDecisions") or []) if a not in approvers]
        end = step.get("ExecutionEndTime")
        if isinstance(end, datetime) and (approved_at is None or end > approved_at):
            approved_at = end
    return Approvals(statuses, approvers, approved_at)


def _approvers(decisions: Sequence[object]) -> list[str]:
    """The ARNs of the ``Approve`` decisions of one step, each once, in order.

    An approver is known by ARN only: SSM's automation records carry no sts:SourceIdentity (no such
    member anywhere in botocore's SSM service model), so :func:`may_be_same` compares ARNs.
    """
    approvers: list[str] = []
    for raw in decisions:
        for decision in _decisions(raw):
            approver = decision.get("Approver")
            if decision.get("Decision") != "Approve" or not isinstance(approver, str):
                continue
            if approver not in approvers:
                approvers.append(approver)
    return approvers


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


def approver_denials(
    approvers: Sequence[str], settings: Settings, group_members: GroupMembers | None
) -> list[Denial]:
    """The approvals SSM recorded came from the stack's approvers, at least MinRequiredApprovals people.

    The change template says who may approve, but anyone with ``ssm:UpdateDocument`` (an SSM admin)
    can rewrite it, and ``ssm:UpdateDocumentMetadata`` passes its review: so the stack's own settings
    (ApproverName, ApproverType, MinRequiredApprovals), not the template, decide. Each person counts
    once (:func:`may_be_same`: an approver who may be the same person as one already counted adds
    nothing), which may count fewer people than there are, never more.
    """
    unverifiable = _unverifiable(settings, group_members)
    if unverifiable is not None:
        return [unverifiable]
    members = (
        group_members(settings.approver_name)
        if group_members is not None and settings.approver_type == "IamGroup"
        else None
    )
    counted, strangers = _count_people(approvers, settings, members)
    if strangers:
        return [
            Denial(
                "approver_not_configured",
                f"approved by {', '.join(a[:160] for a in strangers[:3])}, not by the configured "
                f"approver {settings.approver_type} {settings.approver_name}",
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


def _unverifiable(settings: Settings, group_members: GroupMembers | None) -> Denial | None:
    """Why no approval can be checked against the stack's approver setting, if none can."""
    kind, name = settings.approver_type, settings.approver_name
    if not kind or not name:
        return Denial("approvers_unverifiable", "SessionGate has no configured change request approver")
    if kind == "SSOGroup":
        # IAM Identity Center group membership is not visible in IAM, and an approver's record (an
        # assumed-role ARN) names no group: SessionGate cannot tell a member from anyone else.
        return Denial(
            "approvers_unverifiable",
            "approvals by an SSOGroup cannot be verified: use an IamGroup, IamRole, IamUser or SSOUser",
        )
    if kind == "IamGroup" and group_members is None:
        return Denial("approvers_unverifiable", f"cannot read the members of IAM group {name!r}")
    return None


def _count_people(
    approvers: Sequence[str], settings: Settings, members: Collection[str] | None
) -> tuple[list[Identity], list[str]]:
    """The configured approvers, each person once; and the ARNs that are not configured approvers."""
    counted: list[Identity] = []
    strangers: list[str] = []
    for arn in approvers:
        identity = parse_identity(arn)
        if identity is None or not _is_configured_approver(identity, settings, members):
            strangers.append(arn)
        elif not any(may_be_same(identity, other) for other in counted):
            counted.append(identity)
    return counted, strangers


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
