"""``sessiongate doctor`` against moto: what is missing is reported, what is in place passes.

The stack's resources are created in moto with SessionGate's logical ids and resource types (both
tables, the alarm and lifecycle topics, the tag-key guard); CloudFormation's own answers
(DescribeStacks, ListStackResources) come from botocore's ``Stubber``, which validates them against
the CloudFormation service model (moto's CloudFormation needs extras this environment does not have,
and could not create the SAM template anyway).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from sessiongate_cli import doctor
from sessiongate_cli.main import main

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/sessiongate/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
GUARD = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Action": ["iam:TagUser", "sts:TagSession"],
            "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": ["SecurityAllowSession*"]}},
        }
    ],
}
OPEN_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
ALLOW_LISTED_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            **OPEN_TRUST["Statement"][0],  # type: ignore[index]
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["Team", "CostCenter"]}},
        }
    ],
}


class StackSession:
    """A boto3 session whose CloudFormation answers describe the stack built in moto."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.resources: dict[str, tuple[str, str]] = {}  # logical id -> (type, physical id)
        self.deployers = ""
        self.hooks: dict[str, Callable[[Any], None]] = {}
        self.missing = False  # the stack does not exist

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def physical(self, logical: str) -> str:
        return self.resources[logical][1]

    def client(self, name: str, **kwargs: Any) -> Any:
        c = self.real.client(name, **kwargs)
        if name == "cloudformation":
            self._stub(c)
        if name in self.hooks:
            self.hooks[name](c)
        return c

    def _stub(self, cfn: Any) -> None:
        stubber = Stubber(cfn)
        now = datetime(2026, 11, 30, tzinfo=UTC)
        stack = {
            "StackId": STACK_ID,
            "StackName": "sessiongate",
            "CreationTime": now,
            "StackStatus": "CREATE_COMPLETE",
            "Parameters": [{"ParameterKey": "DeployerArns", "ParameterValue": self.deployers}],
        }
        if self.missing:
            stubber.add_client_error(
                "describe_stacks",
                "ValidationError",
                "Stack with id nope does not exist",
                400,
                {"StackName": "nope"},
            )
            stubber.activate()
            return
        stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "sessiongate"})
        summaries = [
            {
                "LogicalResourceId": logical,
                "PhysicalResourceId": physical,
                "ResourceType": type_,
                "LastUpdatedTimestamp": now,
                "ResourceStatus": "CREATE_COMPLETE",
            }
            for logical, (type_, physical) in self.resources.items()
        ]
        stubber.add_response(
            "list_stack_resources", {"StackResourceSummaries": summaries}, {"StackName": "sessiongate"}
        )
        stubber.activate()


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackSession]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        real = boto3.Session(region_name=REGION)
        s = StackSession(real)
        ddb = real.client("dynamodb")
        for logical, key in (("GrantsTable", "pk"), ("RequestsTable", "request_id")):
            name = f"sessiongate-{logical}-ABC123"
            ddb.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            )
            s.resources[logical] = ("AWS::DynamoDB::Table", name)
        for logical in ("AlarmTopic", "NotificationTopic"):
            arn = real.client("sns").create_topic(Name=f"sessiongate-{logical}")["TopicArn"]
            s.resources[logical] = ("AWS::SNS::Topic", arn)
        guard = real.client("iam").create_policy(
            PolicyName="sessiongate-deny-slot-tag-changes", PolicyDocument=json.dumps(GUARD)
        )
        s.resources["SessionGateTagKeyGuard"] = ("AWS::IAM::ManagedPolicy", guard["Policy"]["Arn"])
        control = real.client("iam").create_policy(
            PolicyName="sessiongate-deny-control-plane-changes", PolicyDocument=json.dumps(GUARD)
        )
        s.resources["SessionGateControlPlaneGuard"] = ("AWS::IAM::ManagedPolicy", control["Policy"]["Arn"])
        s.resources["RequestApiInvokePolicy"] = (
            "AWS::IAM::ManagedPolicy",
            "arn:aws:iam::123456789012:policy/x",
        )
        yield s


def run(s: Any, *argv: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["doctor", "--region", REGION, "--output", "json", *argv], session=s, out=out, err=err)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return code, (json.loads(out.getvalue()) if out.getvalue() else {}), err.getvalue()


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in report["doctor"]["checks"]}


def test_a_bare_deployment_reports_every_missing_piece(session: Any) -> None:
    iam = session.client("iam")
    iam.create_role(RoleName="idp-users", AssumeRolePolicyDocument=json.dumps(OPEN_TRUST))
    session.client("organizations").create_organization(FeatureSet="ALL")

    code, report, _ = run(session)

    assert code == 1
    assert report["doctor"]["ok"] is False
    assert statuses(report) == {
        "tag-key guard": "MISSING",
        "control-plane guard": "MISSING",
        "session-tag trust": "MISSING",
        "table policy GrantsTable": "MISSING",
        "table policy RequestsTable": "MISSING",
        "alarms AlarmTopic": "MISSING",
        "deployers": "WARN",
    }
    trust = next(c for c in report["doctor"]["checks"] if c["check"] == "session-tag trust")
    assert "idp-users" in trust["detail"]
    assert "ForAllValues:StringEquals aws:TagKeys" in trust["fix"]
    assert all(c["fix"] for c in report["doctor"]["checks"] if c["status"] != "OK")


def test_a_protected_deployment_passes(session: Any) -> None:
    iam = session.client("iam")
    iam.create_role(RoleName="idp-users", AssumeRolePolicyDocument=json.dumps(ALLOW_LISTED_TRUST))
    # Service-linked roles trust AWS services only and cannot be edited: not flagged.
    iam.create_role(
        RoleName="AWSServiceRoleForSomething",
        Path="/aws-service-role/x.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(OPEN_TRUST),
    )
    iam.create_group(GroupName="admins")
    iam.attach_group_policy(GroupName="admins", PolicyArn=session.physical("SessionGateTagKeyGuard"))
    iam.attach_group_policy(GroupName="admins", PolicyArn=session.physical("SessionGateControlPlaneGuard"))
    for logical in ("GrantsTable", "RequestsTable"):
        name = session.physical(logical)
        arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{name}"
        session.client("dynamodb").put_resource_policy(
            ResourceArn=arn,
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Deny", "Principal": "*", "Action": "dynamodb:PutItem", "Resource": arn}
                    ],
                }
            ),
        )
    queue = session.client("sqs").create_queue(QueueName="oncall")["QueueUrl"]
    queue_arn = session.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    session.client("sns").subscribe(
        TopicArn=session.physical("AlarmTopic"),
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
    )
    session.deployers = "arn:aws:iam::123456789012:role/deploy"

    code, report, _ = run(session)

    assert set(statuses(report).values()) == {"OK"}, report
    assert (code, report["doctor"]["ok"]) == (0, True)


def test_an_scp_naming_the_slot_keys_stands_in_for_the_guard(session: Any) -> None:
    org = session.client("organizations")
    org.create_organization(FeatureSet="ALL")
    with open("docs/scp-deny-slot-tags.json") as scp:
        policy = org.create_policy(
            Content=scp.read(), Description="", Name="deny-slot-tags", Type="SERVICE_CONTROL_POLICY"
        )["Policy"]["PolicySummary"]["Id"]
    _, report, _ = run(session)
    assert statuses(report)["tag-key guard"] == "MISSING"  # an SCP attached to nothing protects nothing
    org.attach_policy(PolicyId=policy, TargetId=org.list_roots()["Roots"][0]["Id"])
    _, report, _ = run(session)
    assert statuses(report)["tag-key guard"] == "OK"


def test_without_organizations_access_the_guard_cannot_be_checked(session: StackSession) -> None:
    """A member account's caller may not read the organization's SCPs: that is not a pass."""

    def denied(org: Any) -> None:
        stubber = Stubber(org)
        stubber.add_client_error(
            "list_policies",
            "AccessDeniedException",
            "not the management account",
            400,
            {"Filter": "SERVICE_CONTROL_POLICY"},
        )
        stubber.activate()

    session.hooks["organizations"] = denied
    code, report, _ = run(session)
    guard = next(c for c in report["doctor"]["checks"] if c["check"] == "tag-key guard")
    assert guard["status"] == "CANNOT CHECK"
    assert "AccessDeniedException" in guard["detail"]
    assert code == 1


def test_pending_subscriptions_do_not_count(session: StackSession) -> None:
    """SNS lists an unconfirmed subscription with the ARN "PendingConfirmation" (ListSubscriptionsByTopic)."""

    def pending(sns: Any) -> None:
        stubber = Stubber(sns)
        stubber.add_response(
            "list_subscriptions_by_topic",
            {"Subscriptions": [{"SubscriptionArn": "PendingConfirmation", "Protocol": "email"}]},
            {"TopicArn": session.physical("AlarmTopic")},
        )
        stubber.activate()

    session.hooks["sns"] = pending
    _, report, _ = run(session)
    alarms = next(c for c in report["doctor"]["checks"] if c["check"] == "alarms AlarmTopic")
    assert (alarms["status"], alarms["detail"]) == (
        "MISSING",
        "no confirmed subscription (1 pending): alarms reach nobody",
    )


def test_an_unknown_stack_is_a_usage_error(session: Any) -> None:
    session.missing = True
    code, _, err = run(session, "--stack-name", "nope")
    assert code == 2
    assert "stack_not_found" in err


@pytest.mark.parametrize(
    ("condition", "restricted"),
    [
        ({}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["Team"]}}, True),
        ({"ForAllValues:StringLike": {"aws:TagKeys": ["Team*", "Cost*"]}}, True),
        ({"ForAllValues:StringLike": {"aws:TagKeys": ["*"]}}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["securityallowsessioninstance"]}}, False),
        # A case-sensitive deny-list: "securityallowsessioninstance" is the same IAM key and passes.
        ({"ForAllValues:StringNotLike": {"aws:TagKeys": ["SecurityAllowSession*"]}}, False),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["Team"]}}, False),
        ({"StringEquals": {"aws:RequestTag/Team": "ops"}}, False),
    ],
)
def test_which_trust_conditions_keep_the_slot_keys_out(condition: dict[str, Any], restricted: bool) -> None:
    statement = {"Effect": "Allow", "Action": "sts:TagSession", "Condition": condition}
    assert doctor._tags_unrestricted(statement) is not restricted
    assert not doctor._tags_unrestricted({"Effect": "Allow", "Action": "sts:AssumeRole"})
    assert doctor._tags_unrestricted({"Effect": "Allow", "Action": "sts:*"})


def test_the_tag_key_guard_alone_leaves_the_control_plane_unguarded(session: Any) -> None:
    """The guard is two managed policies (one cannot hold both): attaching only the first is reported."""
    iam = session.client("iam")
    iam.create_group(GroupName="admins")
    iam.attach_group_policy(GroupName="admins", PolicyArn=session.physical("SessionGateTagKeyGuard"))
    _, report, _ = run(session)
    assert statuses(report)["tag-key guard"] == "OK"
    control = next(c for c in report["doctor"]["checks"] if c["check"] == "control-plane guard")
    assert control["status"] == "MISSING"
    assert "ControlPlaneGuardPolicyArn" in control["fix"]
