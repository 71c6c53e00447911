"""Values and records shared by both test tiers (no moto, no boto3): the test stack's names, its
settings, and change requests in the shape SSM returns them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.clock import to_iso
from sessiongate.core.model import AccessApproved
from sessiongate.settings import Settings

ACCOUNT = "123456789012"
REGION = "us-east-1"
START = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
STACK = "sessiongate-test"
TEMPLATE_NAME = "AllowSsmSessionStartTemplate"
# The stack's change request approver (template.yaml's defaults: ApproverType IamGroup).
APPROVER_GROUP = "SessionGateApprovers"
BREAK_GLASS_APPROVER = f"arn:aws:iam::{ACCOUNT}:role/sessiongate/{STACK}-RequestApiFunctionRole"
# Settings of the native front door (request API); a stack has them after Stack.enable_native().
# The KMS HMAC keys are addressed by alias (moto picks key ids); build_stack creates them.
POLICY_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/{STACK}-approval-policy"
APPROVAL_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/{STACK}-approval"
NATIVE_SETTINGS: dict[str, Any] = {
    "requests_table": f"{STACK}-requests",
    "approval_policy_parameter": f"/{STACK}/approval-policy",
    "break_glass_approver_arn": BREAK_GLASS_APPROVER,
    "approval_policy_key_id": POLICY_KEY,
    "approval_key_id": APPROVAL_KEY,
}


def change_request(
    request: AccessApproved,
    *,
    status: str = "Success",
    approval: str = "Approved",
    scheduled: datetime | None = None,
    decisions: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A GetAutomationExecution record of a change request that says what ``request`` says."""
    approved_at = request.approved_at
    if decisions is None:
        decisions = [
            {
                "Approver": arn,
                "Decision": "Approve",
                "ApprovalDecisionTime": to_iso(approved_at),
                "Comment": "ok",
            }
            for arn in request.approver_arns
        ]
    execution: dict[str, Any] = {
        "AutomationExecutionId": request.grant_id.removeprefix("cm-"),
        "DocumentName": TEMPLATE_NAME,
        "DocumentVersion": "1",
        "AutomationExecutionStatus": status,
        "AutomationSubtype": "ChangeRequest",
        "ExecutedBy": request.requester_arn,
        "OpsItemId": request.origin_ref,
        "ChangeRequestName": request.reason or "shell for debugging",
        "ExecutionStartTime": approved_at - timedelta(minutes=5),
        "StepExecutions": [
            {
                "StepName": "ApproveSessionAccess",
                "Action": "aws:approve",
                "StepStatus": "Success",
                "ExecutionStartTime": approved_at - timedelta(minutes=5),
                "ExecutionEndTime": approved_at,
                "Outputs": {
                    "ApprovalStatus": [approval],
                    "ApproverDecisions": [json.dumps(d) for d in decisions],
                },
            }
        ],
        "Runbooks": [
            {
                "DocumentName": "AllowSsmSessionStartRunbook",
                "DocumentVersion": "$DEFAULT",
                "Parameters": {
                    "InstanceId": [request.instance_id],
                    "PrincipalType": [request.principal_type.value.capitalize()],
                    "PrincipalName": [request.principal_name],
                    "ValidityMinutes": [str(request.duration_minutes)],
                },
            }
        ],
    }
    if scheduled is not None:
        execution["ScheduledTime"] = scheduled
    return execution


def _change_template(approver: str, kind: str, level: int) -> dict[str, Any]:
    """AllowSsmSessionStartTemplate as its default version says (the stack's, or an SSM admin's
    rewrite through UpdateDocument + UpdateDocumentDefaultVersion, reviewed with UpdateDocumentMetadata)."""
    return {
        "schemaVersion": "0.3",
        "executableRunBooks": [{"name": "AllowSsmSessionStartRunbook", "version": "$DEFAULT"}],
        "mainSteps": [
            {
                "name": "ApproveSessionAccess",
                "action": "aws:approve",
                "inputs": {
                    "MinRequiredApprovals": level,
                    "EnhancedApprovals": {
                        "Approvers": [{"approver": approver, "type": kind, "minRequiredApprovals": 0}]
                    },
                },
            }
        ],
    }


def settings(**overrides: Any) -> Settings:
    base = Settings(
        account_id=ACCOUNT,
        table_name=f"{STACK}-grants",
        topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:change-manager-ssm-approval",
        event_bus_name=f"{STACK}-bus",
        schedule_group=STACK,
        revoke_target_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-revoke-access",
        adapter_target_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-adapt-change-request",
        scheduler_role_arn=f"arn:aws:iam::{ACCOUNT}:role/sessiongate/{STACK}-scheduler",
        schedule_dlq_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-schedule-dlq",
        excluded_principals=("Admin*", "*Administrator*", "OrganizationAccountAccessRole"),
        instance_denied_tag=("SessionGate", "deny"),
        approver_name=APPROVER_GROUP,
        approver_type="IamGroup",
    )
    return Settings(**{**base.__dict__, **overrides})
