"""Shared roles: tagging a role opens the instance to every session of it, so SessionGate refuses or binds."""

from __future__ import annotations

from dataclasses import replace

from sessiongate.core.model import GrantStatus
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


IDC_PATH = "/aws-reserved/sso.amazonaws.com/"


def test_identity_center_role_is_denied_at_once(stack: Stack) -> None:
    """IAM refuses TagRole on AWSReservedSSO_* roles: a clear denial, before any write, never a retry."""
    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role(SSO_ROLE, path=IDC_PATH)
    request = stack.approved(instance_id=stack.instance(), principal=SSO_ROLE, kind="role", requester=DAVE)

    outcome = stack.engine().grant(request.to_detail())

    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["principal_unmodifiable"]
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED
    assert grant.slot is None  # denied before a slot was claimed
    assert stack.calls["iam:TagRole"] == 0
    assert [n["attributes"]["event_type"] for n in stack.notifications()] == ["AccessDenied"]


def test_identity_center_refusal_of_the_tag_write_is_a_denial(stack: Stack) -> None:
    """Had the guardrail missed it, IAM's UnmodifiableEntity on TagRole still ends in a recorded denial."""
    from sessiongate.core import guardrails

    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role(SSO_ROLE, path=IDC_PATH)
    request = stack.approved(instance_id=stack.instance(), principal=SSO_ROLE, kind="role", requester=DAVE)
    original = guardrails.IDENTITY_CENTER_ROLE_PATH
    guardrails.IDENTITY_CENTER_ROLE_PATH = "/not-this-path/"
    try:
        outcome = stack.engine().grant(request.to_detail())
    finally:
        guardrails.IDENTITY_CENTER_ROLE_PATH = original

    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["principal_unmodifiable"]
    assert stack.calls["iam:TagRole"] == 1  # one refused write, no retry
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.DENIED


def test_revocation_on_an_identity_center_role_completes(stack: Stack) -> None:
    """A role replaced by an Identity Center role of the same name: UntagRole is refused, and since IAM
    refuses TagRole the same way no slot tag can be on it, so the revocation completes, without retries."""
    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role(SSO_ROLE)
    request = stack.approved(instance_id=stack.instance(), principal=SSO_ROLE, kind="role", requester=DAVE)
    assert stack.engine().grant(request.to_detail()).result == "granted"
    iam = stack.client("iam")
    iam.delete_role(RoleName=SSO_ROLE)
    stack.role(SSO_ROLE, path=IDC_PATH)

    outcome = stack.engine().revoke(request.grant_id, reason="ended", by="test")

    assert outcome.result == "revoked"
    assert stack.calls["iam:UntagRole"] == 1
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.REVOKED


def test_session_name_an_iam_tag_value_cannot_hold_is_denied_before_any_write(stack: Stack) -> None:
    """Role session names may contain ',' (STS RoleSessionName [\\w+=,.@-]*); IAM tag values may not."""
    stack.settings = replace(stack.settings, bind_shared_role_sessions=True)
    stack.role(SSO_ROLE)
    requester = f"arn:aws:sts::{ACCOUNT}:assumed-role/{SSO_ROLE}/dave,ops"
    request = stack.approved(
        instance_id=stack.instance(), principal=SSO_ROLE, kind="role", requester=requester
    )

    outcome = stack.engine().grant(request.to_detail())

    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["session_name_untaggable"]
    assert stack.calls["iam:TagRole"] == 0
    assert stack.tags("role", SSO_ROLE) == {}
