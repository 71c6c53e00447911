"""The sandbox/test IAM (moto + sandbox.fake_iam) answers TagRole/UntagRole with the errors real IAM uses.

Each error is checked against botocore's IAM model: the code and HTTP status its error shape declares,
parsed by botocore into the modeled exception class, as a real IAM answer would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from sandbox import fake_iam

MODEL = botocore.session.get_session().get_service_model("iam")
IDC_ROLE = "AWSReservedSSO_Ops_0123456789abcdef"


@pytest.fixture
def iam() -> Iterator[Any]:
    fake_iam.install()
    with mock_aws():
        client = boto3.client("iam", region_name="us-east-1")
        for name, path in ((IDC_ROLE, fake_iam.RESERVED_SSO_PATH), ("ops-oncall", "/")):
            client.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps({}))
        yield client


def declared(shape_name: str) -> tuple[str, int]:
    error = MODEL.shape_for(shape_name).metadata["error"]
    return error["code"], error["httpStatusCode"]


def refusal(call: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def test_the_model_declares_these_errors_for_tag_role_and_untag_role() -> None:
    """What the fake must choose from. UnmodifiableEntity is not among them: it is a service-wide error
    shape (declared for the other role writes) that IAM also answers to TagRole/UntagRole on roles only AWS
    may modify, and botocore maps it for any operation."""
    errors = {op: {e.name for e in MODEL.operation_model(op).error_shapes} for op in ("TagRole", "UntagRole")}
    assert errors == {
        "TagRole": {
            "NoSuchEntityException",
            "LimitExceededException",
            "InvalidInputException",
            "ConcurrentModificationException",
            "ServiceFailureException",
        },
        "UntagRole": {
            "NoSuchEntityException",
            "ConcurrentModificationException",
            "ServiceFailureException",
        },
    }
    assert declared("UnmodifiableEntityException") == ("UnmodifiableEntity", 400)
    writes = [
        op
        for op in MODEL.operation_names
        if "UnmodifiableEntityException" in {e.name for e in MODEL.operation_model(op).error_shapes}
    ]
    assert {"DeleteRole", "UpdateRole", "PutRolePolicy", "AttachRolePolicy"} <= set(writes)


@pytest.mark.parametrize("operation", ["tag_role", "untag_role"])
def test_identity_center_roles_are_unmodifiable(iam: Any, operation: str) -> None:
    args: dict[str, Any] = (
        {"Tags": [{"Key": "SecurityAllowSessionInstance", "Value": "i-0123456789abcdef0"}]}
        if operation == "tag_role"
        else {"TagKeys": ["SecurityAllowSessionInstance"]}
    )
    error = refusal(lambda: getattr(iam, operation)(RoleName=IDC_ROLE, **args))

    assert isinstance(error, iam.exceptions.UnmodifiableEntityException)
    code, status = declared("UnmodifiableEntityException")
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error.response["Error"]["Message"] == (
        f"Cannot perform the operation on the protected role '{IDC_ROLE}' "
        "- this role is only modifiable by AWS"
    )
    assert iam.list_role_tags(RoleName=IDC_ROLE)["Tags"] == []


def test_other_roles_stay_taggable_and_missing_roles_are_no_such_entity(iam: Any) -> None:
    tags = [{"Key": "SecurityAllowSessionInstance", "Value": "i-0123456789abcdef0"}]
    iam.tag_role(RoleName="ops-oncall", Tags=tags)
    assert iam.list_role_tags(RoleName="ops-oncall")["Tags"] == tags
    iam.untag_role(RoleName="ops-oncall", TagKeys=["SecurityAllowSessionInstance"])

    for call in (
        lambda: iam.tag_role(RoleName="gone", Tags=tags),
        lambda: iam.untag_role(RoleName="gone", TagKeys=["SecurityAllowSessionInstance"]),
    ):
        error = refusal(call)
        assert isinstance(error, iam.exceptions.NoSuchEntityException)
        assert error.response["Error"]["Code"] == declared("NoSuchEntityException")[0]


@pytest.mark.parametrize("value", ["AROAEXAMPLE:dave,ops", "a;b", "x" * 257])
def test_tag_values_outside_iams_pattern_are_refused(iam: Any, value: str) -> None:
    """botocore's ParamValidator does not check patterns; IAM does (tagValueType)."""
    assert MODEL.shape_for("tagValueType").metadata["pattern"] == fake_iam.TAG_VALUE_PATTERN
    error = refusal(lambda: iam.tag_role(RoleName="ops-oncall", Tags=[{"Key": "k", "Value": value}]))
    assert error.response["Error"]["Code"] == "ValidationError"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert iam.list_role_tags(RoleName="ops-oncall")["Tags"] == []


def test_tag_values_iam_accepts_are_accepted(iam: Any) -> None:
    value = "AROAEXAMPLE:dave@example.com é 1/2=+-_."
    iam.tag_role(RoleName="ops-oncall", Tags=[{"Key": "k", "Value": value}])
    assert iam.list_role_tags(RoleName="ops-oncall")["Tags"] == [{"Key": "k", "Value": value}]


POLICY_ARN = "arn:aws:iam::123456789012:policy/ops-read"
INLINE = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}]}
)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}],
    }
)


@pytest.fixture
def policy(iam: Any) -> str:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
    }
    return str(iam.create_policy(PolicyName="ops-read", PolicyDocument=json.dumps(document))["Policy"]["Arn"])


@pytest.mark.parametrize(
    ("operation", "args"),
    [
        ("attach_role_policy", {"PolicyArn": POLICY_ARN}),
        ("put_role_policy", {"PolicyName": "p", "PolicyDocument": INLINE}),
        ("update_assume_role_policy", {"PolicyDocument": TRUST}),
        ("update_role", {"MaxSessionDuration": 7200}),
        ("update_role_description", {"Description": "mine now"}),
        ("put_role_permissions_boundary", {"PermissionsBoundary": POLICY_ARN}),
        ("delete_role", {}),
    ],
)
def test_every_write_to_an_identity_center_role_is_unmodifiable(
    iam: Any, policy: str, operation: str, args: Any
) -> None:
    """The model declares UnmodifiableEntity for these writes; IAM answers it on Identity Center roles."""
    error = refusal(lambda: getattr(iam, operation)(RoleName=IDC_ROLE, **args))
    assert isinstance(error, iam.exceptions.UnmodifiableEntityException)
    assert iam.list_attached_role_policies(RoleName=IDC_ROLE)["AttachedPolicies"] == []
    getattr(iam, operation)(RoleName="ops-oncall", **args)  # an ordinary role takes the same write


def test_identity_center_itself_provisions_a_permission_sets_policies(iam: Any, policy: str) -> None:
    with fake_iam.as_identity_center():
        iam.attach_role_policy(RoleName=IDC_ROLE, PolicyArn=POLICY_ARN)
    attached = iam.list_attached_role_policies(RoleName=IDC_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [POLICY_ARN]
    error = refusal(lambda: iam.detach_role_policy(RoleName=IDC_ROLE, PolicyArn=POLICY_ARN))
    assert isinstance(error, iam.exceptions.UnmodifiableEntityException)
