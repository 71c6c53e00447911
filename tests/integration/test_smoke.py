"""The opt-in smoke run (``smoke/``), offline: its plan, its refusals, and its teardown against moto.

``sam`` is a subprocess: the tests replace it with a fake that records the exact command lines and,
like the real one, creates or deletes the CloudFormation stack (in moto).
"""

from __future__ import annotations

import copy
import functools
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from moto import mock_aws

from sandbox import cfn
from sandbox.cfn import _Resolver
from sandbox.policy import _doc, _resolve_condition_variables, principal_node
from sessiongate_cli.client import CliError, Response
from smoke import state as state_file
from smoke.__main__ import main
from smoke.plan import DEFAULT_OTHER_INSTANCE, InputError, approver_arn, read_inputs
from smoke.run import KEY_RETRY_DELAYS, Deps, Smoke, run
from smoke.state import State
from tests.support.native import Gateway
from tests.support.template import template

from principalmapper.common import Policy  # isort: skip  (after sandbox.policy, which patches collections)
from principalmapper.querying.query_interface import local_check_authorization_full  # isort: skip

ACCOUNT = "123456789012"  # moto's account
INSTANCE = "i-0123456789abcdef0"
REGION = "us-east-1"
SAM = "/opt/sam/bin/sam"


class FakeCloudFormation:
    """The CloudFormation calls the run and its teardown make (moto's needs extras this repo does not
    install): requests and responses validated against botocore's model, like ``Stubber``; a stack that
    does not exist is a ``ValidationError`` ("Stack with id X does not exist", DescribeStacks API
    reference), which ends the ``stack_delete_complete`` waiter successfully."""

    def __init__(self) -> None:
        self.stacks: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, list[dict[str, Any]]] = {}
        self._params: dict[str, Any] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.cloudformation.*", self._request)
        client.meta.events.register("before-call.cloudformation.*", self._answer)

    def _request(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        validate_parameters(params, model.input_shape)
        self._params = dict(params)

    def _answer(self, model: Any, **_: Any) -> Any:
        name = self._params.get("StackName", "")
        if name not in self.stacks:
            error = {"Error": {"Code": "ValidationError", "Message": f"Stack with id {name} does not exist"}}
            return AWSResponse(None, 400, {}, None), error
        if model.name == "DescribeStacks":
            parsed: dict[str, Any] = {"Stacks": [self.stacks[name]]}
        elif model.name == "ListStackResources":
            parsed = {"StackResourceSummaries": self.resources[name]}
        else:
            raise AssertionError(f"unexpected CloudFormation call {model.name}")
        validate_parameters(parsed, model.output_shape)
        return AWSResponse(None, 200, {}, None), parsed


CFN = FakeCloudFormation()
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}],
}
INVOKE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}],
}


class FakeSam:
    """Records each command. Like the real template, deploy creates two managed policies, the topic and
    two DynamoDB tables (in moto) and the stack's outputs; delete deletes them but the tables
    (``DeletionPolicy: Retain``), and fails as CloudFormation does (DELETE_FAILED, exit 1) while a
    policy is still attached to someone."""

    def __init__(
        self, *, deploy: int = 0, delete: int = 0, operator_policy: dict[str, Any] | None = None
    ) -> None:
        self.commands: list[list[str]] = []
        self.codes = {"build": 0, "deploy": deploy, "delete": delete}
        self.operator_policy = operator_policy or POLICY

    def __call__(self, command: list[str]) -> int:
        self.commands.append(command)
        verb = command[1]
        if verb == "deploy":
            self._deploy(command[command.index("--stack-name") + 1])
        if verb == "delete" and self.codes["delete"] == 0:
            return self._delete(command[command.index("--stack-name") + 1])
        return self.codes[verb]

    def _deploy(self, stack: str) -> None:
        iam = boto3.client("iam")
        policies = [
            iam.create_policy(PolicyName=f"{stack}-{n}", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
            for n, doc in (("operator", self.operator_policy), ("invoke", INVOKE))
        ]
        topic = boto3.client("sns").create_topic(Name=stack)["TopicArn"]
        ddb = boto3.client("dynamodb")
        tables = [f"{stack}-GrantsTable-1A2B", f"{stack}-RequestsTable-3C4D"]
        for table in tables:
            ddb.create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        CFN.resources[stack] = [
            {
                "LogicalResourceId": table.split("-")[-2],
                "PhysicalResourceId": table,
                "ResourceType": "AWS::DynamoDB::Table",
                "LastUpdatedTimestamp": datetime.now(UTC),
                "ResourceStatus": "CREATE_COMPLETE",
            }
            for table in tables
        ]
        outputs = {
            "RequestApiEndpoint": "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1",
            "OperatorPolicyArn": policies[0],
            "RequestApiInvokePolicyArn": policies[1],
            "NotificationTopicArn": topic,
        }
        CFN.stacks[stack] = {
            "StackName": stack,
            "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/1",
            "CreationTime": datetime.now(UTC),
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
        }

    def _delete(self, stack: str) -> int:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in CFN.stacks[stack]["Outputs"]}
        iam = boto3.client("iam")
        try:
            for key in ("OperatorPolicyArn", "RequestApiInvokePolicyArn"):
                iam.delete_policy(PolicyArn=outputs[key])
        except ClientError:
            return 1
        boto3.client("sns").delete_topic(TopicArn=outputs["NotificationTopicArn"])
        del CFN.stacks[stack], CFN.resources[stack]
        return 0


class Session:
    """The caller's boto3 session on moto. CloudFormation is the fake above; SSM (not in moto) answers
    DescribeInstanceInformation through botocore's Stubber; ``fail`` refuses one operation (an
    injected failure)."""

    def __init__(
        self,
        credentials: dict[str, str] | None = None,
        *,
        managed: bool = True,
        fail: str = "",
        simulator: Any = None,
        gateway: Any = None,
    ) -> None:
        self._boto = boto3.session.Session(region_name=REGION, **(credentials or {}))
        self.managed = managed
        self.fail = fail
        self.simulator = simulator
        self.gateway = gateway

    def _new_key(self, parsed: dict[str, Any], **_: Any) -> None:
        """The gateway learns each new access key (as API Gateway knows IAM's keys)."""
        key = parsed["AccessKey"]
        arn = f"arn:aws:iam::{ACCOUNT}:user/{key['UserName']}"
        self.gateway.keys[key["AccessKeyId"]] = (key["SecretAccessKey"], arn)

    def client(self, service: str, config: Any = None) -> Any:
        client = self._boto.client(service, config=config)
        if service == "cloudformation":
            CFN.attach(client)
        if service == "iam" and self.simulator is not None:
            self.simulator.attach(client)
        if service == "iam" and self.gateway is not None:
            client.meta.events.register("after-call.iam.CreateAccessKey", self._new_key)
        if service == "ssm":
            stubber = Stubber(client)
            found = [{"InstanceId": INSTANCE, "PingStatus": "Online"}] if self.managed else []
            stubber.add_response(
                "describe_instance_information",
                {"InstanceInformationList": found},
                {"Filters": [{"Key": "InstanceIds", "Values": [INSTANCE]}]},
            )
            stubber.activate()
        if self.fail.startswith(f"{service}."):

            def refuse(**_: Any) -> None:
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, self.fail)

            client.meta.events.register(f"before-call.{self.fail}", refuse)
        return client

    def get_credentials(self) -> Any:
        return self._boto.get_credentials()


class RefusingApi:
    """The request API refusing the operator's request (400): a step that fails mid-run."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.operator_keys: list[str] = []

    def send(self, request: Any) -> Response:
        self.requests.append(request)
        iam = boto3.client("iam")
        for user in iam.list_users()["Users"]:
            keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
            self.operator_keys += [k["AccessKeyId"] for k in keys]
        body = {"error": "bad_request", "message": "instance_id is not usable"}
        return Response(400, json.dumps(body).encode())


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield
    CFN.stacks.clear()
    CFN.resources.clear()


@pytest.fixture
def approver(aws: None) -> dict[str, str]:
    """Credentials of a role session (the usual caller), so the approver is the role's ARN."""
    iam = boto3.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="SmokeApprover", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    creds = boto3.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="me")["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SESSIONGATE_SMOKE_ACCOUNT": ACCOUNT,
        "SESSIONGATE_SMOKE_INSTANCE": INSTANCE,
        "SESSIONGATE_SMOKE_STATE": str(tmp_path / "state.json"),
        "AWS_DEFAULT_REGION": REGION,
        **extra,
    }


def _main(argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err, **kwargs)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ the plan
def test_plan_lists_what_it_creates_and_calls_without_touching_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_aws(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the plan made an AWS session")

    monkeypatch.setattr(boto3.session, "Session", no_aws)
    code, out, _ = _main(["--sam", SAM, "plan"], env=_env(tmp_path))
    assert code == 0
    plan = json.loads(out)
    stack = plan["stack_name"]
    assert stack.startswith("sessiongate-smoke-")
    assert len(stack) == len("sessiongate-smoke-") + 8
    assert plan["other_instance_id"] == DEFAULT_OTHER_INSTANCE
    build, deploy = plan["commands"]
    assert build == [SAM, "build", "--template-file", "template.yaml", "--build-dir", ".aws-sam/smoke-build"]
    assert deploy[:4] == [SAM, "deploy", "--template-file", ".aws-sam/smoke-build/template.yaml"]
    overrides = deploy[deploy.index("--parameter-overrides") + 1 : deploy.index("--tags")]
    assert f"NotificationTopicName={stack}" in overrides
    assert "EnableChangeManager=false" in overrides
    assert any(o.startswith("NativeApproverArns=<caller ARN") for o in overrides)
    assert any("sg-smoke-operator-" in c for c in plan["creates"])
    assert f"{SAM} delete --stack-name {stack} --region {REGION} --no-prompts" in plan["teardown"]


def test_plan_runs_without_any_input(tmp_path: Path) -> None:
    code, out, _ = _main(["plan"], env={})
    assert code == 0
    assert json.loads(out)["account"] == "<SESSIONGATE_SMOKE_ACCOUNT>"


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SESSIONGATE_SMOKE_ACCOUNT": ""}, "SESSIONGATE_SMOKE_ACCOUNT is not set"),
        ({"SESSIONGATE_SMOKE_ACCOUNT": "12345"}, "is not the 12-digit id"),
        ({"SESSIONGATE_SMOKE_INSTANCE": ""}, "SESSIONGATE_SMOKE_INSTANCE is not set"),
        ({"SESSIONGATE_SMOKE_INSTANCE": "web-1"}, "is not the id of an existing SSM managed instance"),
        ({"SESSIONGATE_SMOKE_OTHER_INSTANCE": INSTANCE}, "must differ"),
        ({"AWS_DEFAULT_REGION": ""}, "no AWS region"),
    ],
)
def test_missing_or_wrong_input_exits_2_before_any_call(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    sam = FakeSam()
    code, out, err = _main(["run"], env=_env(tmp_path) | change, runner=sam, session=object())
    assert code == 2
    assert message in err
    assert out == ""
    assert sam.commands == []


def test_refuses_an_account_other_than_the_one_named(tmp_path: Path, approver: dict[str, str]) -> None:
    sam = FakeSam()
    env = _env(tmp_path, SESSIONGATE_SMOKE_ACCOUNT="111122223333")
    code, _, err = _main(["run"], env=env, runner=sam, session=Session(approver), transport=RefusingApi())
    assert code == 2
    assert f"the caller's account is {ACCOUNT}, not SESSIONGATE_SMOKE_ACCOUNT=111122223333" in err
    assert sam.commands == []
    assert not (tmp_path / "state.json").exists()
    assert boto3.client("iam").list_users()["Users"] == []


def test_refuses_an_account_that_already_runs_sessiongate(tmp_path: Path, approver: dict[str, str]) -> None:
    boto3.client("iam").create_policy(
        PolicyName="AllowStartSsmSessionBasedOnIamTags",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}],
            }
        ),
    )
    sam = FakeSam()
    code, _, err = _main(["run"], env=_env(tmp_path), runner=sam, session=Session(approver))
    assert code == 2
    assert "AllowStartSsmSessionBasedOnIamTags already exists" in err
    assert sam.commands == []


def test_refuses_an_instance_that_is_not_managed(tmp_path: Path, approver: dict[str, str]) -> None:
    sam = FakeSam()
    code, _, err = _main(["run"], env=_env(tmp_path), runner=sam, session=Session(approver, managed=False))
    assert code == 2
    assert f"{INSTANCE} is not an SSM managed instance" in err
    assert sam.commands == []


# ------------------------------------------------------------------------------------------ teardown
def _gone(call: Any, code: str) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == code
    return False


def _assert_all_gone(stack: str, user: str) -> None:
    iam = boto3.client("iam")
    assert _gone(lambda: iam.get_user(UserName=user), "NoSuchEntity")
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []
    assert boto3.client("sns").list_subscriptions()["Subscriptions"] == []
    assert stack not in CFN.stacks
    assert boto3.client("iam").list_policies(Scope="Local")["Policies"] == []
    assert boto3.client("sns").list_topics()["Topics"] == []
    assert boto3.client("dynamodb").list_tables()["TableNames"] == []


def test_a_failing_step_mid_run_still_deletes_everything_it_created(
    tmp_path: Path, approver: dict[str, str]
) -> None:
    sam, api = FakeSam(), RefusingApi()
    code, out, _ = _main(
        ["--sam", SAM, "run"], env=_env(tmp_path), runner=sam, session=Session(approver), transport=api
    )
    assert code == 1
    report = json.loads((next(tmp_path.glob("report-*.json"))).read_text())
    stack = report["stack_name"]
    suffix = stack.removeprefix("sessiongate-smoke-")
    assert report["ok"] is False, report["steps"]
    assert report["failed_step"] == "operator requests 2 min on the instance", report["steps"]
    assert [s["name"] for s in report["steps"] if s["ok"]] == [
        "sam build",
        "sam deploy",
        "create the operator (temporary IAM user)",
        "subscribe a queue to the notification topic",
    ]
    # The operator signed with its own new key; the caller was named approver by its role's ARN.
    [request] = api.requests
    [key] = api.operator_keys
    assert f"Credential={key}/" in str(request.headers["Authorization"])
    assert "/us-east-1/execute-api/aws4_request" in str(request.headers["Authorization"])
    deploy = sam.commands[1]
    assert f"NativeApproverArns=arn:aws:iam::{ACCOUNT}:role/SmokeApprover" in deploy
    assert sam.commands == [
        [SAM, "build", "--template-file", "template.yaml", "--build-dir", ".aws-sam/smoke-build"],
        deploy,
        [SAM, "delete", "--stack-name", stack, "--region", REGION, "--no-prompts"],
    ]
    assert [(t["name"], t["ok"]) for t in report["teardown"]] == [
        (f"delete access keys of sg-smoke-operator-{suffix}", True),
        (f"detach policies from sg-smoke-operator-{suffix}", True),
        (f"delete user sg-smoke-operator-{suffix}", True),
        ("unsubscribe the queue", True),
        (f"delete queue {report['teardown'][4]['name'].split(' ', 2)[2]}", True),
        (f"delete stack {stack}", True),
        (f"delete retained table {stack}-GrantsTable-1A2B", True),
        (f"delete retained table {stack}-RequestsTable-3C4D", True),
    ]
    _assert_all_gone(stack, f"sg-smoke-operator-{suffix}")
    assert not (tmp_path / "state.json").exists()
    calls = report["aws_calls"]["by_operation"]
    assert calls["iam:CreateUser"] == 1
    assert calls["iam:DeleteUser"] == 1
    assert calls["execute-api:POST /requests (operator)"] == 1
    assert report["aws_calls"]["total"] == sum(calls.values())
    assert json.loads(out[out.index("{") : out.rindex("}") + 1]) == report


def _leftovers(tmp_path: Path) -> tuple[State, Path]:
    """What a crashed run leaves: a user with keys and policies, a subscribed queue, a stack."""
    stack, user = "sessiongate-smoke-0badf00d", "sg-smoke-operator-0badf00d"
    FakeSam()([SAM, "deploy", "--stack-name", stack])
    outputs = {o["OutputKey"]: o["OutputValue"] for o in CFN.stacks[stack]["Outputs"]}
    iam, sqs, sns = boto3.client("iam"), boto3.client("sqs"), boto3.client("sns")
    iam.create_user(UserName=user)
    iam.attach_user_policy(UserName=user, PolicyArn=outputs["OperatorPolicyArn"])
    iam.attach_user_policy(UserName=user, PolicyArn=outputs["RequestApiInvokePolicyArn"])
    iam.create_access_key(UserName=user)
    url = sqs.create_queue(QueueName=stack)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(
        TopicArn=outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    st = State(stack, REGION, ACCOUNT, SAM, True, user, url, subscription)
    path = tmp_path / "state.json"
    state_file.save(path, st)
    return st, path


def test_teardown_only_cleans_what_a_crashed_run_left(tmp_path: Path, aws: None) -> None:
    st, path = _leftovers(tmp_path)
    sam = FakeSam()
    code, out, _ = _main(["teardown", "--state", str(path)], env={}, runner=sam, session=Session())
    assert code == 0, out
    assert sam.commands == [
        [SAM, "delete", "--stack-name", st.stack_name, "--region", REGION, "--no-prompts"]
    ]
    _assert_all_gone(st.stack_name, str(st.user_name))
    assert not path.exists()
    code, out, _ = _main(["teardown", "--state", str(path)], env={}, runner=sam)
    assert (code, out.strip()) == (0, f"smoke: nothing to tear down ({path} lists nothing)")


def test_a_failing_teardown_step_does_not_stop_the_others_and_can_be_resumed(
    tmp_path: Path, aws: None
) -> None:
    st, path = _leftovers(tmp_path)
    sam = FakeSam()
    code, out, _ = _main(
        ["teardown", "--state", str(path)], env={}, runner=sam, session=Session(fail="sqs.DeleteQueue")
    )
    assert code == 1
    steps = {s["name"]: s for s in json.loads(out)["teardown"]}
    assert steps[f"delete queue {st.queue_url}"]["ok"] is False
    assert "AccessDenied" in steps[f"delete queue {st.queue_url}"]["error"]
    assert all(s["ok"] for name, s in steps.items() if not name.startswith("delete queue"))
    assert _gone(lambda: boto3.client("iam").get_user(UserName=str(st.user_name)), "NoSuchEntity")
    assert boto3.client("sns").list_subscriptions()["Subscriptions"] == []
    left = state_file.load(path)
    assert left is not None
    assert (left.queue_url, left.user_name, left.stack) == (st.queue_url, None, False)
    # Resumed: only the queue is left to delete.
    code, out, _ = _main(["teardown", "--state", str(path)], env={}, runner=sam, session=Session())
    assert code == 0
    assert [s["name"] for s in json.loads(out)["teardown"]] == [f"delete queue {st.queue_url}"]
    _assert_all_gone(st.stack_name, str(st.user_name))
    assert not path.exists()


def test_a_failing_sam_delete_is_recorded_and_the_stack_stays_listed(tmp_path: Path, aws: None) -> None:
    _st, path = _leftovers(tmp_path)
    code, out, _ = _main(
        ["teardown", "--state", str(path)], env={}, runner=FakeSam(delete=1), session=Session()
    )
    assert code == 1
    [stack_step] = [s for s in json.loads(out)["teardown"] if s["name"].startswith("delete stack")]
    assert stack_step["ok"] is False
    assert "exited with 1" in stack_step["error"]
    left = state_file.load(path)
    assert left is not None
    assert left.stack
    assert left.user_name is None


# ------------------------------------------------------------------------------------------ a whole run
APPROVER_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/SmokeApprover/me"


@functools.cache
def operator_policy() -> dict[str, Any]:
    """The operator policy exactly as template.yaml resolves it with the default parameters (5 slots)."""
    raw = template()
    defaults = {k: v.get("Default") for k, v in raw["Parameters"].items()}
    resolver = _Resolver(
        cfn.Stack(name="sessiongate-smoke-test", account=ACCOUNT, region=REGION, parameters=defaults), raw
    )
    document = raw["Resources"]["AllowStartSsmSessionBasedOnIamTags"]["Properties"]["PolicyDocument"]
    return resolver.resolve(copy.deepcopy(document))  # type: ignore[no-any-return]


class Clock:
    """Virtual time: starts at the real time, moves only when the run sleeps."""

    def __init__(self) -> None:
        self.t = time.time()
        self.on_tick: list[Any] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        for tick in self.on_tick:
            tick(self.t)


class FakeSessionGate:
    """The deployed stack as the smoke run sees it, behind the in-process gateway (SigV4 checked):
    the request API's three routes, the grant (tag + AccessGranted on approval by an approver the
    deployed policy names) and Scheduler's revocation ``lag`` seconds after expiry (untag +
    AccessRevoked)."""

    def __init__(self, sam: FakeSam, clock: Clock, lag: float = 25.0) -> None:
        self.sam, self.clock, self.lag = sam, clock, lag
        self.request: dict[str, Any] = {}
        self.routes: list[tuple[str, str]] = []
        clock.on_tick.append(self.tick)

    def _stack(self) -> tuple[str, dict[str, str]]:
        [stack] = CFN.stacks.values()
        return stack["StackName"], {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    def _publish(self, event_type: str) -> None:
        boto3.client("sns").publish(
            TopicArn=self._stack()[1]["NotificationTopicArn"],
            Message=json.dumps({"event_type": event_type, "grant_id": "rq-r1"}),
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": event_type}},
        )

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        route = f"{event['httpMethod']} {event['resource']}"
        caller = event["requestContext"]["identity"]["userArn"]
        self.routes.append((route, caller))
        if route == "POST /requests":
            body = json.loads(event["body"])
            self.request = {
                "request_id": "r1",
                "status": "PENDING",
                "principal_arn": caller,
                "instance_id": body["instance_id"],
                "duration_minutes": body["duration_minutes"],
            }
            return {"statusCode": 201, "body": json.dumps({"request": self.request})}
        if route == "POST /requests/{id}/approve":
            deploy = self.sam.commands[1]
            [approvers] = [a.split("=", 1)[1] for a in deploy if a.startswith("NativeApproverArns=")]
            role = f"arn:aws:iam::{ACCOUNT}:role/{caller.split('/')[1]}"
            if caller == self.request["principal_arn"] or role not in approvers.split(","):
                return {"statusCode": 403, "body": json.dumps({"error": "not_an_approver", "message": "no"})}
            user = self.request["principal_arn"].split("/")[-1]
            boto3.client("iam").tag_user(
                UserName=user,
                Tags=[{"Key": "SecurityAllowSessionInstance", "Value": self.request["instance_id"]}],
            )
            expires = self.clock.now() + 60 * self.request["duration_minutes"]
            self.request.update(status="ACTIVE", expires_at=iso(expires), _expires=expires)
            self._publish("AccessGranted")
            return {"statusCode": 200, "body": json.dumps({"request": self.view()})}
        if route == "GET /requests/{id}":
            return {"statusCode": 200, "body": json.dumps({"request": self.view()})}
        return {"statusCode": 404, "body": json.dumps({"error": "not_found", "message": route})}

    def view(self) -> dict[str, Any]:
        return {k: v for k, v in self.request.items() if not k.startswith("_")}

    def tick(self, now: float) -> None:
        if self.request.get("status") == "ACTIVE" and now >= self.request["_expires"] + self.lag:
            user = self.request["principal_arn"].split("/")[-1]
            boto3.client("iam").untag_user(UserName=user, TagKeys=["SecurityAllowSessionInstance"])
            self.request["status"] = "EXPIRED"
            self._publish("AccessRevoked")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Simulator:
    """iam:SimulatePrincipalPolicy, which moto lacks: the user's attached policies (from moto IAM)
    evaluated by principalmapper with only the context entries given (the simulator evaluates "the
    policies and the inputs that you provide", SimulatePrincipalPolicy API reference)."""

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.iam.SimulatePrincipalPolicy", self._request)
        client.meta.events.register("before-call.iam.SimulatePrincipalPolicy", self._answer)

    def _request(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        validate_parameters(params, model.input_shape)
        self._params = dict(params)
        self.calls.append(self._params)

    def _answer(self, model: Any, **_: Any) -> Any:
        p = self._params
        iam = boto3.client("iam")
        user = iam.get_user(UserName=p["PolicySourceArn"].split("/")[-1])["User"]
        tags = {
            e["ContextKeyName"].split("/", 1)[1]: e["ContextKeyValues"][0]
            for e in p.get("ContextEntries", [])
            if e["ContextKeyName"].startswith("aws:PrincipalTag/")
        }
        variables = {f"aws:PrincipalTag/{k}": v for k, v in tags.items()} | {"aws:userid": user["UserId"]}
        policies = []
        for attached in iam.list_attached_user_policies(UserName=user["UserName"])["AttachedPolicies"]:
            arn = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
            resolved = _resolve_condition_variables(_doc(document), variables)
            policies.append(Policy(arn, attached["PolicyName"], resolved))
        node = principal_node(user["Arn"], user["UserId"], policies, tags=tags)
        results = [
            {
                "EvalActionName": action,
                "EvalResourceName": resource,
                "EvalDecision": "allowed"
                if local_check_authorization_full(node, action, resource, {})
                else "implicitDeny",
            }
            for action in p["ActionNames"]
            for resource in p["ResourceArns"]
        ]
        parsed = {"EvaluationResults": results, "IsTruncated": False}
        validate_parameters(parsed, model.output_shape)
        return AWSResponse(None, 200, {}, None), parsed


def test_a_whole_run_measures_and_leaves_nothing(tmp_path: Path, approver: dict[str, str]) -> None:
    clock, sam, simulator = Clock(), FakeSam(operator_policy=operator_policy()), Simulator()
    stack_fake = FakeSessionGate(sam, clock)
    gateway = Gateway(stack_fake)
    session = Session(approver, simulator=simulator, gateway=gateway)
    gateway.keys[approver["aws_access_key_id"]] = (approver["aws_secret_access_key"], APPROVER_SESSION)
    inputs = read_inputs(_env(tmp_path), region=REGION, sam=SAM)
    out = io.StringIO()
    code = run(inputs, Deps(session, sam, gateway, out, sleep=clock.sleep, now=clock.now))
    report = json.loads(inputs.report_path.read_text())
    assert code == 0, (report["steps"], report["checks"])
    assert report["ok"] is True
    user = f"arn:aws:iam::{ACCOUNT}:user/{inputs.user_name}"
    assert stack_fake.routes == [
        ("POST /requests", user),
        ("POST /requests/{id}/approve", APPROVER_SESSION),
        ("GET /requests/{id}", APPROVER_SESSION),
        ("GET /requests/{id}", APPROVER_SESSION),
    ]
    assert [(c["name"], c["actual"]) for c in report["checks"]] == [
        ("request is pending", "PENDING"),
        ("StartSession on the instance", "allowed"),
        ("StartSession on the other instance", "not allowed"),
        ("StartSession on the instance", "not allowed"),
        ("request after expiry", "EXPIRED"),
    ]
    # The simulator got the tags as context entries while granted, none after the revocation.
    assert [c["ContextEntries"] for c in simulator.calls] == [
        [
            {
                "ContextKeyName": "aws:PrincipalTag/SecurityAllowSessionInstance",
                "ContextKeyValues": [INSTANCE],
                "ContextKeyType": "string",
            }
        ]
    ] * 2 + [[]]
    figures = report["figures"]
    assert figures["approval_to_tag_seconds"] == 0
    # The fake revokes 25 s after expiry; the run polls every 2 s, so it sees the untag within 2 s.
    assert 25 <= figures["expiry_to_untag_seconds"] < 27
    kinds = [n["event_type"] for n in figures["notifications"]]
    assert kinds == ["AccessGranted", "AccessRevoked"]
    assert all(0 <= n["sns_to_sqs_seconds"] < 5 for n in figures["notifications"])
    assert [r["type"] for r in report["stack_resources"]["cost_relevant"]] == ["AWS::DynamoDB::Table"] * 2
    assert all(t["ok"] for t in report["teardown"])
    _assert_all_gone(inputs.stack_name, inputs.user_name)
    assert not inputs.state_path.exists()
    calls = report["aws_calls"]["by_operation"]
    assert calls["iam:SimulatePrincipalPolicy"] == 3
    assert calls["execute-api:POST /requests/{id}/approve (approver)"] == 1


class InterruptedSam(FakeSam):
    """Ctrl-C while sam deploy runs (the stack exists by then)."""

    def __call__(self, command: list[str]) -> int:
        code = super().__call__(command)
        if command[1] == "deploy":
            raise KeyboardInterrupt
        return code


def test_ctrl_c_mid_run_still_tears_down(tmp_path: Path, approver: dict[str, str]) -> None:
    sam = InterruptedSam()
    code, _, err = _main(["run"], env=_env(tmp_path), runner=sam, session=Session(approver))
    assert code == 130
    assert "interrupted" in err
    report = json.loads(next(tmp_path.glob("report-*.json")).read_text())
    assert report["failed_step"] == "sam deploy"
    assert [t["ok"] for t in report["teardown"]] == [True, True, True]
    assert [c[1] for c in sam.commands] == ["build", "deploy", "delete"]
    _assert_all_gone(report["stack_name"], "nobody")
    assert not (tmp_path / "state.json").exists()


def test_teardown_refuses_credentials_of_another_account(tmp_path: Path, aws: None) -> None:
    st, path = _leftovers(tmp_path)
    elsewhere = State(st.stack_name, REGION, "111122223333", SAM, True, st.user_name, st.queue_url)
    state_file.save(path, elsewhere)
    sam = FakeSam()
    code, _, err = _main(["teardown", "--state", str(path)], env={}, runner=sam, session=Session())
    assert code == 2
    assert f"lists resources in account 111122223333, but the credentials are of {ACCOUNT}" in err
    assert sam.commands == []
    assert state_file.load(path) == elsewhere
    assert boto3.client("iam").get_user(UserName=str(st.user_name))["User"]["UserName"] == st.user_name


@pytest.mark.parametrize(
    ("caller", "approver"),
    [
        (f"arn:aws:iam::{ACCOUNT}:user/ops/alice", f"arn:aws:iam::{ACCOUNT}:user/ops/alice"),
        (
            f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0123/alice@example.com",
            f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_0123",
        ),
        (f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/Ops/s", f"arn:aws-cn:iam::{ACCOUNT}:role/Ops"),
    ],
)
def test_the_caller_becomes_the_approver(caller: str, approver: str) -> None:
    assert approver_arn(caller) == approver


@pytest.mark.parametrize(
    "caller", [f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:sts::{ACCOUNT}:federated-user/bob", "bob"]
)
def test_root_and_federated_callers_cannot_approve(caller: str) -> None:
    with pytest.raises(InputError, match="cannot"):
        approver_arn(caller)


def _smoke(tmp_path: Path, slept: list[float]) -> Smoke:
    inputs = read_inputs(_env(tmp_path), region=REGION, sam=SAM)
    return Smoke(inputs, Deps(None, FakeSam(), RefusingApi(), io.StringIO(), sleep=slept.append))


def test_a_new_key_is_retried_while_iam_does_not_accept_it_yet(tmp_path: Path) -> None:
    slept: list[float] = []
    answers: list[Any] = [
        CliError("the API refused the signature", "forbidden", 403),
        CliError("the API refused the signature", "forbidden", 403),
        {"request": {"request_id": "r1"}},
    ]

    def call() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    assert _smoke(tmp_path, slept)._retry_new_key(call) == {"request": {"request_id": "r1"}}
    assert slept == [2.0, 4.0]


def test_retries_are_bounded_and_sessiongate_refusals_are_not_retried(tmp_path: Path) -> None:
    slept: list[float] = []
    smoke = _smoke(tmp_path, slept)

    def forbidden() -> dict[str, Any]:
        raise CliError("the API refused the signature", "forbidden", 403)

    with pytest.raises(CliError):
        smoke._retry_new_key(forbidden)
    assert slept == list(KEY_RETRY_DELAYS)
    assert sum(slept) < 120
    slept.clear()

    def not_a_requester() -> dict[str, Any]:
        raise CliError("no", "no_matching_rule", 403)

    with pytest.raises(CliError, match="no"):
        smoke._retry_new_key(not_a_requester)
    assert slept == []


def test_refuses_to_start_while_an_earlier_run_left_resources(
    tmp_path: Path, approver: dict[str, str]
) -> None:
    earlier = State(
        "sessiongate-smoke-0badf00d", REGION, ACCOUNT, SAM, user_name="sg-smoke-operator-0badf00d"
    )
    state_file.save(tmp_path / "state.json", earlier)
    sam = FakeSam()
    code, _, err = _main(["run"], env=_env(tmp_path), runner=sam, session=Session(approver))
    assert code == 2
    assert (
        "lists resources of an earlier run (sessiongate-smoke-0badf00d): run `make smoke-teardown` first"
        in err
    )
    assert sam.commands == []
    assert state_file.load(tmp_path / "state.json") == earlier


class PendingSubscription(Session):
    """SNS leaves the queue's subscription pending (as for a queue it does not trust yet) and sends the
    SubscriptionConfirmation message with its token to the queue."""

    def __init__(self) -> None:
        super().__init__()
        self.confirmed: list[dict[str, Any]] = []

    def client(self, service: str, config: Any = None) -> Any:
        client = super().client(service, config)
        if service == "sns":
            client.meta.events.register("before-call.sns.GetSubscriptionAttributes", self._pending)
            client.meta.events.register("before-parameter-build.sns.ConfirmSubscription", self._confirm)
        return client

    def _pending(self, **_: Any) -> Any:
        sqs = boto3.client("sqs")
        [url] = sqs.list_queues()["QueueUrls"]
        confirmation = {"Type": "SubscriptionConfirmation", "Token": "tok-123", "TopicArn": "t"}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(confirmation))
        return AWSResponse(None, 200, {}, None), {"Attributes": {"PendingConfirmation": "true"}}

    def _confirm(self, params: dict[str, Any], **_: Any) -> None:
        self.confirmed.append(dict(params))


def test_a_pending_subscription_is_confirmed_with_the_token_sns_sent(tmp_path: Path, aws: None) -> None:
    session = PendingSubscription()
    inputs = read_inputs(_env(tmp_path), region=REGION, sam=SAM)
    smoke = Smoke(inputs, Deps(session, FakeSam(), RefusingApi(), io.StringIO()))
    topic = boto3.client("sns").create_topic(Name="t")["TopicArn"]
    smoke.outputs = {"NotificationTopicArn": topic}
    smoke._subscribe()
    assert session.confirmed == [{"TopicArn": topic, "Token": "tok-123", "AuthenticateOnUnsubscribe": "true"}]
    saved = state_file.load(inputs.state_path)
    assert saved is not None
    assert saved.subscription_arn == smoke.state.subscription_arn
    assert saved.subscription_arn.startswith(topic + ":")
