"""The identity-store trust is as narrow as it says: only the grant and request API roles may assume the
identity-store read role, only when the stack names it, and that role reads one identity store's users,
groups and memberships, nothing else (template.yaml and member/identity-store.yaml, evaluated)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import cfn
from sandbox.policy import SessionChecker
from sandbox.world import ACCOUNT, REGION, World
from sessiongate.settings import Settings
from tests.support.template import ROOT, function_statements, template

READER = "arn:aws:iam::210987654321:role/sessiongate/SessionGateIdentityStoreReader"
OTHER = "arn:aws:iam::210987654321:role/OrganizationAccountAccessRole"
STORE_ID = "d-1234567890"
FUNCTIONS = {
    "GrantAccessFunctionRole": True,
    "RequestApiFunctionRole": True,
    "ChatInteractionsFunctionRole": True,  # approves through the request API's code (issue 19)
    "ChatNotifyFunctionRole": False,
    "RevokeAccessFunctionRole": False,
    "ReconcileGrantsFunctionRole": False,
}


@pytest.fixture(scope="module")
def with_store() -> Iterator[tuple[World, SessionChecker]]:
    with World(parameters={"IdentityStoreId": STORE_ID, "IdentityStoreRoleArn": READER}) as world:
        yield world, SessionChecker(world.client("iam"), REGION, ACCOUNT)


@pytest.mark.parametrize(("role", "reads_groups"), FUNCTIONS.items())
def test_only_the_grant_and_request_api_roles_assume_exactly_the_read_role(
    with_store: tuple[World, SessionChecker], role: str, reads_groups: bool
) -> None:
    world, checker = with_store
    name = world.stack.resources[role].physical_id
    assert checker.authorized("role", name, "sts:AssumeRole", READER) is reads_groups
    assert not checker.authorized("role", name, "sts:AssumeRole", OTHER)


def test_the_functions_are_told_the_store_and_the_role(with_store: tuple[World, SessionChecker]) -> None:
    world, _ = with_store
    for logical_id in ("GrantAccessFunction", "RequestApiFunction"):
        env = world.function(logical_id).environment
        settings = Settings.from_env(env)
        assert (settings.identity_store_id, settings.identity_store_role_arn) == (STORE_ID, READER)


def test_without_the_parameters_no_role_may_assume_anything_for_groups() -> None:
    for logical_id in ("GrantAccessFunction", "RequestApiFunction"):
        [statement] = [
            s for s in function_statements(logical_id) if s.get("Sid") == "ReadIdentityCenterGroups"
        ]
        assert statement["Action"] == "sts:AssumeRole"
        assert statement["Resource"] == {"Ref": "IdentityStoreRoleArn"}
        conditional = [
            s
            for policy in template()["Resources"][logical_id]["Properties"]["Policies"]
            for s in policy["Statement"]
            if "Fn::If" in s and s["Fn::If"][1].get("Sid") == "ReadIdentityCenterGroups"
        ]
        assert conditional[0]["Fn::If"][0] == "HasIdentityStore"
        assert conditional[0]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def test_every_role_that_reads_groups_is_in_the_trusted_roles_output() -> None:
    """Review of issue 19, finding 4: a role left out of IdentityStoreReaderTrustedRoleArns (the reader
    role's trust) fails closed, so group approvers were always refused in chat."""
    value = template()["Outputs"]["IdentityStoreReaderTrustedRoleArns"]["Value"]["Fn::Join"]
    assert value[0] == ","
    trusted = {arn["Fn::GetAtt"][0] for arn in value[1]}
    readers = {role for role, reads in FUNCTIONS.items() if reads}
    assert trusted == readers


def test_the_store_parameters_are_set_together() -> None:
    with pytest.raises(ValueError, match="IdentityStoreId and IdentityStoreRoleArn are set together"):
        cfn.load("sessiongate", ACCOUNT, REGION, {"IdentityStoreId": STORE_ID})


def _reader() -> dict[str, Any]:
    return template(ROOT / "member" / "identity-store.yaml")


def test_the_read_role_trusts_only_the_named_engine_roles_and_reads_one_store() -> None:
    role = _reader()["Resources"]["IdentityStoreReaderRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": {"Ref": "TrustedRoleArns"}}}
    [policy] = role["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == [
        "identitystore:GetGroupId",
        "identitystore:GetUserId",
        "identitystore:IsMemberInGroups",
    ]
    resources = [r["Fn::Sub"] for r in statement["Resource"]]
    assert resources == [
        "arn:${AWS::Partition}:identitystore::${AWS::AccountId}:identitystore/${IdentityStoreId}",
        "arn:${AWS::Partition}:identitystore:::user/*",
        "arn:${AWS::Partition}:identitystore:::group/*",
        "arn:${AWS::Partition}:identitystore:::membership/*",
    ]
