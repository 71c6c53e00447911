"""The sandbox world: moto resources from template.yaml, the real handlers, a router and a scheduler.

Nothing here re-implements engine behaviour. The world only does what AWS would do around the
handlers: deliver events that match the template's rule patterns, fire one-time schedules when the
virtual clock reaches them, retry failed async invocations and park them in the OnFailure queue.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import json
import os
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from moto.core.model_instances import reset_model_data

from sessiongate import wiring
from sessiongate.adapters import aws
from sessiongate.clock import ManualClock, to_iso

from . import cfn, fake_iam, fake_slack
from .fake_slack import FakeSlack
from .fake_ssm import FakeSsm
from .faults import FaultInjector

ACCOUNT = "123456789012"
REGION = "us-east-1"
DEFAULT_START = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
# Lambda's async retries when a function has no EventInvokeConfig (the template sets one on each).
DEFAULT_ASYNC_RETRIES = 2
CLOUDTRAIL_API_CALL = "AWS API Call via CloudTrail"
# The function each engine role runs in (functions/<verb_noun>/app.py declares its ROLE).
ROLE_FUNCTIONS = {
    "grant": "GrantAccessFunction",
    "revoke": "RevokeAccessFunction",
    "adapter": "AdaptChangeRequestFunction",
    "reconcile": "ReconcileGrantsFunction",
}
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_SESSION_TOKEN": "sandbox",
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass
class Invocation:
    at: datetime
    function: str
    trigger: str
    result: Any = None
    error: str | None = None
    calls: Counter[str] = field(default_factory=Counter)  # AWS calls made by this invocation


@dataclass
class Fired:
    name: str
    due: datetime
    fired: datetime


@dataclass
class _LambdaContext:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = "sandbox"


@dataclass
class Function:
    logical_id: str
    name: str
    arn: str
    source: Path  # the handler file, as Lambda finds it in CodeUri
    entry: str  # the handler function's name
    environment: dict[str, str]
    on_failure_queue: str | None = None
    async_retries: int = DEFAULT_ASYNC_RETRIES  # EventInvokeConfig.MaximumRetryAttempts
    deps: Any = None  # what the handler is given, built once like in a Lambda process (World.dependencies)
    _module: Any = None

    def _load(self) -> Any:
        """Load the handler module from its CodeUri like Lambda does (the file, not an installed module)."""
        if self._module is None:
            spec = importlib.util.spec_from_file_location(f"sandbox_handler_{self.logical_id}", self.source)
            if spec is None or spec.loader is None:
                raise RuntimeError(f"cannot load {self.source}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._module = module
        return self._module

    def handler(self) -> Callable[..., Any]:
        """The handler: ``handler(event, context, deps=...)``."""
        return getattr(self._load(), self.entry)  # type: ignore[no-any-return]

    @property
    def role(self) -> str:
        """The wiring role its handler declares (``sessiongate.wiring.REQUIRED`` key)."""
        return str(self._load().ROLE)


@dataclass
class World:
    parameters: dict[str, Any] = field(default_factory=dict)
    start: datetime = DEFAULT_START
    stack_name: str = "sessiongate"
    quiet: bool = True  # keep the handlers' JSON logs and EMF metrics off stdout

    def __post_init__(self) -> None:
        from moto import mock_aws

        self._saved_env = {k: os.environ.get(k) for k in _FAKE_CREDENTIALS}
        os.environ.update(_FAKE_CREDENTIALS)
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        self.clock = ManualClock(self.start)
        self.ssm = FakeSsm(clock=self.clock, group_members=self._group_members)
        self.calls: Counter[str] = Counter()
        self.invocations: list[Invocation] = []
        self.fired: list[Fired] = []
        self.faults = FaultInjector()
        self.retry_sleeps: list[float] = []
        self._periodic: list[list[Any]] = []  # [rule, target arn, period, next due, input]
        self._cloudtrail_rules: list[tuple[str, Any, str]] = []  # (rule, pattern, target arn)
        self._timers: list[tuple[datetime, int, Callable[[], None]]] = []  # what AWS does later on its own
        self._schedule_cache: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._streams: dict[str, str] = {}  # the template's stream ARN -> moto's
        self._pollers: list[StreamPoller] = []  # Lambda's event source mappings on those streams
        self._draining = False
        self._sns_lambda: dict[str, str] = {}  # SNS -> Lambda subscriptions: queue url -> function arn
        self.slack = FakeSlack()  # the workspace the chat functions talk to (issue 19)
        self._clients: dict[str, Any] = {}
        self.table_writes = 0  # DynamoDB calls that may add stream records (StreamPoller.poll)
        fake_iam.install()  # IAM's refusals moto lacks (protected roles, tag value pattern)
        self._mock = mock_aws()
        self._mock.start()
        try:
            self.stack = cfn.load(
                self.stack_name, ACCOUNT, REGION, {k: str(v) for k, v in self.parameters.items()}
            )
            self.functions: dict[str, Function] = {}
            self._rule_queues: dict[str, tuple[str, str]] = {}  # queue url -> (rule, function arn)
            self._build()
        except BaseException:
            self.close()
            raise
        # botocore's retry backoff sleeps for real; here it is recorded, and time stays virtual.
        import botocore.endpoint

        self._real_time = botocore.endpoint.time
        botocore.endpoint.time = _VirtualSleep(self.retry_sleeps)

    # -- AWS clients (moto), counted --------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A client for ``service``; SSM is the change-request fake in front of moto's SSM."""
        if service == "ssm":
            if self.ssm.fallback is None:
                self.ssm.attach(self._moto_client("ssm"))
            return self.ssm
        return self._moto_client(service)

    def _moto_client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            c = boto3.client(service, region_name=REGION, config=Config(**aws.RETRY_CONFIG))
            aws.extend_retries(c, service)
            c.meta.events.register("before-call.*.*", self._before_call)
            if service == "dynamodb":
                c.meta.events.register("before-call.dynamodb.*", self._count_table_write)
            self.faults.attach(c)
            self._clients[service] = c
        return self._clients[service]

    def _group_members(self, group: str) -> set[str]:
        """IAM group members (user ARNs), for the SSM fake's IamGroup approvers; read from IAM with an
        uncounted client (this is SSM's lookup, not a call SessionGate makes)."""
        if "iam-uncounted" not in self._clients:
            import boto3

            self._clients["iam-uncounted"] = boto3.client("iam", region_name=REGION)
        iam = self._clients["iam-uncounted"]
        try:
            users = iam.get_group(GroupName=group)["Users"]
        except iam.exceptions.NoSuchEntityException:
            return set()
        return {u["Arn"] for u in users}

    def _count_table_write(self, model: Any, **_: Any) -> None:
        """Every DynamoDB call but a read may add stream records (every table access goes through this
        world's one DynamoDB client): pollers read the streams again only after one."""
        if not model.name.startswith(_TABLE_READS):
            self.table_writes += 1

    def _before_call(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def close(self) -> None:
        import botocore.endpoint

        if hasattr(self, "_real_time"):
            botocore.endpoint.time = self._real_time
        self._mock.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resources from the template -------------------------------------------------------------
    def _build(self) -> None:
        """Create what the template declares, in dependency order (moto), then the functions and rules."""
        self._build_messaging()
        self._build_tables()
        self._build_buckets()
        self._build_iam()
        self._build_keys_and_parameters()
        self._build_functions()
        self._build_rules()
        self._build_stream_mappings()

    def _build_messaging(self) -> None:
        s, sqs, sns = self.stack, self.client("sqs"), self.client("sns")
        for r in s.of_type("AWS::SQS::Queue"):
            sqs.create_queue(QueueName=r.physical_id.rsplit("/", 1)[-1])
        for r in s.of_type("AWS::SNS::Topic"):
            sns.create_topic(Name=r.arn.rsplit(":", 1)[-1])
        # The lifecycle topic is tapped (an SQS subscriber) so the sandbox sees what subscribers see.
        topic = s.resources["NotificationTopic"].arn
        self.notification_tap = sqs.create_queue(QueueName="sandbox-tap-notifications")["QueueUrl"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=self._queue_arn(self.notification_tap))
        # SNS -> Lambda subscriptions (the chat notifier): an SQS queue with the subscription's filter
        # policy stands in for each; its messages are delivered to the function as SNS events.
        for r in s.of_type("AWS::SNS::Subscription"):
            p = r.properties
            if p.get("Protocol") != "lambda":
                continue
            url = sqs.create_queue(QueueName=f"sandbox-sns-{r.logical_id}"[:80])["QueueUrl"]
            attributes = {}
            if "FilterPolicy" in p:
                attributes["FilterPolicy"] = json.dumps(p["FilterPolicy"])
                attributes["FilterPolicyScope"] = p.get("FilterPolicyScope", "MessageAttributes")
            sns.subscribe(
                TopicArn=p["TopicArn"], Protocol="sqs", Endpoint=self._queue_arn(url), Attributes=attributes
            )
            self._sns_lambda[url] = p["Endpoint"]
        for r in s.of_type("AWS::Events::EventBus"):
            self.client("events").create_event_bus(Name=r.physical_id)
        for r in s.of_type("AWS::Scheduler::ScheduleGroup"):
            self.client("scheduler").create_schedule_group(Name=r.physical_id)

    def _build_tables(self) -> None:
        for r in self.stack.of_type("AWS::DynamoDB::Table"):
            p = r.properties
            kwargs: dict[str, Any] = {
                k: p[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode") if k in p
            }
            if "GlobalSecondaryIndexes" in p:
                kwargs["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
            if "StreamSpecification" in p:
                kwargs["StreamSpecification"] = {"StreamEnabled": True, **p["StreamSpecification"]}
            # Not created: the ResourcePolicy (moto does not evaluate resource policies; the handlers run
            # with the sandbox's credentials). tests/integration/test_engine_permissions.py evaluates it.
            table = self.client("dynamodb").create_table(TableName=r.physical_id, **kwargs)[
                "TableDescription"
            ]
            if "LatestStreamArn" in table:
                self._streams[f"{r.arn}/stream/{cfn.STREAM_LABEL}"] = table["LatestStreamArn"]

    def _build_buckets(self) -> None:
        """The buckets (the history export's), versioned as the template says. Not created: their
        policies, lifecycle and Object Lock (moto evaluates no bucket policy; the template tests and
        tests/integration/test_history_export.py check them)."""
        s3 = self.client("s3")
        for r in self.stack.of_type("AWS::S3::Bucket"):
            s3.create_bucket(Bucket=r.physical_id)
            if r.properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=r.physical_id, VersioningConfiguration={"Status": "Enabled"})

    def _build_iam(self) -> None:
        iam = self.client("iam")
        for r in self.stack.of_type("AWS::IAM::ManagedPolicy"):
            iam.create_policy(
                PolicyName=r.arn.rsplit("/", 1)[-1], PolicyDocument=json.dumps(r.properties["PolicyDocument"])
            )
        for r in self.stack.of_type("AWS::IAM::Role"):
            p = r.properties
            iam.create_role(
                RoleName=r.physical_id,
                Path=p.get("Path", "/"),
                AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]),
            )
            for policy in p.get("Policies", []):
                # SAM's generated OnFailure policies carry no Version (IAM then assumes 2008-10-17,
                # which moto refuses); ours all say 2012-10-17.
                document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
                iam.put_role_policy(
                    RoleName=r.physical_id,
                    PolicyName=policy["PolicyName"],
                    PolicyDocument=json.dumps(document),
                )

    def _build_keys_and_parameters(self) -> None:
        s, kms = self.stack, self.client("kms")
        for r in s.of_type("AWS::KMS::Key"):
            p = r.properties
            key_id = kms.create_key(
                KeySpec=p.get("KeySpec", "SYMMETRIC_DEFAULT"),
                KeyUsage=p.get("KeyUsage", "ENCRYPT_DECRYPT"),
                Policy=json.dumps(p["KeyPolicy"]),
            )["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=r.arn.split(":", 5)[5], TargetKeyId=key_id)
        for r in s.of_type("AWS::SSM::Parameter"):
            p = r.properties
            self.client("ssm").put_parameter(Name=r.physical_id, Value=str(p["Value"]), Type=p["Type"])
        for r in s.of_type("AWS::SSM::Document"):
            self.ssm.register_document(r.physical_id, r.properties["DocumentType"], r.properties["Content"])
        # The template creates secrets with a random placeholder; the deployers put the real values (the
        # Slack app's: the sandbox's Slack, sandbox/fake_slack.py).
        for r in s.of_type("AWS::SecretsManager::Secret"):
            value = fake_slack.SECRETS.get(r.logical_id, f"placeholder-{r.logical_id}")
            self.client("secretsmanager").create_secret(Name=r.properties["Name"], SecretString=value)
        # Not created: AWS::Lambda::CodeSigningConfig (optional; the sandbox runs each handler from its
        # CodeUri, there is no deployment package to sign) and the alarms (no CloudWatch evaluation).

    def _build_rules(self) -> None:
        for r in self.stack.of_type("AWS::Events::Rule"):
            if r.properties.get("EventPattern", {}).get("detail-type") == [CLOUDTRAIL_API_CALL]:
                # Only the rules that invoke a SessionGate function (the reconciler's SlotTagChanges) are
                # kept: the sandbox records the API calls a scenario makes by hand (``tamper``) through
                # ``record_api_call``. The SecurityAlert rules (targets: the alarm topic) are not created;
                # their patterns are tested in tests/integration/test_security_controls.py.
                for target in r.properties["Targets"]:
                    if target["Arn"] in self.functions:
                        self._cloudtrail_rules.append(
                            (r.logical_id, r.properties["EventPattern"], target["Arn"])
                        )
                continue
            self._build_rule(r)

    def _build_functions(self) -> None:
        invoke_configs = {
            r.properties["FunctionName"]: r.properties
            for r in self.stack.of_type("AWS::Lambda::EventInvokeConfig")
        }
        for r in self.stack.of_type("AWS::Lambda::Function"):
            code = r.properties["Code"]["S3Key"].strip("/")  # e.g. functions/grant_access
            module, entry = r.properties["Handler"].rsplit(".", 1)
            env = {k: str(v) for k, v in r.properties.get("Environment", {}).get("Variables", {}).items()}
            config = invoke_configs.get(r.physical_id, {})
            failure = config.get("DestinationConfig", {}).get("OnFailure", {})
            queue = failure.get("Destination")
            if self.quiet:
                # Logs off; EMF metric lines (printed to stdout, as in Lambda) are captured per
                # invocation. (POWERTOOLS_METRICS_DISABLED would keep every metric in memory.)
                env["POWERTOOLS_LOG_LEVEL"] = "CRITICAL"
            self.functions[r.arn] = Function(
                logical_id=r.logical_id,
                name=r.physical_id,
                arn=r.arn,
                source=cfn.ROOT / code / f"{module}.py",
                entry=entry,
                environment=env,
                on_failure_queue=self._queue_url(queue) if queue else None,
                async_retries=int(config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)),
            )

    def _build_stream_mappings(self) -> None:
        """Lambda's event source mappings on the tables' streams: read (uncounted: Lambda reads, not
        SessionGate) and delivered to their function after every invocation (see :meth:`drain_streams`)."""
        import boto3

        # botocore sends stream calls to an account endpoint (<account>.streams-ddb...) moto 5.2 does not
        # serve: the regional endpoint is the same API.
        reader = boto3.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
        )
        for r in self.stack.of_type("AWS::Lambda::EventSourceMapping"):
            p = r.properties
            source = p["EventSourceArn"]
            if source not in self._streams:
                continue
            function = next(f for f in self.functions.values() if f.name == p["FunctionName"])
            failure = p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            self._pollers.append(
                StreamPoller(
                    reader,
                    source,
                    self._streams[source],
                    function.arn,
                    patterns=[
                        json.loads(f["Pattern"]) for f in p.get("FilterCriteria", {}).get("Filters", [])
                    ],
                    batch_size=int(p.get("BatchSize", 100)),
                    retries=int(p.get("MaximumRetryAttempts", -1)),
                    on_failure_queue=self._queue_url(failure) if failure else None,
                )
            )

    def drain_streams(self) -> None:
        """What Lambda's stream pollers do within a second of a write: deliver the new stream records to
        their function, in order; a batch that reports failures is retried from its first failed
        record at the next drain, and after the mapping's retries its record goes to the on-failure
        queue (as a failed invocation of the report)."""
        if self._draining:
            return
        self._draining = True
        try:
            for poller in self._pollers:
                poller.poll(self)
            self._deliver_sns()
        finally:
            self._draining = False

    def _deliver_sns(self) -> None:
        """SNS invokes its Lambda subscribers (asynchronously) with each message that passes the filter.
        Read with a client of its own (uncounted, unrecorded: SNS delivers, not SessionGate)."""
        if not self._sns_lambda:
            return
        import boto3

        sqs = boto3.client("sqs", region_name=REGION)
        for url, function_arn in self._sns_lambda.items():
            for message in self._receive(sqs, url):
                body = json.loads(message["Body"])
                record = {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": f"{body['TopicArn']}:sandbox",
                    "Sns": {
                        "Type": body["Type"],
                        "MessageId": body["MessageId"],
                        "TopicArn": body["TopicArn"],
                        "Subject": body.get("Subject"),
                        "Message": body["Message"],
                        "Timestamp": body["Timestamp"],
                        "MessageAttributes": {
                            k: {"Type": v["Type"], "Value": v["Value"]}
                            for k, v in body.get("MessageAttributes", {}).items()
                        },
                    },
                }
                self.invoke(function_arn, {"Records": [record]}, trigger="sns")

    @contextlib.contextmanager
    def _environment(self, function: Function) -> Iterator[None]:
        """Run with exactly ``function``'s own environment variables, as Lambda gives each function.

        Variables of the other functions are removed meanwhile, so a setting that only another
        function declares is missing here too (as it would be when deployed).
        """
        others = {k for f in self.functions.values() for k in f.environment} - set(function.environment)
        saved = {k: os.environ.get(k) for k in others | set(function.environment)}
        for key in others:
            os.environ.pop(key, None)
        os.environ.update(function.environment)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def function(self, logical_id: str) -> Function:
        return next(f for f in self.functions.values() if f.logical_id == logical_id)

    def dependencies(self, function: Function) -> Any:
        """What ``function``'s handler is given, built as its Lambda process would on the first
        invocation: from its own environment, but with the world's clock and (moto) clients; then kept."""
        if function.deps is None:
            with self._environment(function):
                # The chat functions talk to the sandbox's Slack (slack-sdk's clients otherwise).
                slack = (self.slack.web, self.slack.webhook) if function.role.startswith("chat") else None
                function.deps = wiring.build(
                    function.role, os.environ, clock=self.clock, client=self.client, slack=slack
                )
        return function.deps

    def engine(self, role: str) -> Any:
        """The engine the function of ``role`` uses (built from its own environment), e.g. ``revoke``."""
        deps = self.dependencies(self.function(ROLE_FUNCTIONS[role]))
        return deps.recorder if role == "adapter" else deps

    def _build_rule(self, r: cfn.Resource) -> None:
        p = r.properties
        if "ScheduleExpression" in p:
            # Scheduled rules (the reconciler) fire on the virtual clock.
            period = rate_period(p["ScheduleExpression"])
            for target in p["Targets"]:
                self._periodic.append(
                    [r.logical_id, target["Arn"], period, self.clock.now() + period, target.get("Input")]
                )
            return
        bus = p.get("EventBusName", "default")
        events, sqs = self.client("events"), self.client("sqs")
        events.put_rule(Name=r.physical_id, EventBusName=bus, EventPattern=json.dumps(p["EventPattern"]))
        for target in p["Targets"]:
            # moto matches the template's pattern and delivers to this queue; the router invokes the target.
            url = sqs.create_queue(QueueName=f"sandbox-rule-{r.logical_id}"[:80])["QueueUrl"]
            events.put_targets(
                Rule=r.physical_id,
                EventBusName=bus,
                Targets=[{"Id": target["Id"], "Arn": self._queue_arn(url)}],
            )
            self._rule_queues[url] = (r.logical_id, target["Arn"])

    # -- delivery --------------------------------------------------------------------------------
    def invoke(self, function_arn: str, event: Any, *, trigger: str, sync: bool = False) -> Invocation:
        """Invoke a function as Lambda does: asynchronously (retries, then the OnFailure queue), or
        synchronously (``sync``, as API Gateway does: one attempt, the caller sees the error)."""
        function = self.functions[function_arn]
        context = _LambdaContext(function.name, function.arn)
        invocation = Invocation(self.clock.now(), function.logical_id, trigger)
        before, ssm_before = Counter(self.calls), len(self.ssm.calls)
        for _attempt in range(1 if sync else 1 + function.async_retries):
            try:
                with (
                    contextlib.redirect_stdout(io.StringIO()) if self.quiet else contextlib.nullcontext(),
                    self._environment(function),
                ):
                    invocation.result = function.handler()(
                        json.loads(json.dumps(event)), context, deps=self.dependencies(function)
                    )
                invocation.error = None
                break
            except Exception as exc:  # noqa: BLE001 - a Lambda runtime catches everything the handler raises
                invocation.error = f"{type(exc).__name__}: {exc}"
                invocation.result = traceback.format_exception_only(exc)[-1].strip()
        # moto keeps every model instance it ever built for its server dashboard, including the full
        # table copy DynamoDB makes for each TransactWriteItems: drop those references.
        reset_model_data()
        invocation.calls = self.calls - before
        invocation.calls.update(f"ssm:{op}" for op in self.ssm.calls[ssm_before:])
        if invocation.error and function.on_failure_queue and not sync:
            self.client("sqs").send_message(
                QueueUrl=function.on_failure_queue,
                MessageBody=json.dumps({"requestPayload": event, "errorMessage": invocation.error}),
            )
        self.invocations.append(invocation)
        # The changes it made reach the stream consumers (lifecycle notifications) right after.
        self.drain_streams()
        return invocation

    def settle(self, limit: int = 1000) -> None:
        """Deliver routed events until none are left."""
        sqs = self.client("sqs")
        for _ in range(limit):
            delivered = False
            for url, (rule, target) in self._rule_queues.items():
                for message in self._receive(sqs, url):
                    self.invoke(target, json.loads(message["Body"]), trigger=f"rule {rule}")
                    delivered = True
            if not delivered:
                return
        raise RuntimeError("events kept flowing: the system did not settle")

    def record_api_call(self, detail: dict[str, Any]) -> None:
        """CloudTrail records an API call made outside SessionGate (``detail``: the CloudTrail record) and
        EventBridge delivers it to the matching rules with SessionGate targets at the next clock step
        (CloudTrail management events reach EventBridge in about a minute or less: best effort)."""
        source = str(detail["eventSource"]).split(".")[0]
        event = {
            "version": "0",
            "id": f"sandbox-cloudtrail-{len(self.invocations)}",
            "detail-type": CLOUDTRAIL_API_CALL,
            "source": f"aws.{source}",
            "account": ACCOUNT,
            "time": to_iso(self.clock.now()),
            "region": REGION,
            "resources": [],
            "detail": {"recipientAccountId": ACCOUNT, **detail},
        }
        for rule, pattern, target in self._cloudtrail_rules:
            if _pattern_matches(pattern, event):
                self.at(self.clock.now(), functools.partial(self._deliver, target, event, f"rule {rule}"))

    def _deliver(self, target: str, event: dict[str, Any], trigger: str) -> None:
        self.invoke(target, event, trigger=trigger)

    def put_event(self, entry: dict[str, Any]) -> None:
        result = self.client("events").put_events(Entries=[entry])
        if result.get("FailedEntryCount"):
            raise RuntimeError(f"put_events failed: {result}")

    # -- time ------------------------------------------------------------------------------------
    def advance(self, delta: timedelta, *, step: timedelta = timedelta(seconds=30)) -> None:
        """Move the virtual clock, firing due schedules at each step (Scheduler's ~1 minute precision)."""
        end = self.clock.now() + delta
        self.settle()
        while self.clock.now() < end:
            self.clock.set(min(end, self.clock.now() + step))
            self.fire_due()
            self.settle()
            self.drain_streams()  # stream consumers retry failed batches as time goes on

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Something an AWS service does later on its own (e.g. Change Manager starting the runbook and
        publishing the status change): run ``action`` once the virtual clock reaches ``when``."""
        self._timers.append((when, len(self._timers), action))

    def fire_due(self) -> list[Fired]:
        due_timers = sorted(t for t in self._timers if t[0] <= self.clock.now())
        self._timers = [t for t in self._timers if t[0] > self.clock.now()]
        for _when, _order, action in due_timers:
            action()
        scheduler = self.client("scheduler")
        fired = []
        for periodic in self._periodic:
            rule, target, period, due, constant = periodic
            while due <= self.clock.now():
                # A target's Input replaces the scheduled event (EventBridge, "Transforming target input").
                event = json.loads(constant) if constant else _scheduled_event(rule, due)
                self.invoke(target, event, trigger=f"rule {rule}")
                due += period
            periodic[3] = due
        for group in self.stack.of_type("AWS::Scheduler::ScheduleGroup"):
            summaries = [
                summary
                for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group.physical_id)
                for summary in page["Schedules"]
            ]
            for summary in summaries:
                # get_schedule once per schedule version: the sandbox lists often, schedules rarely change.
                key = (group.physical_id, summary["Name"], str(summary.get("LastModificationDate")))
                if key not in self._schedule_cache:
                    self._schedule_cache[key] = scheduler.get_schedule(
                        Name=summary["Name"], GroupName=group.physical_id
                    )
                schedule = self._schedule_cache[key]
                due = schedule_due(schedule)
                if due is None or due > self.clock.now() or schedule.get("State") == "DISABLED":
                    continue
                target = schedule["Target"]
                self.invoke(
                    target["Arn"],
                    json.loads(target.get("Input", "{}")),
                    trigger=f"schedule {schedule['Name']}",
                )
                record = Fired(schedule["Name"], due, self.clock.now())
                self.fired.append(record)
                fired.append(record)
                self._schedule_cache.pop(key, None)
                if schedule.get("ActionAfterCompletion") == "DELETE":
                    scheduler.delete_schedule(Name=schedule["Name"], GroupName=group.physical_id)
        return fired

    # -- observation -----------------------------------------------------------------------------
    def notifications(self) -> list[dict[str, Any]]:
        self.drain_streams()
        out = []
        for message in self._receive(self.client("sqs"), self.notification_tap):
            body = json.loads(message["Body"])
            out.append(
                {
                    "subject": body.get("Subject"),
                    "attributes": {k: v["Value"] for k, v in body.get("MessageAttributes", {}).items()},
                    "message": json.loads(body["Message"]),
                }
            )
        return out

    def function_arn(self, logical_id: str) -> str:
        return self.stack.resources[logical_id].arn

    def _receive(self, sqs: Any, url: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return out
            for m in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            out += messages

    def _queue_arn(self, url: str) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url.rsplit('/', 1)[-1]}"

    def _queue_url(self, arn: str) -> str:
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{arn.rsplit(':', 1)[-1]}"


# DynamoDB operations that never add a stream record.
_TABLE_READS = ("Get", "BatchGet", "TransactGet", "Query", "Scan", "Describe", "List")


@dataclass
class StreamPoller:
    """One event source mapping on a DynamoDB stream: reads the shards from where it left off and
    invokes the function with the records its filter criteria let through (Lambda's event shape)."""

    reader: Any
    template_arn: str  # the stream ARN the template's resources name (eventSourceARN)
    stream_arn: str  # moto's
    function_arn: str
    patterns: list[dict[str, Any]]
    batch_size: int
    retries: int  # MaximumRetryAttempts (-1: until the record expires)
    on_failure_queue: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # read, not yet delivered
    attempts: int = 0  # failed deliveries of pending[0]
    failed_at: datetime | None = None  # when the last delivery failed: retried once time has moved on
    _read: set[str] = field(default_factory=set)  # eventIDs already read
    _last: dict[str, str] = field(default_factory=dict)  # shard -> the last sequence number read
    _writes_read: int = -1  # world.table_writes when the streams were last read

    def poll(self, world: World) -> None:
        if world.table_writes != self._writes_read:  # no table changed since: no new record to read
            self._writes_read = world.table_writes
            self.pending += self._new_records()
        if self.failed_at is not None and world.clock.now() <= self.failed_at:
            return  # Lambda backs off before retrying a failed batch: not within the same instant
        self.failed_at = None
        while self.pending:
            batch = self.pending[: self.batch_size]
            invocation = world.invoke(self.function_arn, {"Records": batch}, trigger="stream", sync=True)
            failed = {f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures", [])}
            if invocation.error:
                failed = {r["dynamodb"]["SequenceNumber"] for r in batch}
            done = next(
                (i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed), len(batch)
            )
            self.pending = self.pending[done:]
            if done:
                self.attempts = 0
            if done == len(batch):
                continue
            self.attempts += 1
            if self.retries < 0 or self.attempts <= self.retries:
                self.failed_at = world.clock.now()
                return  # retried at a later drain
            discarded = self.pending.pop(0)
            self.attempts = 0
            if self.on_failure_queue:
                world.client("sqs").send_message(
                    QueueUrl=self.on_failure_queue,
                    MessageBody=json.dumps(
                        {
                            "DDBStreamBatchInfo": {
                                "streamArn": self.template_arn,
                                "startSequenceNumber": discarded["dynamodb"]["SequenceNumber"],
                            }
                        }
                    ),
                )
            world.invocations.append(
                Invocation(
                    world.clock.now(), invocation.function, "stream", error="record discarded after retries"
                )
            )

    def _new_records(self) -> list[dict[str, Any]]:
        """The records not read before, in order. Each shard is read with a fresh iterator after the
        last sequence number read (from its start the first time): moto restores a table from a copy
        when a TransactWriteItems is cancelled, and an iterator taken before would go on reading the
        discarded copy (which also holds the records of the cancelled writes, which DynamoDB never
        streams). Not from the start every time: a long scenario would re-read every record at each
        invocation."""
        records = []
        shards = self.reader.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            where: dict[str, str] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._last[shard_id]}
                if shard_id in self._last
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self.reader.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id, **where)[
                "ShardIterator"
            ]
            while iterator:
                answer = self.reader.get_records(ShardIterator=iterator)
                fresh = [r for r in answer["Records"] if r["eventID"] not in self._read]
                self._read.update(r["eventID"] for r in fresh)
                if answer["Records"]:
                    self._last[shard_id] = answer["Records"][-1]["dynamodb"]["SequenceNumber"]
                records += [self._as_lambda_record(r) for r in fresh]
                iterator = answer.get("NextShardIterator") if answer["Records"] else None
        return [r for r in records if not self.patterns or any(_pattern_matches(p, r) for p in self.patterns)]

    def _as_lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        change = dict(record["dynamodb"])
        change["ApproximateCreationDateTime"] = change["ApproximateCreationDateTime"].timestamp()
        return {**record, "dynamodb": change, "eventSourceARN": self.template_arn}


class _VirtualSleep:
    """Stands in for the ``time`` module inside botocore.endpoint: retries do not wait for real."""

    def __init__(self, sleeps: list[float]) -> None:
        self._sleeps = sleeps

    def sleep(self, seconds: float) -> None:
        self._sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)


def rate_period(expression: str) -> timedelta:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not match:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    unit = match.group(2).rstrip("s") + "s"
    return timedelta(**{unit: int(match.group(1))})


def _pattern_matches(pattern: Any, event: dict[str, Any]) -> bool:
    """EventBridge's matcher on an event pattern, with arrays of objects matched field by field as
    EventBridge does (aws/event-ruler, "Arrays"); moto's matcher does not, so they are flattened first."""
    from moto.events.models import EventPattern

    def flatten(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: flatten(v) for k, v in node.items()}
        if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
            keys = {k for item in node for k in item}
            return {k: [flatten(item[k]) for item in node if k in item] for k in keys}
        return node

    return bool(EventPattern.load(json.dumps(pattern)).matches_event(flatten(event)))


def _scheduled_event(rule: str, at: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"sandbox-{rule}-{int(at.timestamp())}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": to_iso(at),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def schedule_due(schedule: dict[str, Any]) -> datetime | None:
    """When a one-time ``at()`` schedule is due, honouring ``ScheduleExpressionTimezone``."""
    expression = schedule.get("ScheduleExpression", "")
    if not (expression.startswith("at(") and expression.endswith(")")):
        return None
    local = datetime.fromisoformat(expression[3:-1])
    zone = ZoneInfo(schedule.get("ScheduleExpressionTimezone") or "UTC")
    return local.replace(tzinfo=zone).astimezone(UTC)


__all__ = ["ACCOUNT", "REGION", "World", "schedule_due", "to_iso"]
