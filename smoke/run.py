"""The smoke run: deploy, request, approve, check, wait for the revocation, measure, tear down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TextIO

from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError

from sessiongate_cli.client import ApiClient, CliError, Transport

from . import plan as smoke_plan
from . import state as state_file
from .calls import CallCounter
from .plan import GRANT_MINUTES, TAG_KEY, InputError, Inputs
from .state import State
from .teardown import ClientFactory, Runner, teardown

SLOT_TAG_PREFIX = "SecurityAllowSessionInstance"
OPERATOR_POLICY_NAME = "AllowStartSsmSessionBasedOnIamTags"  # fixed name in template.yaml
REQUIRED_OUTPUTS = (
    "RequestApiEndpoint",
    "OperatorPolicyArn",
    "RequestApiInvokePolicyArn",
    "NotificationTopicArn",
)
# What a stack costs money for while it exists or when used (no prices here: see the AWS pricing pages).
COST_RELEVANT = frozenset(
    {
        "AWS::Lambda::Function",
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Logs::LogGroup",
        "AWS::ApiGatewayV2::Api",
        "AWS::Events::EventBus",
        "AWS::Events::Rule",
        "AWS::Scheduler::ScheduleGroup",
        "AWS::Scheduler::Schedule",
        "AWS::SSM::Parameter",
    }
)
# IAM is eventually consistent (IAM User Guide, "Troubleshoot general issues", section "Changes that I
# make are not always immediately visible"): a new access key or a just-attached policy can be refused
# for a while, so the first signed request is retried with a bounded backoff.
KEY_RETRY_DELAYS = (2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0, 15.0)  # about 90 s in all
TAG_POLL_SECONDS = 1.0
UNTAG_POLL_SECONDS = 2.0
TAG_TIMEOUT_SECONDS = 180.0
# Scheduler fires within a minute; the reconciler revokes within one period (5 min) plus 90 s.
UNTAG_TIMEOUT_SECONDS = 600.0
NOTIFICATION_TIMEOUT_SECONDS = 120.0
STEP_ERRORS = (ClientError, BotoCoreError, CliError, OSError, RuntimeError, KeyError, ValueError)


class SmokeError(RuntimeError):
    """A step did not get the result it expects."""


class StepFailed(Exception):
    pass


@dataclass
class Deps:
    session: Any  # the caller's boto3 Session (the approver)
    runner: Runner
    transport: Transport
    out: TextIO
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time  # wall clock, epoch seconds


@dataclass
class Report:
    inputs: Inputs
    steps: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    teardown: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None

    def check(self, name: str, expected: str, actual: str) -> None:
        self.checks.append({"name": name, "expected": expected, "actual": actual, "ok": expected == actual})
        if expected != actual:
            raise SmokeError(f"{name}: expected {expected}, got {actual}")

    def as_dict(self, counter: CallCounter) -> dict[str, Any]:
        i = self.inputs
        return {
            "ok": self.failed is None
            and all(c["ok"] for c in self.checks)
            and all(t["ok"] for t in self.teardown),
            "failed_step": self.failed,
            "stack_name": i.stack_name,
            "account": i.account,
            "region": i.region,
            "instance_id": i.instance_id,
            "other_instance_id": i.other_instance_id,
            "steps": self.steps,
            "checks": self.checks,
            "figures": self.figures,
            "aws_calls": counter.report(),
            "stack_resources": self.resources,
            "teardown": self.teardown,
        }


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def preflight(inputs: Inputs, client: ClientFactory) -> str:
    """Refuse (InputError, exit 2) before anything is created; returns the approver ARN."""
    identity = client("sts").get_caller_identity()
    if identity["Account"] != inputs.account:
        raise InputError(
            f"the caller's account is {identity['Account']}, not SESSIONGATE_SMOKE_ACCOUNT={inputs.account}: "
            "refusing to deploy anywhere but the account you named"
        )
    approver = smoke_plan.approver_arn(identity["Arn"])
    iam = client("iam")
    arn = f"arn:{identity['Arn'].split(':')[1]}:iam::{inputs.account}:policy/{OPERATOR_POLICY_NAME}"
    try:
        iam.get_policy(PolicyArn=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
    else:
        raise InputError(
            f"{OPERATOR_POLICY_NAME} already exists in {inputs.account} (a SessionGate stack runs there): "
            "its name is fixed, so a second stack cannot deploy; use another account"
        )
    found = client("ssm").describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [inputs.instance_id]}]
    )["InstanceInformationList"]
    if not found:
        raise InputError(
            f"{inputs.instance_id} is not an SSM managed instance in {inputs.region}: "
            "set SESSIONGATE_SMOKE_INSTANCE to one that is"
        )
    return approver


def _slot_tags(iam: Any, user: str) -> dict[str, str]:
    tags = iam.list_user_tags(UserName=user)["Tags"]
    return {t["Key"]: t["Value"] for t in tags if t["Key"].startswith("SecurityAllowSession")}


def _names_instance(tags: dict[str, str], instance: str) -> bool:
    return any(k.startswith(SLOT_TAG_PREFIX) and v == instance for k, v in tags.items())


def _simulate(iam: Any, user_arn: str, instance_arn: str, tags: dict[str, str]) -> str:
    # The simulator evaluates the principal's attached policies and the inputs given to it ("Testing IAM
    # policies with the IAM policy simulator"; GetContextKeysForPrincipalPolicy lists the keys to
    # supply): it is not documented to read the user's tags, so the tags just read from IAM are passed
    # as aws:PrincipalTag context entries.
    context = [
        {"ContextKeyName": f"aws:PrincipalTag/{k}", "ContextKeyValues": [v], "ContextKeyType": "string"}
        for k, v in sorted(tags.items())
    ]
    result = iam.simulate_principal_policy(
        PolicySourceArn=user_arn,
        ActionNames=["ssm:StartSession"],
        ResourceArns=[instance_arn],
        ContextEntries=context,
    )
    return str(result["EvaluationResults"][0]["EvalDecision"])


def _queue_policy(queue_arn: str, topic_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "FromTheSmokeStackTopic",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
    )


class Smoke:
    def __init__(self, inputs: Inputs, deps: Deps) -> None:
        self.inputs = inputs
        self.deps = deps
        self.counter = CallCounter()
        self.client: ClientFactory = partial(self.counter.client, deps.session)
        self.report = Report(inputs)
        self.state = State(inputs.stack_name, inputs.region, inputs.account, inputs.sam)
        self.outputs: dict[str, str] = {}
        self.user_arn = ""
        self.queue_url = ""

    # ------------------------------------------------------------------------------ plumbing
    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"name": name}
        started = self.deps.now()
        self.deps.out.write(f"smoke: {name} ...\n")
        try:
            yield record
        except STEP_ERRORS as exc:
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            self.report.failed = name
            raise StepFailed(name) from None
        else:
            record["ok"] = True
        finally:
            if "ok" not in record:  # interrupted (Ctrl-C) or an error no step expects: teardown still runs
                record.update(ok=False, error="interrupted")
                self.report.failed = name
            record["seconds"] = round(self.deps.now() - started, 3)
            self.report.steps.append(record)
            self.deps.out.write(f"smoke: {name}: {'ok' if record['ok'] else record['error']}\n")

    def remember(self) -> None:
        state_file.save(self.inputs.state_path, self.state)

    def api(self, credentials: Callable[[], Any], label: str) -> Callable[..., dict[str, Any]]:
        """Signed calls of the request API through the CLI's client; ``credentials`` is asked at every
        call, so refreshable credentials (SSO, an assumed role) stay valid through a long run."""

        def call(
            method: str, path: str, body: dict[str, Any] | None = None, name: str = ""
        ) -> dict[str, Any]:
            self.counter.add(f"execute-api:{method} {name or path} ({label})")
            endpoint = self.outputs["RequestApiEndpoint"]
            client = ApiClient(endpoint, credentials(), self.inputs.region, self.deps.transport)
            return client.call(method, path, body)

        return call

    # ------------------------------------------------------------------------------ the run
    def run(self) -> int:
        i = self.inputs
        approver = preflight(i, self.client)  # InputError: nothing was created
        leftover = state_file.load(i.state_path)
        if leftover is not None and not leftover.empty():
            raise InputError(
                f"{i.state_path} lists resources of an earlier run ({leftover.stack_name}): "
                "run `make smoke-teardown` first"
            )
        try:
            self._steps(approver)
        except StepFailed:
            pass
        finally:
            self.report.teardown = teardown(
                self.state,
                i.state_path,
                self.client,
                self.deps.runner,
                delete_command=smoke_plan.delete_command(i.sam, i.stack_name, i.region),
            )
            result = self.report.as_dict(self.counter)
            i.report_path.parent.mkdir(parents=True, exist_ok=True)
            i.report_path.write_text(json.dumps(result, indent=2) + "\n")
            self.deps.out.write(json.dumps(result, indent=2) + "\n")
            self.deps.out.write(f"smoke: report written to {i.report_path}\n")
        return 0 if result["ok"] else 1

    def _steps(self, approver: str) -> None:
        i, r = self.inputs, self.report
        with self.step("sam build"):
            if (code := self.deps.runner(smoke_plan.build_command(i))) != 0:
                raise SmokeError(f"sam build exited with {code}")
        with self.step("sam deploy"):
            self.state.stack = True
            self.remember()
            if (code := self.deps.runner(smoke_plan.deploy_command(i, approver))) != 0:
                raise SmokeError(f"sam deploy exited with {code}")
            stack = self.client("cloudformation").describe_stacks(StackName=i.stack_name)["Stacks"][0]
            self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
            missing = [k for k in REQUIRED_OUTPUTS if k not in self.outputs]
            if missing:
                raise SmokeError(f"the stack has no output {', '.join(missing)}")
        iam = self.client("iam")
        with self.step("create the operator (temporary IAM user)"):
            user = iam.create_user(UserName=i.user_name, Tags=[{"Key": TAG_KEY, "Value": i.stack_name}])[
                "User"
            ]
            self.state.user_name = i.user_name
            self.remember()
            self.user_arn = user["Arn"]
            for output in ("OperatorPolicyArn", "RequestApiInvokePolicyArn"):
                iam.attach_user_policy(UserName=i.user_name, PolicyArn=self.outputs[output])
            key = iam.create_access_key(UserName=i.user_name)["AccessKey"]
            operator_credentials = ReadOnlyCredentials(key["AccessKeyId"], key["SecretAccessKey"], None)
        with self.step("subscribe a queue to the notification topic"):
            self._subscribe()
        operator = self.api(lambda: operator_credentials, "operator")
        caller = self.api(lambda: self.deps.session.get_credentials().get_frozen_credentials(), "approver")
        with self.step(f"operator requests {GRANT_MINUTES} min on the instance") as rec:
            body = {
                "instance_id": i.instance_id,
                "duration_minutes": GRANT_MINUTES,
                "reason": f"SessionGate smoke run {i.stack_name}",
            }
            request = self._retry_new_key(lambda: operator("POST", "/requests", body))["request"]
            request_id = str(request["request_id"])
            rec["request_id"] = request_id
            r.check("request is pending", "PENDING", str(request["status"]))
        with self.step("caller approves"):
            caller(
                "POST", f"/requests/{request_id}/approve", {"comment": "smoke run"}, "/requests/{id}/approve"
            )
            approved_at = self.deps.now()
        with self.step("slot tag appears on the operator") as rec:
            tags = self._poll_tags(
                lambda t: _names_instance(t, i.instance_id), approved_at + TAG_TIMEOUT_SECONDS
            )
            r.figures["approval_to_tag_seconds"] = round(self.deps.now() - approved_at, 3)
            r.figures["tag_poll_interval_seconds"] = TAG_POLL_SECONDS
            rec["tags"] = tags
        with self.step("grant is active"):
            view = self._poll_request(caller, request_id, "ACTIVE", approved_at + TAG_TIMEOUT_SECONDS)
            expires_at = str(view.get("expires_at") or view["grant"]["expires_at"])
            r.figures["expires_at"] = expires_at
        partition = self.user_arn.split(":")[1]
        arn = f"arn:{partition}:ec2:{i.region}:{i.account}:instance/"
        with self.step("IAM decision while granted"):
            r.check(
                "StartSession on the instance",
                "allowed",
                _simulate(iam, self.user_arn, arn + i.instance_id, tags),
            )
            other = _simulate(iam, self.user_arn, arn + i.other_instance_id, tags)
            r.check(
                "StartSession on the other instance",
                "not allowed",
                "allowed" if other == "allowed" else "not allowed",
            )
        with self.step("Scheduler removes the tag"):
            due = epoch(expires_at)
            tags = self._poll_tags(
                lambda t: not _names_instance(t, i.instance_id),
                due + UNTAG_TIMEOUT_SECONDS,
                UNTAG_POLL_SECONDS,
            )
            r.figures["expiry_to_untag_seconds"] = round(self.deps.now() - due, 3)
            r.figures["untag_poll_interval_seconds"] = UNTAG_POLL_SECONDS
        with self.step("IAM decision after expiry"):
            after = _simulate(iam, self.user_arn, arn + i.instance_id, tags)
            r.check(
                "StartSession on the instance",
                "not allowed",
                "allowed" if after == "allowed" else "not allowed",
            )
            view = self._poll_request(caller, request_id, "EXPIRED", self.deps.now() + 60)
            r.check("request after expiry", "EXPIRED", str(view["status"]))
        with self.step("lifecycle notifications"):
            r.figures["notifications"] = self._notifications(approved_at, due)
        with self.step("stack resources"):
            r.resources = self._resources()

    # ------------------------------------------------------------------------------ helpers
    def _subscribe(self) -> None:
        i = self.inputs
        sqs, sns = self.client("sqs"), self.client("sns")
        url = sqs.create_queue(QueueName=i.queue_name, tags={TAG_KEY: i.stack_name})["QueueUrl"]
        self.state.queue_url = url
        self.remember()
        self.queue_url = url
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic = self.outputs["NotificationTopicArn"]
        # The queue policy may take a moment to let SNS deliver ("SubscribeQueue", AWS SDK for .NET API
        # reference): the subscription is made before the request, minutes before the first event.
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": _queue_policy(queue_arn, topic)})
        arn = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True)[
            "SubscriptionArn"
        ]
        self.state.subscription_arn = arn
        self.remember()
        attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        if attributes.get("PendingConfirmation") == "true":
            self._confirm(sqs, sns, topic)

    def _confirm(self, sqs: Any, sns: Any, topic: str) -> None:
        """A subscription SNS did not confirm by itself: confirm it with the token it sent to the queue."""
        for _ in range(6):
            for message in sqs.receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=10).get(
                "Messages", []
            ):
                body = json.loads(message["Body"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                if body.get("Type") == "SubscriptionConfirmation":
                    arn = sns.confirm_subscription(
                        TopicArn=topic, Token=body["Token"], AuthenticateOnUnsubscribe="true"
                    )["SubscriptionArn"]
                    self.state.subscription_arn = arn
                    self.remember()
                    return
        raise SmokeError("the queue's subscription is still pending confirmation")

    def _retry_new_key(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        for delay in (*KEY_RETRY_DELAYS, None):
            try:
                return call()
            except CliError as exc:
                if exc.status != 403 or exc.code != "forbidden" or delay is None:
                    raise
                self.deps.sleep(delay)
        raise AssertionError("unreachable")

    def _poll_tags(
        self, done: Callable[[dict[str, str]], bool], deadline: float, every: float = TAG_POLL_SECONDS
    ) -> dict[str, str]:
        iam = self.client("iam")
        while True:
            tags = _slot_tags(iam, self.inputs.user_name)
            if done(tags):
                return tags
            if self.deps.now() >= deadline:
                raise SmokeError(f"the operator's slot tags are still {tags} at the deadline")
            self.deps.sleep(every)

    def _poll_request(
        self, caller: Callable[..., dict[str, Any]], request_id: str, status: str, deadline: float
    ) -> dict[str, Any]:
        while True:
            view: dict[str, Any] = caller("GET", f"/requests/{request_id}", None, "/requests/{id}")["request"]
            if view["status"] == status:
                return view
            if self.deps.now() >= deadline:
                raise SmokeError(f"request {request_id} is {view['status']}, not {status}")
            self.deps.sleep(2.0)

    def _notifications(self, approved_at: float, due: float) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        seen: list[dict[str, Any]] = []
        deadline = self.deps.now() + NOTIFICATION_TIMEOUT_SECONDS
        while {"AccessGranted", "AccessRevoked"} - {n["event_type"] for n in seen}:
            if self.deps.now() >= deadline:
                raise SmokeError(f"no AccessGranted and AccessRevoked in the queue (got {seen})")
            messages = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=10,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            for message in messages:
                envelope = json.loads(message["Body"])
                if envelope.get("Type") == "Notification":
                    published = epoch(envelope["Timestamp"])
                    in_queue = int(message["Attributes"]["SentTimestamp"]) / 1000
                    kind = envelope.get("MessageAttributes", {}).get("event_type", {}).get("Value", "")
                    entry = {
                        "event_type": kind,
                        "published_at": envelope["Timestamp"],
                        "sns_to_sqs_seconds": round(in_queue - published, 3),
                    }
                    if kind == "AccessGranted":
                        entry["published_after_approval_seconds"] = round(published - approved_at, 3)
                    if kind == "AccessRevoked":
                        entry["published_after_expiry_seconds"] = round(published - due, 3)
                    seen.append(entry)
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return seen

    def _resources(self) -> dict[str, Any]:
        cfn = self.client("cloudformation")
        counts: dict[str, int] = {}
        relevant: list[dict[str, str]] = []
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=self.inputs.stack_name):
            for res in page["StackResourceSummaries"]:
                kind = res["ResourceType"]
                counts[kind] = counts.get(kind, 0) + 1
                if kind in COST_RELEVANT:
                    relevant.append({"type": kind, "logical_id": res["LogicalResourceId"]})
        return {"counts_by_type": dict(sorted(counts.items())), "cost_relevant": relevant}


def run(inputs: Inputs, deps: Deps) -> int:
    return Smoke(inputs, deps).run()
