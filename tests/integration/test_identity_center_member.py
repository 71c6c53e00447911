"""Issue 15, member-account setup: scenarios/identity-center.yaml's story with the people and the instance
in a member account, through the native API handlers, on moto across two accounts.

The sandbox emulates one account, so this plays the member-account half here: moto keys IAM and EC2 by
account (credentials from ``sts:AssumeRole`` into another account id act in that account), so the
permission set's role, its operator policy and the instance live in the member account; the requests,
the ledger, the schedules and the identity store are the engine account's. Not covered here: the member
stack's CloudFormation deployment (its operator policy is created from the engine template resolved for
the member account, which tests/integration/test_template.py shows is the member template's document),
API Gateway's resource policy (tests/integration/test_native_template.py), and Session Manager's
sessions, which the SSM fake keeps in one place for every account.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sandbox import cfn, fake_iam
from sandbox.fake_iam import RESERVED_SSO_PATH
from sandbox.policy import SessionChecker
from tests.integration.test_native_api import CONTEXT, approve, call, deployed, handler, set_policy
from tests.support.native import MEMBER, member_session
from tests.support.stack import REGION, Stack, environment

__all__ = ["deployed"]  # the fixture this module's fixture builds on

OPERATORS = "AWSReservedSSO_Operators_0123456789abcdef"
LEADS = "AWSReservedSSO_Leads_0123456789abcdef"
STORE_ID = "d-1234567890"
OPERATOR_POLICY = "AllowStartSsmSessionBasedOnIamTags"


def sso(role: str, user: str) -> str:
    """The ARN API Gateway reports for an IAM Identity Center user's session in the member account."""
    return f"arn:aws:sts::{MEMBER}:assumed-role/{role}/{user}"


ALICE, BOB, ERIN = (sso(OPERATORS, f"{who}@example.com") for who in ("alice", "bob", "erin"))
ALICE_LEAD = sso(LEADS, "alice@example.com")


@pytest.fixture
def member(deployed: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[Stack, Any, str, str]:
    """BindingMode auto, one member account; there the Operators permission set's role with the operator
    policy (a customer managed policy referenced by name) and an instance. The identity store (in the
    engine account) holds the people and the approver group Platform-Leads: alice, carol and erin."""
    stack = deployed
    reader = stack.client("iam").create_role(
        RoleName="SessionGateIdentityStoreReader",
        Path="/sessiongate/",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    stack.settings = replace(
        stack.settings,
        member_accounts=(MEMBER,),
        member_external_id="org-secret-1",
        binding_mode="auto",
        terminate_sessions_on_expiry=True,
        identity_store_id=STORE_ID,
        identity_store_role_arn=reader,
    )
    for name, value in environment(stack.settings).items():
        monkeypatch.setenv(name, value)
    stack.deploy(client=stack.native_client, member_client=stack.member_client)

    session = member_session(stack)
    iam = session.client("iam")
    document = cfn.load("sessiongate", MEMBER, REGION).resources[OPERATOR_POLICY].properties["PolicyDocument"]
    policy = iam.create_policy(PolicyName=OPERATOR_POLICY, PolicyDocument=json.dumps(document))["Policy"]
    assert policy["Arn"] == f"arn:aws:iam::{MEMBER}:policy/{OPERATOR_POLICY}"  # path /: the name is enough
    for role in (OPERATORS, LEADS):
        iam.create_role(RoleName=role, Path=RESERVED_SSO_PATH, AssumeRolePolicyDocument="{}")
    with fake_iam.as_identity_center():  # IAM lets only Identity Center attach it (the permission set)
        iam.attach_role_policy(RoleName=OPERATORS, PolicyArn=policy["Arn"])
    instance: str = session.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    stack.ssm.managed.add(instance)

    store = stack.client("identitystore")
    ids = {
        who: store.create_user(
            IdentityStoreId=STORE_ID,
            UserName=f"{who}@example.com",
            DisplayName=who,
            Name={"GivenName": who, "FamilyName": "Example"},
        )["UserId"]
        for who in ("alice", "bob", "carol", "erin")
    }
    group = store.create_group(IdentityStoreId=STORE_ID, DisplayName="Platform-Leads")["GroupId"]
    for who in ("alice", "carol", "erin"):
        store.create_group_membership(IdentityStoreId=STORE_ID, GroupId=group, MemberId={"UserId": ids[who]})
    set_policy(
        stack,
        {
            "version": 1,
            "rules": [
                {"name": "default", "levels": [{"approvers": [{"identity_center_group": "Platform-Leads"}]}]}
            ],
        },
    )
    role_id = str(iam.get_role(RoleName=OPERATORS)["Role"]["RoleId"])
    return stack, session, instance, role_id


def test_a_member_accounts_identity_center_user_gets_a_shell_bound_to_her_session(
    member: tuple[Stack, Any, str, str],
) -> None:
    stack, session, instance, role_id = member
    ec2 = session.client("ec2")
    checker = SessionChecker(session.client("iam"), REGION, MEMBER, ec2)

    def may_start(user: str) -> bool:
        return checker.may_start_session("role", OPERATORS, instance, f"{role_id}:{user}@example.com").allowed

    def slot_tags() -> dict[str, str]:
        tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance]}])["Tags"]
        return {t["Key"]: t["Value"] for t in tags if t["Key"].startswith("SecurityAllowSession")}

    assert not may_start("alice")
    status, out = call(
        "POST /requests", ALICE, body={"instance_id": instance, "reason": "restart the worker"}
    )
    assert status == 201, out
    request = out["request"]
    # The caller's account decides: alice's session of the member account's Operators role, there.
    assert (request["account"], request["principal_arn"]) == (
        MEMBER,
        f"arn:aws:iam::{MEMBER}:role{RESERVED_SSO_PATH}{OPERATORS}",
    )
    request_id = request["request_id"]
    assert approve(request_id, ALICE_LEAD)[1]["error"] == "self_approval"  # alice on another permission set
    assert approve(request_id, BOB)[1]["error"] == "not_an_approver"  # same role, not in the group
    status, out = approve(request_id, ERIN)  # same role, in the group: the access is alice's session's only
    assert (status, out["request"]["status"]) == (200, "APPROVED"), out

    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["account"] == MEMBER
    assert handler("grant_access")(bus_event, CONTEXT)["result"] == "granted"
    assert slot_tags() == {"SecurityAllowSessionFor1": f"{role_id}:alice@example.com"}
    assert session.client("iam").list_role_tags(RoleName=OPERATORS)["Tags"] == []
    assert stack.client("ec2").describe_instances()["Reservations"] == []  # nothing in the engine account
    assert may_start("alice")
    assert not may_start("bob")
    assert not may_start("erin")
    shell = stack.ssm.open_session(
        owner_arn=ALICE, user_id=f"{role_id}:alice@example.com", target=instance, now=stack.clock.now()
    )
    bobs = stack.ssm.open_session(
        owner_arn=BOB, user_id=f"{role_id}:bob@example.com", target=instance, now=stack.clock.now()
    )

    stack.clock.advance(timedelta(minutes=15))
    schedule = stack.schedules()[f"sg-revoke-rq-{request_id}"]
    assert handler("revoke_access")(json.loads(schedule["Target"]["Input"]), CONTEXT)["result"] == "revoked"
    assert slot_tags() == {}
    assert not may_start("alice")
    # Expiry ends alice's shell only (bob's was never SessionGate's to end).
    assert {sid: s["Status"] for sid, s in stack.ssm.sessions.items()} == {
        shell: "Terminated",
        bobs: "Connected",
    }
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "EXPIRED"
