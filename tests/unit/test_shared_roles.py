"""Shared roles: tagging a role opens the instance to every session of it, so SessionGate refuses or binds."""

from __future__ import annotations

from dataclasses import replace

from sessiongate.model import GrantStatus
from tests.support.stack import ACCOUNT, Stack

SSO_ROLE = "AWSReservedSSO_Ops_0123456789abcdef"
DAVE = f"arn:aws:sts::{ACCOUNT}:assumed-role/{SSO_ROLE}/dave@example.com"


def test_shared_role_is_refused_by_default(stack: Stack) -> None:
    stack.role(SSO_ROLE)
    request = stack.approved(instance_id=stack.instance(), principal=SSO_ROLE, kind="role", requester=DAVE)
    outcome = stack.engine().grant(request.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["shared_role_refused"]
    assert stack.tags("role", SSO_ROLE) == {}


def test_shared_role_is_bound_to_the_requesters_session(stack: Stack) -> None:
    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role(SSO_ROLE)
    role_id = stack.client("iam").get_role(RoleName=SSO_ROLE)["Role"]["RoleId"]
    request = stack.approved(instance_id=stack.instance(), principal=SSO_ROLE, kind="role", requester=DAVE)

    outcome = stack.engine().grant(request.to_detail())

    assert outcome.result == "granted"
    assert stack.tags("role", SSO_ROLE) == {
        "SecurityAllowSessionInstance": request.instance_id,
        "SecurityAllowSessionUser1": f"{role_id}:dave@example.com",
    }
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.bound_user_id == f"{role_id}:dave@example.com"
    assert stack.engine().revoke(request.grant_id).result == "revoked"
    assert stack.tags("role", SSO_ROLE) == {}  # both keys of the slot are removed


def test_shared_role_requested_by_someone_else_cannot_be_bound(stack: Stack) -> None:
    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role(SSO_ROLE)
    request = stack.approved(
        instance_id=stack.instance(),
        principal=SSO_ROLE,
        kind="role",
        requester=f"arn:aws:iam::{ACCOUNT}:user/bob",
    )
    outcome = stack.engine().grant(request.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["shared_role_unbindable"]
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED


def test_ordinary_roles_are_not_bound(stack: Stack) -> None:
    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role("ops-oncall")
    request = stack.approved(
        instance_id=stack.instance(),
        principal="ops-oncall",
        kind="role",
        requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/ops-oncall/dave",
        approvers=(f"arn:aws:iam::{ACCOUNT}:user/bob",),
    )
    assert stack.engine().grant(request.to_detail()).result == "granted"
    assert stack.tags("role", "ops-oncall") == {"SecurityAllowSessionInstance": request.instance_id}
