"""Opt-in: ask real IAM (iam:SimulateCustomPolicy) the questions the offline evaluator answers.

Run with real credentials for an account you may query (no resources are created):
    SESSIONGATE_AWS_TESTS=1 AWS_PROFILE=... .venv/bin/pytest -m aws tests/aws
Needs iam:SimulateCustomPolicy and sts:GetCallerIdentity. Skipped in the default (offline) run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(
        os.environ.get("SESSIONGATE_AWS_TESTS") != "1", reason="real-AWS test: set SESSIONGATE_AWS_TESTS=1"
    ),
]


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    import boto3

    from sandbox import cfn

    session = boto3.session.Session()
    account = session.client("sts").get_caller_identity()["Account"]
    region = session.region_name or "us-east-1"
    stack = cfn.load("sessiongate", account, region)
    return {"iam": session.client("iam"), "stack": stack, "account": account, "region": region}


def _simulate(
    real: dict[str, Any], policy: dict[str, Any], action: str, resource: str, context: list[dict[str, Any]]
) -> str:
    result = real["iam"].simulate_custom_policy(
        PolicyInputList=[json.dumps(policy)],
        ActionNames=[action],
        ResourceArns=[resource],
        ContextEntries=context,
    )
    return str(result["EvaluationResults"][0]["EvalDecision"])


def _tag(key: str, value: str) -> dict[str, Any]:
    return {
        "ContextKeyName": f"aws:PrincipalTag/{key}",
        "ContextKeyValues": [value],
        "ContextKeyType": "string",
    }


def test_operator_policy_allows_only_the_tagged_instance(real: dict[str, Any]) -> None:
    policy = real["stack"].resources["AllowStartSsmSessionBasedOnIamTags"].properties["PolicyDocument"]
    instance = f"arn:aws:ec2:{real['region']}:{real['account']}:instance/i-0123456789abcdef0"
    other = f"arn:aws:ec2:{real['region']}:{real['account']}:instance/i-0fedcba9876543210"
    tagged = [_tag("SecurityAllowSessionInstance2", "i-0123456789abcdef0")]
    assert _simulate(real, policy, "ssm:StartSession", instance, tagged) == "allowed"
    assert _simulate(real, policy, "ssm:StartSession", other, tagged) != "allowed"
    assert _simulate(real, policy, "ssm:StartSession", instance, []) != "allowed"


def test_grant_role_tags_only_slot_keys(real: dict[str, Any]) -> None:
    [policy] = [
        p["PolicyDocument"]
        for p in real["stack"].resources["GrantAccessFunctionRole"].properties["Policies"]
        if p["PolicyName"].endswith("RolePolicy0")
    ]
    user = f"arn:aws:iam::{real['account']}:user/alice"

    def keys(*names: str) -> list[dict[str, Any]]:
        return [
            {"ContextKeyName": "aws:TagKeys", "ContextKeyValues": list(names), "ContextKeyType": "stringList"}
        ]

    assert _simulate(real, policy, "iam:TagUser", user, keys("SecurityAllowSessionInstance")) == "allowed"
    assert _simulate(real, policy, "iam:TagUser", user, keys("Owner")) != "allowed"
    assert (
        _simulate(real, policy, "iam:UntagUser", user, keys("SecurityAllowSessionInstance", "Owner"))
        != "allowed"
    )


def _context(key: str, value: str | list[str], kind: str = "string") -> dict[str, Any]:
    values = value if isinstance(value, list) else [value]
    return {"ContextKeyName": key, "ContextKeyValues": values, "ContextKeyType": kind}


def test_operator_policy_allows_the_person_whose_userid_the_instance_carries(real: dict[str, Any]) -> None:
    """Instance binding (issue 15): real IAM reads ssm:resourceTag/<slot key> against ${aws:userid}, so
    one person of a shared Identity Center role gets the shell and another session of it does not."""
    policy = real["stack"].resources["AllowStartSsmSessionBasedOnIamTags"].properties["PolicyDocument"]
    instance = f"arn:aws:ec2:{real['region']}:{real['account']}:instance/i-0123456789abcdef0"
    alice = "AROAEXAMPLEROLEID0001:alice@example.com"
    tag = _context("ssm:resourceTag/SecurityAllowSessionFor1", alice)
    assert (
        _simulate(real, policy, "ssm:StartSession", instance, [tag, _context("aws:userid", alice)])
        == "allowed"
    )
    bob = _context("aws:userid", "AROAEXAMPLEROLEID0001:bob@example.com")
    assert _simulate(real, policy, "ssm:StartSession", instance, [tag, bob]) != "allowed"
    assert _simulate(real, policy, "ssm:StartSession", instance, [_context("aws:userid", alice)]) != "allowed"


def test_guard_denies_slot_keys_on_instances_groups_and_managed_nodes(real: dict[str, Any]) -> None:
    """The guard's denials as real IAM evaluates them: slot keys in any letter case on EC2 CreateTags
    (also at RunInstances), on the launch calls RunInstances and CreateFleet, Auto Scaling group tags and
    SSM resource tags (issue 15, review A)."""
    guard = real["stack"].resources["SessionGateTagKeyGuard"].properties["PolicyDocument"]
    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    region, account = real["region"], real["account"]
    cases = [
        ("ec2:CreateTags", f"arn:aws:ec2:{region}:{account}:instance/i-0123456789abcdef0"),
        ("ec2:RunInstances", f"arn:aws:ec2:{region}:{account}:instance/*"),
        ("ec2:CreateFleet", f"arn:aws:ec2:{region}:{account}:instance/*"),
        ("autoscaling:CreateOrUpdateTags", f"arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*"),
        ("ssm:AddTagsToResource", f"arn:aws:ssm:{region}:{account}:managed-instance/mi-0123456789abcdef0"),
    ]
    for action, resource in cases:
        for key in ("SecurityAllowSessionFor1", "securityallowsessionfor1"):
            keys = _context("aws:TagKeys", [key], "stringList")
            result = real["iam"].simulate_custom_policy(
                PolicyInputList=[json.dumps(allow_all), json.dumps(guard)],
                ActionNames=[action],
                ResourceArns=[resource],
                ContextEntries=[keys],
            )
            assert result["EvaluationResults"][0]["EvalDecision"] != "allowed", (action, key)
