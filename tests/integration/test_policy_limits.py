"""Every policy document and event pattern the stack deploys fits AWS's size limits, as deployed.

Tests pass on documents AWS would refuse at deploy time (the policies' effect is tested elsewhere), so
the template is rendered here with every condition on and realistic values, and each document is
measured the way its service counts:
- IAM ("IAM and AWS STS quotas"): a managed policy holds 6,144 characters, a role's inline policies
  10,240 characters together; IAM does not count whitespace.
- S3 bucket policy 20 KB ("Amazon S3 quotas"... "Bucket policy"), SNS topic policy 30 KB, KMS key policy
  32 KB ("AWS KMS quotas"), DynamoDB resource-based policy 20 KB ("DynamoDB resource-based policy
  considerations": whitespace counted), Secrets Manager resource policy 20,480 characters, API Gateway
  resource policy 8,192 characters ("Quotas for configuring and running a REST API in API Gateway").
- EventBridge ("Amazon EventBridge quotas"): "Event pattern size" 2,048 characters by default
  (adjustable): a deploy must not need a quota increase.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sandbox import cfn
from sandbox.cfn import Stack

ACCOUNT = "123456789012"
REGION = "us-east-1"

MANAGED_POLICY = 6_144
ROLE_INLINE_POLICIES = 10_240
RESOURCE_POLICIES = {
    "AWS::S3::BucketPolicy": 20_480,
    "AWS::SNS::TopicPolicy": 30_720,
    "AWS::SQS::QueuePolicy": 20_480,
    "AWS::KMS::Key": 32_768,
    "AWS::SecretsManager::ResourcePolicy": 20_480,
    "AWS::DynamoDB::Table": 20_480,
    "AWS::ApiGateway::RestApi": 8_192,
}
EVENT_PATTERN = 2_048
# Room left for what a real deployment adds (longer names and ARNs than the sample's): a document must
# stay under LIMIT * MARGIN. The operator policy is measured as is: it is mostly fixed text.
MARGIN = 0.9


@pytest.fixture(scope="module")
def stack() -> Stack:
    """Every condition on: deployers, Change Manager, session logging required and created, Slack."""
    deployers = ",".join(
        f"arn:aws:iam::{ACCOUNT}:role/deployer-with-a-long-role-name-{i:02d}" for i in range(4)
    )
    return cfn.load(
        "sessiongate",
        ACCOUNT,
        REGION,
        {
            "DeployerArns": deployers,
            "OrganizationId": "o-exampleorg1",
            "EnableChangeManager": "true",
            "ApproverName": "sessiongate-approvers",
            "ApproverType": "IamRole",
            "RequireSessionLogging": "true",
            "CreateSessionLogging": "true",
            "SlackTeamIds": "T0123456789,T0987654321",
            "IdentityStoreId": "d-1234567890",
            "IdentityStoreRoleArn": f"arn:aws:iam::{ACCOUNT}:role/sessiongate/SessionGateIdentityStoreReader",
        },
    )


def _deployed(document: Any) -> str:
    """The document as compact JSON, each name the sandbox shortens grown to its deployed length.

    The sandbox names resources without CloudFormation's suffixes: a role of the stack is named
    ``<stack>-<LogicalId>-<12 characters>`` (13 more), a secret's ARN ends in ``-<6 characters>`` (7
    more), and a key is named by its 36-character id where the sandbox writes ``alias/<stack>-<Key>``.
    """
    text = json.dumps(document, separators=(",", ":"))
    grown = 13 * text.count(":role/sessiongate/") + 7 * text.count(":secret:") + 36 * text.count(":alias/")
    return text + "x" * grown


def _iam_size(document: Any) -> int:
    """IAM does not count whitespace (IAM and AWS STS quotas)."""
    return len(re.sub(r"\s", "", _deployed(document)))


def _managed_policies(stack: Stack) -> list[str]:
    return [r.logical_id for r in stack.of_type("AWS::IAM::ManagedPolicy")]


def test_every_condition_is_on(stack: Stack) -> None:
    """The fixture renders the statements behind every condition (else the sizes below say little)."""
    assert {
        "SessionGateTagKeyGuard",
        "SessionGateControlPlaneGuard",
        "AllowStartSsmSessionBasedOnIamTags",
    } <= set(_managed_policies(stack))
    assert "AdaptChangeRequestFunctionRole" in stack.resources
    assert "SessionLogBucketPolicy" in stack.resources


def test_every_managed_policy_fits_with_room(stack: Stack) -> None:
    sizes = {
        name: _iam_size(stack.resources[name].properties["PolicyDocument"])
        for name in _managed_policies(stack)
    }
    operator = sizes.pop("AllowStartSsmSessionBasedOnIamTags")
    assert operator <= MANAGED_POLICY, operator
    too_big = {name: size for name, size in sizes.items() if size > MANAGED_POLICY * MARGIN}
    assert not too_big, too_big


def test_the_guard_halves_each_fit_and_together_would_not(stack: Stack) -> None:
    """Why the guard is two policies: one would be over IAM's limit."""
    tag_keys = stack.resources["SessionGateTagKeyGuard"].properties["PolicyDocument"]
    control = stack.resources["SessionGateControlPlaneGuard"].properties["PolicyDocument"]
    together = {**tag_keys, "Statement": tag_keys["Statement"] + control["Statement"]}
    assert _iam_size(together) > MANAGED_POLICY
    assert max(_iam_size(tag_keys), _iam_size(control)) <= MANAGED_POLICY * MARGIN


def test_every_role_inline_policies_fit_with_room(stack: Stack) -> None:
    sizes = {
        role.logical_id: sum(_iam_size(p["PolicyDocument"]) for p in role.properties.get("Policies", []))
        for role in stack.of_type("AWS::IAM::Role")
    }
    assert len(sizes) >= 10
    too_big = {name: size for name, size in sizes.items() if size > ROLE_INLINE_POLICIES * MARGIN}
    assert not too_big, too_big


def _resource_policies(stack: Stack) -> list[tuple[str, str, Any]]:
    out = []
    for resource in stack.resources.values():
        props = resource.properties
        document = None
        if resource.type in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
            document = props["PolicyDocument"]
        elif resource.type == "AWS::KMS::Key":
            document = props["KeyPolicy"]
        elif resource.type == "AWS::SecretsManager::ResourcePolicy":
            document = props["ResourcePolicy"]
        elif resource.type == "AWS::DynamoDB::Table" and "ResourcePolicy" in props:
            document = props["ResourcePolicy"]["PolicyDocument"]
        elif resource.type == "AWS::ApiGateway::RestApi" and "Body" in props:
            document = props["Body"].get("x-amazon-apigateway-policy")
        if document is not None:
            out.append((resource.logical_id, resource.type, document))
    return out


def test_every_resource_policy_fits_with_room(stack: Stack) -> None:
    """Measured with whitespace (DynamoDB and S3 count it; CloudFormation sends compact JSON)."""
    policies = _resource_policies(stack)
    assert {t for _, t, _ in policies} == set(RESOURCE_POLICIES)
    too_big = {
        name: len(_deployed(document))
        for name, type_, document in policies
        if len(_deployed(document)) > RESOURCE_POLICIES[type_] * MARGIN
    }
    assert not too_big, too_big


def test_every_event_pattern_fits_the_default_quota(stack: Stack) -> None:
    """No rule needs an EventBridge quota increase to deploy."""
    sizes = {
        rule.logical_id: len(_deployed(rule.properties["EventPattern"]))
        for rule in stack.of_type("AWS::Events::Rule")
        if "EventPattern" in rule.properties
    }
    assert len(sizes) >= 5
    too_big = {name: size for name, size in sizes.items() if size > EVENT_PATTERN}
    assert not too_big, too_big
