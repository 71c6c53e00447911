"""The smoke run's inputs and its plan: what it creates and calls, printable without AWS (``smoke-plan``)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCOUNT_ENV = "SESSIONGATE_SMOKE_ACCOUNT"
INSTANCE_ENV = "SESSIONGATE_SMOKE_INSTANCE"
OTHER_INSTANCE_ENV = "SESSIONGATE_SMOKE_OTHER_INSTANCE"
STATE_ENV = "SESSIONGATE_SMOKE_STATE"
# Syntactically valid, never the chosen instance: the negative check asks IAM about an instance the
# grant does not name (it need not exist: the simulator evaluates ARNs, not resources).
DEFAULT_OTHER_INSTANCE = "i-00000000000000000"
DEFAULT_STATE = Path(".smoke/state.json")
GRANT_MINUTES = 2
TAG_KEY = "sessiongate-smoke"  # put on everything the run creates that takes tags
BUILD_DIR = ".aws-sam/smoke-build"
_ACCOUNT = re.compile(r"^\d{12}$")
_INSTANCE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")


class InputError(Exception):
    """A missing or wrong input: printed as one line, exit code 2, nothing created."""


@dataclass(frozen=True)
class Inputs:
    account: str
    instance_id: str
    other_instance_id: str
    region: str
    suffix: str
    sam: str
    state_path: Path

    @property
    def stack_name(self) -> str:
        return f"sessiongate-smoke-{self.suffix}"

    @property
    def user_name(self) -> str:
        # Not /sessiongate/ (engine path: never granted) and not matching ExcludedPrincipals' defaults.
        return f"sg-smoke-operator-{self.suffix}"

    @property
    def queue_name(self) -> str:
        return f"sessiongate-smoke-{self.suffix}"

    @property
    def report_path(self) -> Path:
        return self.state_path.parent / f"report-{self.stack_name}.json"


def new_suffix() -> str:
    return secrets.token_hex(4)


def read_inputs(
    env: Mapping[str, str], *, region: str | None, sam: str, suffix: str | None = None, strict: bool = True
) -> Inputs:
    """The run's inputs from the environment; ``strict=False`` (the plan) fills placeholders instead."""

    def need(name: str, pattern: re.Pattern[str], what: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            if strict:
                raise InputError(f"{name} is not set: {what}")
            return f"<{name}>"
        if not pattern.match(value):
            raise InputError(f"{name}={value!r} is not {what}")
        return value

    account = need(ACCOUNT_ENV, _ACCOUNT, "the 12-digit id of the account to deploy in (the caller's)")
    instance = need(INSTANCE_ENV, _INSTANCE, "the id of an existing SSM managed instance (i-...)")
    other = env.get(OTHER_INSTANCE_ENV, "").strip() or DEFAULT_OTHER_INSTANCE
    if not _INSTANCE.match(other):
        raise InputError(f"{OTHER_INSTANCE_ENV}={other!r} is not an instance id (i-...)")
    if other == instance:
        raise InputError(f"{OTHER_INSTANCE_ENV} must differ from {INSTANCE_ENV} (it is the negative check)")
    if not region:
        if strict:
            raise InputError("no AWS region: set AWS_REGION or AWS_DEFAULT_REGION")
        region = "<region>"
    elif not _REGION.match(region):
        raise InputError(f"AWS region {region!r} is not a region name")
    state = Path(env.get(STATE_ENV, "").strip() or DEFAULT_STATE)
    return Inputs(account, instance, other, region, suffix or new_suffix(), sam, state)


def approver_arn(caller_arn: str) -> str:
    """The approval-policy pattern for the caller: its user ARN, or for a role session the role's ARN
    (the policy matches a role session against ``arn:aws:iam::ACCOUNT:role/NAME``, see approval_policy)."""
    parts = caller_arn.split(":", 5)
    if len(parts) != 6:
        raise InputError(f"cannot use the caller {caller_arn!r} as approver (not an ARN)")
    resource = parts[5]
    if parts[2] == "iam" and resource.startswith("user/"):
        return caller_arn
    if parts[2] == "sts" and resource.startswith("assumed-role/"):
        role = resource.split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    raise InputError(
        f"the caller {caller_arn!r} cannot approve (root and federated users are refused): "
        "run the smoke test as an IAM user or an IAM role session"
    )


def parameter_overrides(inputs: Inputs, approver: str) -> list[str]:
    return [
        # Its own topic: the default name belongs to a SessionGate stack the account may already run.
        f"NotificationTopicName={inputs.stack_name}",
        # Change Manager is closed to new customers, and its document names are fixed (one per account).
        "EnableChangeManager=false",
        f"NativeApproverArns={approver}",
        "RequireSsmManagedInstance=true",
        "LogRetentionDays=7",
    ]


def build_command(inputs: Inputs) -> list[str]:
    return [inputs.sam, "build", "--template-file", "template.yaml", "--build-dir", BUILD_DIR]


def deploy_command(inputs: Inputs, approver: str) -> list[str]:
    return [
        inputs.sam,
        "deploy",
        "--template-file",
        f"{BUILD_DIR}/template.yaml",
        "--stack-name",
        inputs.stack_name,
        "--region",
        inputs.region,
        "--capabilities",
        "CAPABILITY_IAM",
        "CAPABILITY_NAMED_IAM",
        "--resolve-s3",
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
        "--parameter-overrides",
        *parameter_overrides(inputs, approver),
        "--tags",
        f"{TAG_KEY}={inputs.stack_name}",
    ]


def delete_command(sam: str, stack_name: str, region: str) -> list[str]:
    return [sam, "delete", "--stack-name", stack_name, "--region", region, "--no-prompts"]


def plan(
    inputs: Inputs, approver: str = "<caller ARN, or its role ARN for a role session>"
) -> dict[str, Any]:
    """What a run creates, calls and deletes, in order (the dry run prints this)."""
    return {
        "stack_name": inputs.stack_name,
        "account": inputs.account,
        "region": inputs.region,
        "instance_id": inputs.instance_id,
        "other_instance_id": inputs.other_instance_id,
        "state_file": str(inputs.state_path),
        "report_file": str(inputs.report_path),
        "creates": [
            f"CloudFormation stack {inputs.stack_name} "
            "(template.yaml; its cost-relevant resources are listed in the report)",
            "sam's managed artifact bucket stack aws-sam-cli-managed-default, if the account and Region have "
            "none (shared by every sam deploy there: kept)",
            f"IAM user {inputs.user_name} (tag {TAG_KEY}) with the stack's OperatorPolicyArn and "
            "RequestApiInvokePolicyArn attached, and one access key",
            f"SQS queue {inputs.queue_name} subscribed to the stack's NotificationTopicArn",
        ],
        "commands": [build_command(inputs), deploy_command(inputs, approver)],
        "steps": [
            "preflight: sts:GetCallerIdentity (account must equal SESSIONGATE_SMOKE_ACCOUNT), "
            "iam:GetPolicy (no AllowStartSsmSessionBasedOnIamTags yet: its name is fixed), "
            "ssm:DescribeInstanceInformation (the instance is a managed node)",
            "sam build, sam deploy; cloudformation:DescribeStacks (outputs)",
            "iam:CreateUser, iam:AttachUserPolicy x2, iam:CreateAccessKey",
            "sqs:CreateQueue, sqs:SetQueueAttributes (allow the topic), sns:Subscribe",
            f"operator: POST /requests ({GRANT_MINUTES} min, retried while the new key is not yet valid)",
            "caller: POST /requests/{id}/approve",
            "poll iam:ListUserTags until the slot tag names the instance (approval-to-tag)",
            "caller: GET /requests/{id} until ACTIVE (the grant's expires_at)",
            "iam:SimulatePrincipalPolicy ssm:StartSession: allowed on the instance, not on the other",
            "poll iam:ListUserTags until the tag is gone (expiry-to-untag, EventBridge Scheduler)",
            "iam:SimulatePrincipalPolicy again: denied on the instance; GET /requests/{id} until EXPIRED",
            "sqs:ReceiveMessage: AccessGranted and AccessRevoked (notification delays)",
            "cloudformation:ListStackResources (cost-relevant resources)",
        ],
        "teardown": [
            "(also after a failed step; what is left stays in the state file for `make smoke-teardown`)",
            "iam:ListAccessKeys + iam:DeleteAccessKey",
            "iam:ListAttachedUserPolicies + iam:DetachUserPolicy",
            "iam:DeleteUser",
            "sns:Unsubscribe",
            "sqs:DeleteQueue",
            "cloudformation:ListStackResources (names of the retained DynamoDB tables)",
            " ".join(delete_command(inputs.sam, inputs.stack_name, inputs.region)),
            "cloudformation:DescribeStacks until the stack is gone (waiter stack_delete_complete)",
            "dynamodb:DeleteTable for the stack's tables (DeletionPolicy Retain: CloudFormation keeps them)",
        ],
    }


def default_region(env: Mapping[str, str] = os.environ) -> str | None:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
