"""Instance-side binding (issue 15) on moto: the grant tags the instance with the person's aws:userid,
the revocation removes it only while it is the grant's, the reconciler removes instance-tag drift."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sessiongate.core.binding import instance_scope
from tests.support.stack import ACCOUNT, Stack

IDC_ROLE = "AWSReservedSSO_Operators_0123456789abcdef"
IDC_PATH = "/aws-reserved/sso.amazonaws.com/"
FOR1, FOR2 = "SecurityAllowSessionFor1", "SecurityAllowSessionFor2"


def _session(person: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_ROLE}/{person}"


def _instance_tags(stack: Stack, instance_id: str) -> dict[str, str]:
    [reservation] = stack.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", [])}


def _auto(stack: Stack) -> str:
    stack.settings = replace(stack.settings, binding_mode="auto")
    stack.role(IDC_ROLE, path=IDC_PATH)
    return str(stack.client("iam").get_role(RoleName=IDC_ROLE)["Role"]["RoleId"])


def test_an_identity_center_grant_tags_the_instance_and_its_revocation_untags_it(stack: Stack) -> None:
    role_id = _auto(stack)
    web = stack.instance(tags={"Name": "web"})
    request = stack.approved(
        instance_id=web, principal=IDC_ROLE, kind="role", requester=_session("dave@example.com")
    )
    outcome = stack.engine().grant(request.to_detail())
    assert outcome.result == "granted"
    assert _instance_tags(stack, web) == {"Name": "web", FOR1: f"{role_id}:dave@example.com"}
    assert stack.tags("role", IDC_ROLE) == {}
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert (grant.binding, grant.bound_user_id) == ("instance", f"{role_id}:dave@example.com")
    assert stack.engine().ledger.slot_holder(instance_scope(ACCOUNT, web), 1) == request.grant_id
    # A duplicate delivery changes nothing.
    assert stack.engine().grant(request.to_detail()).result == "duplicate"
    assert stack.engine().revoke(request.grant_id).result == "revoked"
    assert _instance_tags(stack, web) == {"Name": "web"}
    assert stack.engine().ledger.slot_holder(instance_scope(ACCOUNT, web), 1) is None


def test_a_revocation_leaves_a_slot_tag_that_names_someone_else(stack: Stack) -> None:
    role_id = _auto(stack)
    web = stack.instance()
    request = stack.approved(
        instance_id=web, principal=IDC_ROLE, kind="role", requester=_session("dave@example.com")
    )
    assert stack.engine().grant(request.to_detail()).result == "granted"
    erin = f"{role_id}:erin@example.com"
    stack.client("ec2").create_tags(Resources=[web], Tags=[{"Key": FOR1, "Value": erin}])
    assert stack.engine().revoke(request.grant_id).result == "revoked"
    # DeleteTags with the grant's value: the other value stays (the reconciler's business).
    assert _instance_tags(stack, web) == {FOR1: erin}


def test_a_second_person_on_the_same_role_gets_the_next_slot(stack: Stack) -> None:
    role_id = _auto(stack)
    web = stack.instance()
    for person in ("dave@example.com", "erin@example.com"):
        request = stack.approved(instance_id=web, principal=IDC_ROLE, kind="role", requester=_session(person))
        assert stack.engine().grant(request.to_detail()).result == "granted"
    assert _instance_tags(stack, web) == {
        FOR1: f"{role_id}:dave@example.com",
        FOR2: f"{role_id}:erin@example.com",
    }


def test_an_instance_at_ec2s_tag_limit_is_a_denial(stack: Stack) -> None:
    _auto(stack)
    web = stack.instance(tags={f"team{n}": "x" for n in range(50)})
    request = stack.approved(
        instance_id=web, principal=IDC_ROLE, kind="role", requester=_session("dave@example.com")
    )
    outcome = stack.engine().grant(request.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["tag_limit"]


def test_principal_mode_keeps_identity_center_roles_denied(stack: Stack) -> None:
    stack.settings = replace(stack.settings, binding_mode="principal")
    stack.role(IDC_ROLE, path=IDC_PATH)
    web = stack.instance()
    request = stack.approved(
        instance_id=web, principal=IDC_ROLE, kind="role", requester=_session("dave@example.com")
    )
    outcome = stack.engine().grant(request.to_detail())
    assert "principal_unmodifiable" in [d["code"] for d in outcome.detail["denials"]]
    assert FOR1 not in _instance_tags(stack, web)


def _ec2_event(instance_id: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "source": "aws.ec2",
        "detail-type": "AWS API Call via CloudTrail",
        "account": ACCOUNT,
        "detail": {
            "eventSource": "ec2.amazonaws.com",
            "eventName": "CreateTags",
            "recipientAccountId": ACCOUNT,
            "requestParameters": {
                "resourcesSet": {"items": [{"resourceId": instance_id}]},
                "tagSet": {"items": [{"key": k, "value": v} for k, v in tags.items()]},
            },
        },
    }


def test_the_reconciler_removes_instance_tag_drift(stack: Stack) -> None:
    role_id = _auto(stack)
    web = stack.instance()
    request = stack.approved(
        instance_id=web, principal=IDC_ROLE, kind="role", requester=_session("dave@example.com")
    )
    assert stack.engine().grant(request.to_detail()).result == "granted"
    drift = {FOR2: "AIDAMALLORY", FOR1.lower(): "AIDAMALLORY"}
    stack.client("ec2").create_tags(Resources=[web], Tags=[{"Key": k, "Value": v} for k, v in drift.items()])
    outcome = stack.engine().on_tag_event(_ec2_event(web, drift))
    assert outcome.result == "reconciled"
    assert _instance_tags(stack, web) == {FOR1: f"{role_id}:dave@example.com"}
    # And the daily sweep finds what no event reported.
    stack.client("ec2").create_tags(Resources=[web], Tags=[{"Key": "SecurityAllowSessionFor3", "Value": "x"}])
    assert stack.engine().sweep().result == "reconciled"
    assert _instance_tags(stack, web) == {FOR1: f"{role_id}:dave@example.com"}
    stack.clock.advance(timedelta(minutes=10))
    assert stack.engine().revoke(request.grant_id).result == "revoked"
    assert _instance_tags(stack, web) == {}
