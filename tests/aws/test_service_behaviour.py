"""Opt-in: the real-service behaviours SessionGate relies on and the offline fakes imitate.

The sandbox's IAM, SSM and table policies were made to behave as the AWS documentation says; these
tests ask the real services the same questions, so a divergence shows up here first. They create
nothing that outlives them (one probe tag at most, removed at once) and skip what the account lacks.

    SESSIONGATE_AWS_TESTS=1 AWS_PROFILE=... .venv/bin/pytest -m aws tests/aws
    # and, against a deployed stack (as a principal that is NOT one of its DeployerArns):
    SESSIONGATE_AWS_TESTS=1 SESSIONGATE_AWS_STACK=sessiongate AWS_PROFILE=... \
        .venv/bin/pytest -m aws tests/aws

Needs: iam:ListRoles, iam:TagRole/UntagRole (the Identity Center probe), ssm:DescribeInstanceInformation,
ssm:DescribeAutomationExecutions, ssm:DescribeSessions; with a stack also cloudformation:DescribeStacks,
dynamodb:PutItem (expected to be refused), kms:GenerateMac (expected to be refused),
scheduler:ListScheduleGroups.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(
        os.environ.get("SESSIONGATE_AWS_TESTS") != "1", reason="real-AWS test: set SESSIONGATE_AWS_TESTS=1"
    ),
]

IDENTITY_CENTER_PATH = "/aws-reserved/sso.amazonaws.com/"


@pytest.fixture(scope="module")
def session() -> Any:
    import boto3

    return boto3.session.Session()


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def test_identity_center_roles_refuse_tags(session: Any) -> None:
    """sandbox/fake_iam.py: TagRole on a role under the Identity Center path is UnmodifiableEntity."""
    from botocore.exceptions import ClientError

    iam = session.client("iam")
    roles = iam.list_roles(PathPrefix=IDENTITY_CENTER_PATH, MaxItems=1)["Roles"]
    if not roles:
        pytest.skip("no IAM Identity Center role in this account")
    name = roles[0]["RoleName"]
    try:
        iam.tag_role(RoleName=name, Tags=[{"Key": "SessionGateProbe", "Value": "refused"}])
    except ClientError as exc:
        outcome = _code(exc)
    else:
        iam.untag_role(RoleName=name, TagKeys=["SessionGateProbe"])  # leave nothing behind
        outcome = "tagged"
    assert outcome == "UnmodifiableEntity"


def test_an_unregistered_instance_is_invalid_instance_id(session: Any) -> None:
    """sandbox/fake_ssm.py: DescribeInstanceInformation names an unknown instance InvalidInstanceId."""
    from botocore.exceptions import ClientError

    ssm = session.client("ssm")
    with pytest.raises(ClientError) as raised:
        ssm.describe_instance_information(
            InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": ["i-0000000000000dead"]}]
        )
    assert _code(raised.value) == "InvalidInstanceId"


def test_change_requests_are_found_by_subtype(session: Any) -> None:
    """adapters/changes.py asks for AutomationSubtype=ChangeRequest, one page at a time."""
    ssm = session.client("ssm")
    page = ssm.describe_automation_executions(
        Filters=[{"Key": "AutomationSubtype", "Values": ["ChangeRequest"]}], MaxResults=50
    )
    assert all(e.get("AutomationSubtype") == "ChangeRequest" for e in page["AutomationExecutionMetadataList"])


def test_session_ids_have_the_form_the_fake_uses(session: Any) -> None:
    """sandbox/fake_ssm.py: <user or role session name>-<17 hex characters>."""
    sessions = session.client("ssm").describe_sessions(State="History", MaxResults=20)["Sessions"]
    if not sessions:
        pytest.skip("no Session Manager session in this account's history")
    for s in sessions:
        assert re.fullmatch(r"[\w+=,.@-]+-[0-9a-f]{17}", s["SessionId"]), s["SessionId"]


@pytest.fixture(scope="module")
def stack(session: Any) -> dict[str, str]:
    name = os.environ.get("SESSIONGATE_AWS_STACK")
    if not name:
        pytest.skip("set SESSIONGATE_AWS_STACK to a deployed SessionGate stack")
    [described] = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def test_nobody_but_the_request_api_writes_requests(session: Any, stack: dict[str, str]) -> None:
    """Table resource policy: even a DynamoDB admin's PutItem is refused (issue 13, finding 2)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        session.client("dynamodb").put_item(
            TableName=stack["RequestsTableName"],
            Item={"request_id": {"S": "sessiongate-probe-forged"}, "status": {"S": "APPROVED"}},
        )
    assert _code(raised.value) == "AccessDeniedException"


def test_only_deployers_sign_the_approval_policy(session: Any, stack: dict[str, str]) -> None:
    """ApprovalPolicyKey's key policy: anyone but the deployers is refused GenerateMac (finding 1)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        session.client("kms").generate_mac(
            KeyId=stack["ApprovalPolicyKeyArn"], Message=b"probe", MacAlgorithm="HMAC_SHA_256"
        )
    assert _code(raised.value) == "AccessDeniedException"


def test_the_schedule_group_name_fits_scheduler(session: Any, stack: dict[str, str]) -> None:
    groups = session.client("scheduler").list_schedule_groups(NamePrefix="sessiongate-")["ScheduleGroups"]
    assert groups
    assert all(len(g["Name"]) <= 64 for g in groups)
