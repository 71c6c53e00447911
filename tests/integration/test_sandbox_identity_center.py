"""IAM Identity Center in the sandbox: type: sso principals (the permission set's reserved role, shared,
unmodifiable, with its policies; each person's own session) and groups in the identity store, resolved
by the request API through the identity-store role, read back into the report."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.policy import SessionChecker
from sandbox.scenario.play import Play
from sandbox.scenario.report import Report
from sandbox.scenario.runner import Runner
from sandbox.scenario.schema import ScenarioError, load
from sandbox.scenario.setup import identity_center_parameters, setup
from sandbox.world import ACCOUNT, REGION, World

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "identity-center-approvers.yaml"


@pytest.fixture(scope="module")
def played() -> tuple[Runner, Report]:
    runner = Runner(load(SCENARIO))
    return runner, runner.run()


def test_two_people_on_one_permission_set_share_its_role_and_have_their_own_sessions(
    played: tuple[Runner, Report],
) -> None:
    _, report = played
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]
    alice, erin = report.identity_center["alice-ops"], report.identity_center["erin-ops"]
    assert alice["role"] == erin["role"]
    assert alice["role_path"] == "/aws-reserved/sso.amazonaws.com/"
    role_name = alice["role"].rsplit("/", 1)[-1]
    assert role_name.startswith("AWSReservedSSO_Operators_")
    assert len(role_name.rsplit("_", 1)[-1]) == 16
    assert alice["session_arn"] == f"arn:aws:sts::123456789012:assumed-role/{role_name}/alice@example.com"
    role_id = alice["userid"].split(":")[0]
    assert role_id.startswith("AROA")
    assert (alice["userid"], erin["userid"]) == (
        f"{role_id}:alice@example.com",
        f"{role_id}:erin@example.com",
    )
    assert alice["policies"] == ["AllowStartSsmSessionBasedOnIamTags"]
    assert report.identity_center["alice-lead"]["policies"] == []  # Leads: no managed policy declared
    assert (alice["groups"], erin["groups"]) == (["Platform-Leads"], [])
    assert report.as_dict()["identity_center"] == report.identity_center


def test_iam_refuses_every_write_to_the_permission_set_role() -> None:
    scenario = load(SCENARIO)
    parameters = {**identity_center_parameters(scenario), "ApprovalPolicyParameterName": "/sandbox/policy"}
    with World(parameters=parameters) as world:
        play = Play(world, Report("t", ""), SessionChecker(world.client("iam"), REGION, ACCOUNT))
        setup(play, scenario)
        role = play.principals["alice-ops"]["role"]
        iam = world.client("iam")
        operator = world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
        writes = (
            lambda: iam.tag_role(
                RoleName=role, Tags=[{"Key": "SecurityAllowSessionInstance", "Value": "i-0"}]
            ),
            lambda: iam.detach_role_policy(RoleName=role, PolicyArn=operator),
            lambda: iam.delete_role(RoleName=role),
        )
        for write in writes:
            with pytest.raises(ClientError) as err:
                write()
            assert err.value.response["Error"]["Code"] == "UnmodifiableEntity"
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == [operator]


def _mapping(**changes: Any) -> dict[str, Any]:
    scenario = copy.deepcopy(load(SCENARIO))
    scenario.update(changes)
    return scenario


def test_a_group_the_identity_store_lacks_refuses_approvals_through_the_api() -> None:
    """Fail closed end to end: the request API's lookup (GetGroupId) finds no such group: 503."""
    scenario = _mapping(
        approval_policy={
            "version": 1,
            "rules": [
                {"name": "default", "levels": [{"approvers": [{"identity_center_group": "Platform-Lead"}]}]}
            ],
        },
        steps=[
            {"request": {"via": "api", "id": "r1", "by": "alice", "instance": "web", "reason": "restart it"}},
            {"approve": {"request": "r1", "by": "bob-lead", "expect_error": "identity_store_unavailable"}},
            {"status": {"request": "r1", "expect": "PENDING"}},
        ],
    )
    report = Runner(scenario).run()
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]


def test_groups_name_users_of_sso_principals_and_accounts_are_the_sandboxs_own() -> None:
    with pytest.raises(ScenarioError, match=r"zoe@example\.com is no user of a type: sso principal"):
        Runner(_mapping(identity_center={"groups": {"Platform-Leads": ["zoe@example.com"]}}))
    principals = dict(load(SCENARIO)["principals"])
    principals["frank-ops"] = {
        "type": "sso",
        "user": "frank@example.com",
        "permission_set": "Operators",
        "account": "210987654321",
    }
    with pytest.raises(ScenarioError, match="the sandbox emulates one account"):
        Runner(_mapping(principals=principals)).run()
