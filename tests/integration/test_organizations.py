"""Organizations: the engine grants and revokes in member accounts through their member role.

moto's multi-account support: credentials from sts:AssumeRole into another account id act in that
account's own IAM/EC2 backends. The ledger, schedules and notifications stay in the engine account.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest

from sandbox.faults import FaultInjector
from sessiongate.core.model import GrantStatus
from sessiongate.errors import TransientError
from sessiongate.wiring import build_engine
from tests.support.stack import ACCOUNT, REGION, Stack

MEMBER = "210987654321"
OUTSIDER = "555555555555"


class Member:
    """Clients acting in the member account (as its admins would, to set the scene)."""

    def __init__(self, stack: Stack) -> None:
        sts = stack.client("sts")
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{MEMBER}:role/OrganizationAccountAccessRole", RoleSessionName="setup"
        )["Credentials"]
        self.session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=REGION,
        )
        self.iam = self.session.client("iam")
        self.ec2 = self.session.client("ec2")

    def tags(self, user: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.iam.list_user_tags(UserName=user)["Tags"]}


@pytest.fixture
def member(stack: Stack) -> Member:
    stack.settings = replace(stack.settings, member_accounts=(MEMBER,), member_external_id="org-secret-1")
    return Member(stack)


def _engine(stack: Stack, calls: list[dict[str, Any]] | None = None) -> Any:
    return build_engine(
        stack.settings, clock=stack.clock, client=stack.client, member_client=stack.member_client
    )


def _request(stack: Stack, member: Member, **kwargs: Any) -> Any:
    member.iam.create_user(UserName="alice")
    instance = member.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    stack.ssm.managed.add(instance)
    request = stack.approved(instance_id=instance, principal="alice")
    return replace(request, account=kwargs.get("account", MEMBER))


def test_grant_and_revoke_act_in_the_member_account(stack: Stack, member: Member) -> None:
    request = _request(stack, member)
    # The change request names the member account (runbook parameter AccountId).
    stack.ssm.executions[request.grant_id.removeprefix("cm-")]["Runbooks"][0]["Parameters"]["AccountId"] = [
        MEMBER
    ]
    engine = _engine(stack)

    outcome = engine.grant(request.to_detail())

    assert outcome.result == "granted", outcome
    assert outcome.detail["principal_arn"] == f"arn:aws:iam::{MEMBER}:user/alice"
    assert member.tags("alice") == {"SecurityAllowSessionInstance": request.instance_id}
    # Nothing was tagged in the engine account (only the approver, in the approver group, is a user
    # there), the ledger and schedule are central.
    users = stack.client("iam").list_users()["Users"]
    assert [u["UserName"] for u in users] == ["approver"]
    assert stack.client("iam").list_user_tags(UserName="approver")["Tags"] == []
    grant = engine.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.account == MEMBER
    assert list(stack.schedules()) == [f"sg-revoke-{request.grant_id}"]
    [note] = stack.notifications()
    assert note["attributes"]["account"] == MEMBER

    stack.clock.advance(timedelta(minutes=10))
    assert engine.revoke(request.grant_id).result == "revoked"
    assert member.tags("alice") == {}


def test_member_role_is_assumed_with_the_external_id(stack: Stack, member: Member) -> None:
    request = _request(stack, member)
    stack.ssm.executions[request.grant_id.removeprefix("cm-")]["Runbooks"][0]["Parameters"]["AccountId"] = [
        MEMBER
    ]
    seen: list[dict[str, Any]] = []
    stack.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: seen.append(params)
    )
    _engine(stack).grant(request.to_detail())
    assert seen[-1]["RoleArn"] == f"arn:aws:iam::{MEMBER}:role/sessiongate/SessionGateMember"
    assert seen[-1]["ExternalId"] == "org-secret-1"


def test_account_outside_the_member_list_is_refused_without_assuming_anything(
    stack: Stack, member: Member
) -> None:
    request = _request(stack, member, account=OUTSIDER)
    stack.calls.clear()
    outcome = _engine(stack).grant(request.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["account_not_allowed"]
    assert "sts:AssumeRole" not in stack.calls
    assert member.tags("alice") == {}


def test_missing_member_role_is_a_clear_denial(stack: Stack, member: Member) -> None:
    request = _request(stack, member)
    faults = FaultInjector()
    faults.attach(stack.client("sts"))
    faults.add("sts:AssumeRole", "AccessDenied", times=1, status=403)
    outcome = _engine(stack).grant(request.to_detail())
    assert outcome.result == "denied"
    [denial] = outcome.detail["denials"]
    assert denial["code"] == "member_role_unavailable"
    assert f"arn:aws:iam::{MEMBER}:role/sessiongate/SessionGateMember" in denial["message"]
    grant = _engine(stack).ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED


def test_revocation_that_cannot_reach_the_member_is_retried_not_skipped(stack: Stack, member: Member) -> None:
    request = _request(stack, member)
    stack.ssm.executions[request.grant_id.removeprefix("cm-")]["Runbooks"][0]["Parameters"]["AccountId"] = [
        MEMBER
    ]
    assert _engine(stack).grant(request.to_detail()).result == "granted"
    faults = FaultInjector()
    faults.attach(stack.client("sts"))
    faults.add("sts:AssumeRole", "AccessDenied", times=1, status=403)
    with pytest.raises(TransientError, match="cannot reach account"):
        _engine(stack).revoke(request.grant_id)
    assert member.tags("alice") == {"SecurityAllowSessionInstance": request.instance_id}
    # The retry (a fresh engine: credentials are not cached across invocations here) succeeds.
    assert _engine(stack).revoke(request.grant_id).result == "revoked"
    assert member.tags("alice") == {}


def test_change_request_naming_the_member_account_is_verified(stack: Stack, member: Member) -> None:
    """An event claiming a member account for a change request that names none is an origin mismatch."""
    request = _request(stack, member)
    outcome = _engine(stack).grant(request.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["origin_mismatch"]
    assert member.tags("alice") == {}
    assert ACCOUNT != MEMBER


def test_the_change_manager_adapter_asks_a_member_account_with_a_read_only_session(
    stack: Stack, member: Member
) -> None:
    """A change request naming a member account: whether its instance is a managed node is asked there,
    through the member role (which may also tag), with a session that may only read instances."""
    from sessiongate.adapters.accounts import READ_INSTANCES_ONLY
    from sessiongate.wiring import build_change_request_adapter
    from tests.conftest import load_event
    from tests.support.stack import change_request

    request = _request(stack, member)
    stack.ssm.managed.discard(request.instance_id)
    sample = load_event("change_request_approved.json")
    # The sample status event's change request (its execution id and OpsItem), for the member instance.
    detail = sample["detail"]
    request = replace(request, grant_id=f"cm-{detail['change-request-id']}", origin_ref=detail["ops-item-id"])
    execution = change_request(request)
    execution["Runbooks"][0]["Parameters"]["AccountId"] = [MEMBER]
    stack.ssm.add_execution(execution)
    stack.approvers(*request.approver_arns)
    assumed: list[dict[str, Any]] = []
    stack.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: assumed.append(dict(params))
    )
    adapter = build_change_request_adapter(
        stack.settings, clock=stack.clock, client=stack.client, member_client=stack.member_client
    )

    outcome = adapter.on_change_request(sample)

    assert outcome.result == "denied", outcome
    assert [d["code"] for d in outcome.detail["denials"]] == ["instance_not_managed"]
    [session] = assumed
    assert session["RoleArn"] == f"arn:aws:iam::{MEMBER}:role/sessiongate/SessionGateMember"
    assert (session["RoleSessionName"], session["ExternalId"]) == ("sessiongate-adapter", "org-secret-1")
    assert json.loads(session["Policy"]) == READ_INSTANCES_ONLY
    assert stack.bus_events() == []
    assert member.tags("alice") == {}
