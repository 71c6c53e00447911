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
from datetime import datetime
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
from sessiongate.wiring import (
    build,
    build_change_request_adapter,
    build_engine,
    build_publisher,
    build_request_api,
)

from .template import create_table, resource
from .values import (  # noqa: F401 - also imported from here by the integration tests
    ACCOUNT,
    APPROVAL_KEY,
    APPROVER_GROUP,
    BREAK_GLASS_APPROVER,
    NATIVE_SETTINGS,
    POLICY_KEY,
    REGION,
    STACK,
    START,
    TEMPLATE_NAME,
    _change_template,
    change_request,
    settings,
)

_CALLS: Counter[str] = Counter()


@functools.cache
def _client(service: str) -> Any:
    """boto3 clients are costly to build: share them across tests (moto intercepts every client)."""
    c = boto3.client(service, region_name=REGION, config=Config(retries={"mode": "standard"}))
    c.meta.events.register("before-call.*.*", _count)
    return c


@functools.cache
def _stream_reader() -> Any:
    """DynamoDB Streams on moto: botocore sends stream calls to an account endpoint
    (<account>.streams-ddb...) moto 5.2 does not serve; the regional endpoint is the same API."""
    return boto3.client(
        "dynamodbstreams", region_name=REGION, endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com"
    )


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
    _stream_read: set[str] = field(default_factory=set)  # eventIDs of the stream records read

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

    def publish_changes(self) -> list[str]:
        """What the stream consumer does within a second of a write: publish the lifecycle events of
        the tables' changes not yet published (``functions/publish_events``' publisher, on the streams'
        records in Lambda's shape); their event ids."""
        tables = replace(self.settings, requests_table=NATIVE_SETTINGS["requests_table"])
        publisher = build_publisher(tables, client=self.client)
        published: list[str] = []
        for table in (self.settings.table_name, NATIVE_SETTINGS["requests_table"]):
            for record in self._stream_records(table):
                published += publisher.publish(record["eventSourceARN"], record["dynamodb"])
        return published

    def _stream_records(self, table: str) -> list[dict[str, Any]]:
        """The stream records of ``table`` not read before (uncounted reads: Lambda's). Each shard is
        read from its start: moto restores a table from a copy when a TransactWriteItems is cancelled,
        and an iterator taken before would read the discarded copy."""
        reader = _stream_reader()
        stream = _client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        records = []
        for shard in reader.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"]:
            iterator = reader.get_shard_iterator(
                StreamArn=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                answer = reader.get_records(ShardIterator=iterator)
                fresh = [r for r in answer["Records"] if r["eventID"] not in self._stream_read]
                self._stream_read.update(r["eventID"] for r in fresh)
                records += [{**r, "eventSourceARN": stream} for r in fresh]
                iterator = answer.get("NextShardIterator") if answer["Records"] else None
        return records

    def notifications(self) -> list[dict[str, Any]]:
        self.publish_changes()
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


def build_stack(clock: ManualClock | None = None, **overrides: Any) -> Stack:
    """Create, inside an active ``mock_aws``, the resources the engine talks to."""
    fake_iam.install()  # the same IAM refusals as the sandbox (protected roles, tag value pattern)
    stack = Stack(settings=settings(**overrides), clock=clock or ManualClock(START), ssm=FakeSsm())
    s = stack.settings
    create_table(stack.client("dynamodb"), "GrantsTable", s.table_name)
    create_table(stack.client("dynamodb"), "RequestsTable", NATIVE_SETTINGS["requests_table"])
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
