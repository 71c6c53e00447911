"""An in-process SessionGate stack on moto: the resources template.yaml declares, and helpers to poke it."""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
from botocore.config import Config

from sandbox import fake_iam
from sandbox.fake_ssm import FakeSsm
from sessiongate.access_requests.http import RequestApi
from sessiongate.access_requests.policy import Envelope, new_serial
from sessiongate.adapters.kms import Macs
from sessiongate.adapters.policy_source import next_version, put_signed, sign_and_put
from sessiongate.change_manager.adapter import ChangeRequestAdapter
from sessiongate.clock import ManualClock, to_iso
from sessiongate.core.engine import Engine
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import AccessApproved, Origin
from sessiongate.settings import Settings
from sessiongate.wiring import build, build_change_request_adapter, build_engine, build_request_api

from .template import resource

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


_CALLS: Counter[str] = Counter()


@functools.cache
def _client(service: str) -> Any:
    """boto3 clients are costly to build: share them across tests (moto intercepts every client)."""
    c = boto3.client(service, region_name=REGION, config=Config(retries={"mode": "standard"}))
    c.meta.events.register("before-call.*.*", _count)
    return c


def _count(model: Any, **_: Any) -> None:
    _CALLS[f"{model.service_model.service_name}:{model.name}"] += 1


@dataclass
class Stack:
    settings: Settings
    clock: ManualClock
    ssm: FakeSsm
    notification_queue: str = ""
    bus_queue: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    # What the handlers invoked through handler() are given (see deploy()); built on their first call.
    _wiring: dict[str, Any] = field(default_factory=dict)
    _deps: dict[str, Any] = field(default_factory=dict)

    # -- the Lambda handlers, their dependencies injected -------------------------------------
    def deploy(self, *, client: Any = None, member_client: Any = None) -> None:
        """From now on, handlers get dependencies built from the environment (as the test set it), this
        stack's clock and these client factories (default :meth:`client`); those built before are
        dropped (a new Lambda process)."""
        self._wiring = {"client": client or self.client, "member_client": member_client}
        self._deps.clear()

    def dependencies(self, role: str) -> Any:
        """What the handler of ``role`` is given (``sessiongate.wiring.build``), built once per deploy."""
        if role not in self._deps:
            self._deps[role] = build(
                role, os.environ, clock=self.clock, **(self._wiring or {"client": self.client})
            )
        return self._deps[role]

    def handler(self, name: str) -> Callable[[Any, Any], Any]:
        """``functions/<name>/app.py``'s handler as Lambda runs it, given its dependencies explicitly."""
        module = importlib.import_module(f"functions.{name}.app")

        def invoke(event: Any, context: Any) -> Any:
            return module.lambda_handler(event, context, deps=self.dependencies(module.ROLE))

        return invoke

    def client(self, service: str) -> Any:
        if service == "ssm":
            return self.ssm
        global _CALLS
        _CALLS = self.calls
        return _client(service)

    def engine(self, settings: Settings | None = None) -> Engine:
        return build_engine(settings or self.settings, clock=self.clock, client=self.client)

    # -- native front door --------------------------------------------------------------------
    def change_manager(self, settings: Settings | None = None) -> ChangeRequestAdapter:
        return build_change_request_adapter(settings or self.settings, clock=self.clock, client=self.client)

    def enable_native(self) -> None:
        """Configure the native front door (the requests table exists in every stack)."""
        self.settings = Settings(**{**self.settings.__dict__, **NATIVE_SETTINGS})

    def native_client(self, service: str) -> Any:
        """Like :meth:`client`, but SSM parameters (the approval policy) come from moto's SSM."""
        return SsmWithParameters(self.ssm, _client("ssm")) if service == "ssm" else self.client(service)

    def put_approval_policy(self, policy: dict[str, Any] | str) -> None:
        """Sign ``policy`` as a deployer does (``sessiongate policy sign --put``). A string is signed
        as is, unvalidated (a policy the API cannot use although its signature is right)."""
        macs, ssm, name = Macs(_client("kms")), _client("ssm"), self.settings.approval_policy_parameter
        if isinstance(policy, str):
            version = next_version(ssm, name)
            unsigned = Envelope(json.loads(policy), name, version, "", POLICY_KEY, new_serial(time.time()))
            put_signed(ssm, replace(unsigned, mac=macs.generate(POLICY_KEY, unsigned.message())))
        else:
            sign_and_put(policy, macs, POLICY_KEY, ssm, name)

    def ssm_parameter(self) -> str:
        """The policy parameter's current value."""
        value: str = _client("ssm").get_parameter(Name=self.settings.approval_policy_parameter)["Parameter"][
            "Value"
        ]
        return value

    def put_raw_policy(self, value: str) -> None:
        """What anyone with ssm:PutParameter can do: write the parameter without the deployers' key."""
        _client("ssm").put_parameter(
            Name=self.settings.approval_policy_parameter, Type="String", Value=value, Overwrite=True
        )

    def request_api(self, settings: Settings | None = None) -> RequestApi:
        return build_request_api(settings or self.settings, clock=self.clock, client=self.native_client)

    # -- fixtures -----------------------------------------------------------------------------
    def operator_policy(self) -> str:
        """The operator managed policy (its name, a stand-in document); the reconciler's scope."""
        arn: str = self.client("iam").create_policy(
            PolicyName="AllowStartSsmSessionBasedOnIamTags",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}],
                }
            ),
        )["Policy"]["Arn"]
        self.settings = replace(self.settings, operator_policy_arn=arn)
        return arn

    def member_client(self, service: str, credentials: dict[str, str] | None) -> Any:
        """A client acting in a member account with the credentials the engine assumed there (moto's
        multi-account support); SSM stays the change-request fake."""
        if service == "ssm":
            return self.ssm
        assert credentials is not None
        return boto3.client(
            service, region_name=REGION, config=Config(retries={"mode": "standard"}), **credentials
        )

    def user(self, name: str, *, path: str = "/", tags: dict[str, str] | None = None) -> str:
        iam = self.client("iam")
        arn: str = iam.create_user(UserName=name, Path=path)["User"]["Arn"]
        if tags:
            iam.tag_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return arn

    def approvers(self, *arns: str) -> None:
        """Make the IAM users among ``arns`` (created when missing) members of the approver group."""
        iam = self.client("iam")
        for arn in arns:
            resource = arn.split(":", 5)[-1]
            if not resource.startswith("user/") or arn.split(":")[4] != ACCOUNT:
                continue
            name = resource.rsplit("/", 1)[-1]
            try:
                iam.get_user(UserName=name)
            except iam.exceptions.NoSuchEntityException:
                iam.create_user(UserName=name)
            iam.add_user_to_group(GroupName=APPROVER_GROUP, UserName=name)

    def role(self, name: str, *, path: str = "/", tags: dict[str, str] | None = None) -> str:
        iam = self.client("iam")
        trust = {"Version": "2012-10-17", "Statement": []}
        arn: str = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
        if tags:
            iam.tag_role(RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return arn

    def instance(self, *, managed: bool = True, tags: dict[str, str] | None = None) -> str:
        ec2 = self.client("ec2")
        kwargs: dict[str, Any] = {"ImageId": "ami-12c6146b", "MinCount": 1, "MaxCount": 1}
        if tags:
            kwargs["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        instance_id: str = ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
        if managed:
            self.ssm.managed.add(instance_id)
        return instance_id

    def tags(self, kind: str, name: str) -> dict[str, str]:
        iam = self.client("iam")
        if kind == "user":
            tags = iam.list_user_tags(UserName=name)["Tags"]
        else:
            tags = iam.list_role_tags(RoleName=name)["Tags"]
        return {t["Key"]: t["Value"] for t in tags}

    def schedules(self) -> dict[str, dict[str, Any]]:
        scheduler = self.client("scheduler")
        names = [
            s["Name"] for s in scheduler.list_schedules(GroupName=self.settings.schedule_group)["Schedules"]
        ]
        return {n: scheduler.get_schedule(Name=n, GroupName=self.settings.schedule_group) for n in names}

    def notifications(self) -> list[dict[str, Any]]:
        return [
            {
                "message": json.loads(body["Message"]),
                "subject": body.get("Subject"),
                "attributes": {k: v["Value"] for k, v in body.get("MessageAttributes", {}).items()},
            }
            for body in self._drain(self.notification_queue)
        ]

    def bus_events(self) -> list[dict[str, Any]]:
        return self._drain(self.bus_queue)

    def _drain(self, url: str) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        out = []
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def approved(
        self,
        *,
        instance_id: str,
        principal: str,
        kind: str = "user",
        requester: str | None = None,
        approvers: tuple[str, ...] | None = None,
        minutes: int = 10,
        grant_id: str | None = None,
        not_before: datetime | None = None,
        origin: Origin = Origin.CHANGE_MANAGER,
    ) -> AccessApproved:
        """An AccessApproved request; Change Manager ones get a matching SSM change request."""
        execution_id = str(uuid.uuid4())
        request = AccessApproved(
            grant_id=grant_id or f"cm-{execution_id}",
            origin=origin,
            origin_ref=f"oi-{uuid.uuid4().hex[:12]}",
            account=ACCOUNT,
            instance_id=instance_id,
            principal_type=PrincipalType(kind),
            principal_name=principal,
            requester_arn=requester or f"arn:aws:iam::{ACCOUNT}:user/{principal}",
            approver_arns=approvers if approvers is not None else (f"arn:aws:iam::{ACCOUNT}:user/approver",),
            duration_minutes=minutes,
            not_before=not_before or self.clock.now(),
            approved_at=not_before or self.clock.now(),
        )
        if origin is Origin.CHANGE_MANAGER and request.grant_id.startswith("cm-"):
            self.approvers(*request.approver_arns)
            self.ssm.add_execution(change_request(request))
        return request

    def event(self, request: AccessApproved) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "source": "sessiongate",
            "detail-type": "AccessApproved",
            "account": ACCOUNT,
            "region": REGION,
            "time": to_iso(self.clock.now()),
            "resources": [],
            "detail": request.to_detail(),
        }


class SsmWithParameters:
    """The SSM fake (change requests, sessions, managed nodes) plus moto's parameter store."""

    def __init__(self, fake: FakeSsm, real: Any) -> None:
        self._fake, self._real = fake, real
        self.exceptions = SimpleNamespace(
            ParameterNotFound=real.exceptions.ParameterNotFound,
            AutomationExecutionNotFoundException=fake.exceptions.AutomationExecutionNotFoundException,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real if name.endswith("_parameter") else self._fake, name)


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


def through_change_manager(
    stack: Stack,
    *signers: str,
    instance_id: str = "i-0a1b2c3d4e5f60718",
    approver: str = APPROVER_GROUP,
    kind: str = "IamGroup",
    level: int = 1,
) -> tuple[str, dict[str, Any]]:
    """A change request of alice through the SSM fake (which lets only the template's approvers sign),
    approved by ``signers``; returns its execution id and the status event EventBridge delivers."""
    iam = stack.client("iam")
    stack.ssm.group_members = lambda group: {u["Arn"] for u in iam.get_group(GroupName=group)["Users"]}
    stack.ssm.register_document(
        TEMPLATE_NAME, "Automation.ChangeTemplate", _change_template(approver, kind, level)
    )
    now = stack.clock.now()
    execution_id = stack.ssm.start_change_request_execution(
        requester_arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
        now=now,
        DocumentName="AllowSsmSessionStartTemplate",
        ChangeRequestName="restart nginx",
        Runbooks=[
            {
                "DocumentName": "AllowSsmSessionStartRunbook",
                "Parameters": {
                    "InstanceId": [instance_id],
                    "PrincipalType": ["User"],
                    "PrincipalName": ["alice"],
                    "ValidityMinutes": ["10"],
                },
            }
        ],
    )["AutomationExecutionId"]
    for signer in signers:
        stack.ssm.send_automation_signal(
            signer_arn=signer, now=now, AutomationExecutionId=execution_id, SignalType="Approve"
        )
    entry = stack.ssm.status_event(execution_id, account=ACCOUNT, region=REGION, now=now)
    event = {
        "source": entry["Source"],
        "detail-type": entry["DetailType"],
        "detail": json.loads(entry["Detail"]),
    }
    return execution_id, event


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


def build_stack(clock: ManualClock | None = None, **overrides: Any) -> Stack:
    """Create, inside an active ``mock_aws``, the resources the engine talks to."""
    fake_iam.install()  # the same IAM refusals as the sandbox (protected roles, tag value pattern)
    stack = Stack(settings=settings(**overrides), clock=clock or ManualClock(START), ssm=FakeSsm())
    s = stack.settings
    table = resource("GrantsTable")["Properties"]
    stack.client("dynamodb").create_table(
        TableName=s.table_name,
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        BillingMode=table["BillingMode"],
    )
    requests = resource("RequestsTable")["Properties"]
    stack.client("dynamodb").create_table(
        TableName=NATIVE_SETTINGS["requests_table"],
        AttributeDefinitions=requests["AttributeDefinitions"],
        KeySchema=requests["KeySchema"],
        GlobalSecondaryIndexes=requests["GlobalSecondaryIndexes"],
        BillingMode=requests["BillingMode"],
    )
    kms = stack.client("kms")
    for alias, logical_id in ((POLICY_KEY, "ApprovalPolicyKey"), (APPROVAL_KEY, "ApprovalKey")):
        key = resource(logical_id)["Properties"]
        key_id = kms.create_key(KeySpec=key["KeySpec"], KeyUsage=key["KeyUsage"])["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias.split(":", 5)[5], TargetKeyId=key_id)
    sqs, sns, events = stack.client("sqs"), stack.client("sns"), stack.client("events")
    topic = sns.create_topic(Name="change-manager-ssm-approval")["TopicArn"]
    assert topic == s.topic_arn
    stack.notification_queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=_queue_arn(stack.notification_queue))
    events.create_event_bus(Name=s.event_bus_name)
    stack.bus_queue = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
    events.put_rule(
        Name="tap", EventBusName=s.event_bus_name, EventPattern=json.dumps({"source": ["sessiongate"]})
    )
    events.put_targets(
        Rule="tap", EventBusName=s.event_bus_name, Targets=[{"Id": "q", "Arn": _queue_arn(stack.bus_queue)}]
    )
    sqs.create_queue(QueueName=f"{STACK}-schedule-dlq")
    stack.client("scheduler").create_schedule_group(Name=s.schedule_group)
    stack.client("ec2")  # warm the client
    stack.client("iam").create_group(GroupName=APPROVER_GROUP)
    stack.calls.clear()
    return stack


def _queue_arn(url: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url.rsplit('/', 1)[-1]}"


def environment(settings: Settings) -> dict[str, str]:
    """The Lambda environment variables that configure ``settings`` (as template.yaml sets them)."""
    env = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple) and len(value) == 2 and f.name.endswith("_tag"):
            value = "=".join(value)
        elif isinstance(value, tuple):
            value = ",".join(value)
        elif value is None:
            continue
        env[Settings.ENV[f.name]] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
