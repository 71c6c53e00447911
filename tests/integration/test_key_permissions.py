"""Who can sign what, by an IAM policy evaluator over the template's key policies and role policies.

principalmapper evaluates a KMS call with the key policy as the resource policy (same-account KMS needs
the key policy to allow: "KMS key access and permissions", AWS KMS developer guide). The attacker holds
admin rights on everything but IAM (kms:*, ssm:*, dynamodb:*, lambda:*, events:* through IAM).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from sandbox import cfn
from sandbox.policy import principal_node
from sandbox.world import ACCOUNT, REGION

from principalmapper.common import Policy  # isort: skip  (after sandbox.policy's 3.11 shim)
from principalmapper.querying.query_interface import local_check_authorization_full  # isort: skip

DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/SessionGateDeployer"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b0c0d0e-1111-2222-3333-444455556666"
TRUST = {"Version": "2012-10-17", "Statement": []}
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["kms:*", "ssm:*", "dynamodb:*", "lambda:*", "events:*"],
            "Resource": "*",
        }
    ],
}


@functools.cache
def stack(deployers: str) -> cfn.Stack:
    return cfn.load("sessiongate", ACCOUNT, REGION, {"DeployerArns": deployers})


def node(s: cfn.Stack, who: str) -> Any:
    if who in ("RequestApiFunctionRole", "GrantAccessFunctionRole", "ChatInteractionsFunctionRole"):
        role = s.resources[who]
        policies = [
            Policy(role.arn, p["PolicyName"], {"Version": "2012-10-17", **p["PolicyDocument"]})
            for p in role.properties.get("Policies", [])
        ]
        return principal_node(
            role.arn, "AROAROLE", policies, trust=role.properties["AssumeRolePolicyDocument"]
        )
    return principal_node(who, "AROAHUMAN", [Policy(who, "admin", ADMIN_POLICY)], trust=TRUST)


def may(deployers: str, who: str, action: str, key: str) -> bool:
    s = stack(deployers)
    key_policy = s.resources[key].properties["KeyPolicy"]
    return bool(
        local_check_authorization_full(
            node(s, who), action, KEY, {}, resource_policy=key_policy, resource_owner=ACCOUNT
        )
    )


@pytest.mark.parametrize(
    ("who", "action", "key", "allowed"),
    [
        # The approval policy: only the deployers sign; SessionGate's two roles only verify.
        (DEPLOYER, "kms:GenerateMac", "ApprovalPolicyKey", True),
        (ADMIN, "kms:GenerateMac", "ApprovalPolicyKey", False),  # an SSM/KMS admin cannot sign a policy
        (ADMIN, "kms:PutKeyPolicy", "ApprovalPolicyKey", False),
        ("RequestApiFunctionRole", "kms:GenerateMac", "ApprovalPolicyKey", False),
        ("RequestApiFunctionRole", "kms:VerifyMac", "ApprovalPolicyKey", True),
        ("GrantAccessFunctionRole", "kms:GenerateMac", "ApprovalPolicyKey", False),
        ("GrantAccessFunctionRole", "kms:VerifyMac", "ApprovalPolicyKey", True),
        # Approvals: only the request API signs, only the grant function verifies.
        ("RequestApiFunctionRole", "kms:GenerateMac", "ApprovalKey", True),
        ("RequestApiFunctionRole", "kms:VerifyMac", "ApprovalKey", False),
        ("GrantAccessFunctionRole", "kms:GenerateMac", "ApprovalKey", False),
        ("GrantAccessFunctionRole", "kms:VerifyMac", "ApprovalKey", True),
        # Chat links are sealed with it: the chat function verifies them (review finding 3).
        ("ChatInteractionsFunctionRole", "kms:VerifyMac", "ApprovalKey", True),
        (ADMIN, "kms:VerifyMac", "ApprovalKey", False),
        (ADMIN, "kms:GenerateMac", "ApprovalKey", False),  # a DynamoDB/KMS admin cannot sign an approval
        (ADMIN, "kms:CreateGrant", "ApprovalKey", False),
        (DEPLOYER, "kms:GenerateMac", "ApprovalKey", False),  # not even the deployers, without a change
        (DEPLOYER, "kms:PutKeyPolicy", "ApprovalKey", True),  # (which CloudTrail records)
    ],
)
def test_with_deployer_arns_nobody_else_can_sign(who: str, action: str, key: str, allowed: bool) -> None:
    assert may(DEPLOYER, who, action, key) is allowed


@pytest.mark.parametrize(
    ("action", "key", "allowed"),
    [
        ("kms:GenerateMac", "ApprovalPolicyKey", True),  # the documented weakness of no DeployerArns
        ("kms:GenerateMac", "ApprovalKey", False),  # approvals still need a key policy change first
        ("kms:PutKeyPolicy", "ApprovalKey", True),
    ],
)
def test_without_deployer_arns_the_account_delegates_through_iam(
    action: str, key: str, allowed: bool
) -> None:
    assert may("", ADMIN, action, key) is allowed
