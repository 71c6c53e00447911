"""One "same person" rule for both front doors (issue items 6, 9, 10): pure checks, no AWS.

``guardrails.check_approval`` is what the engine applies to every grant (Change Manager and native);
``approval_policy.check_not_involved`` is what the request API applies before recording an approval.
Both must deny the same cases.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sessiongate.access_requests import policy as ap
from sessiongate.access_requests.errors import Refused
from sessiongate.access_requests.http import status_of
from sessiongate.access_requests.records import Request
from sessiongate.core.guardrails import check_approval
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import AccessApproved, Origin
from tests.support.people import make_request

ENGINE = "111111111111"
MEMBER = "222222222222"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def access(account: str, kind: str, name: str, requester: str, approver: str) -> AccessApproved:
    return AccessApproved(
        grant_id="cm-test",
        origin=Origin.CHANGE_MANAGER,
        origin_ref="oi-0123456789ab",
        account=account,
        instance_id="i-0a1b2c3d4e5f60718",
        principal_type=PrincipalType(kind),
        principal_name=name,
        requester_arn=requester,
        approver_arns=(approver,),
        duration_minutes=10,
        not_before=NOW,
        approved_at=NOW,
    )


def pending(account: str, kind: str, name: str, requester: str, path: str = "/") -> Request:
    return make_request(
        account=account,
        principal_type=PrincipalType(kind),
        principal_name=name,
        principal_arn=f"arn:aws:iam::{account}:{kind}{path}{name}",
        requester_arn=requester,
        rule="r",
    )


def engine_codes(account: str, kind: str, name: str, requester: str, approver: str) -> set[str]:
    return {d.code for d in check_approval(access(account, kind, name, requester, approver))}


def api_code(
    account: str, kind: str, name: str, requester: str, approver: str, path: str = "/"
) -> str | None:
    try:
        ap.check_not_involved(pending(account, kind, name, requester, path), approver)
    except Refused as err:
        return f"{status_of(err)} {err.code}"
    return None


ALICE = f"arn:aws:iam::{ENGINE}:user/alice"
CASES = [
    # item 6: member-account operator bob, engine-account approver bob (the native path gives engine bob
    # member bob's access, so they are one person).
    pytest.param(
        MEMBER, "user", "bob", ALICE, f"arn:aws:iam::{ENGINE}:user/bob", "approver_is_operator", id="6-user"
    ),
    pytest.param(
        MEMBER,
        "role",
        "Ops",
        ALICE,
        f"arn:aws:sts::{ENGINE}:assumed-role/Ops/carol",
        "approver_is_operator",
        id="6-role",
    ),
    # item 6, requester side: member-account requester alice, engine-account approver alice.
    pytest.param(
        MEMBER, "user", "dave", f"arn:aws:iam::{MEMBER}:user/alice", ALICE, "self_approval", id="6-requester"
    ),
    # item 9: IAM user alice approves through an approver role session named after her.
    pytest.param(
        ENGINE,
        "user",
        "alice",
        ALICE,
        f"arn:aws:sts::{ENGINE}:assumed-role/Approver/alice",
        "self_approval",
        id="9-session-name",
    ),
    # item 10: a federated user may be anyone (its name is picked by its caller).
    pytest.param(
        ENGINE,
        "user",
        "x",
        f"arn:aws:iam::{ENGINE}:user/x",
        f"arn:aws:sts::{ENGINE}:federated-user/x",
        "self_approval",
        id="10-federated-same-name",
    ),
    pytest.param(
        ENGINE,
        "user",
        "alice",
        ALICE,
        f"arn:aws:sts::{MEMBER}:federated-user/someone",
        "self_approval",
        id="10-federated-other-name",
    ),
]


@pytest.mark.parametrize(("account", "kind", "name", "requester", "approver", "code"), CASES)
def test_both_front_doors_deny_one_person_on_both_sides(
    account: str, kind: str, name: str, requester: str, approver: str, code: str
) -> None:
    assert code in engine_codes(account, kind, name, requester, approver)
    assert api_code(account, kind, name, requester, approver) == f"403 {code}"


@pytest.mark.parametrize(
    ("account", "name", "approver"),
    [
        (MEMBER, "bob", f"arn:aws:iam::{ENGINE}:user/carol"),
        (MEMBER, "bob", f"arn:aws:sts::{ENGINE}:assumed-role/Approver/carol"),
        (ENGINE, "bob", f"arn:aws:iam::{MEMBER}:role/bob"),  # a role named bob is not user bob
    ],
)
def test_different_people_still_approve(account: str, name: str, approver: str) -> None:
    assert engine_codes(account, "user", name, ALICE, approver) == set()
    assert api_code(account, "user", name, ALICE, approver) is None


# Issue 15: a grant bound to one session of a role (instance binding; a shared role bound on the
# principal) goes to the requester's session only. The engine sees the binding in ``bound_user_id``
# (``<RoleId>:<session>``); the request API, in the requester being a session of the role asked for.
IDC_OPS = "AWSReservedSSO_Operators_0123456789abcdef"
RESERVED = "/aws-reserved/sso.amazonaws.com/"


def idc_session(account: str, role: str, user: str) -> str:
    return f"arn:aws:sts::{account}:assumed-role/{role}/{user}"


def bound_access(account: str, role: str, requester: str, approver: str, bound: str | None) -> AccessApproved:
    return replace(access(account, "role", role, requester, approver), bound_user_id=bound)


@pytest.mark.parametrize("account", [ENGINE, MEMBER])
def test_another_person_on_the_same_permission_set_may_approve_a_session_bound_grant(account: str) -> None:
    alice = idc_session(account, IDC_OPS, "alice@example.com")
    erin = idc_session(account, IDC_OPS, "erin@example.com")
    engine = check_approval(bound_access(account, IDC_OPS, alice, erin, "AROAEXAMPLE:alice@example.com"))
    assert engine == []
    assert api_code(account, "role", IDC_OPS, alice, erin, RESERVED) is None


def test_a_session_bound_grant_still_refuses_the_requester_on_another_permission_set() -> None:
    alice = idc_session(ENGINE, IDC_OPS, "alice@example.com")
    alice_lead = idc_session(ENGINE, "AWSReservedSSO_Leads_0123456789abcdef", "alice@example.com")
    bound = bound_access(ENGINE, IDC_OPS, alice, alice_lead, "AROAEXAMPLE:alice@example.com")
    assert "self_approval" in {d.code for d in check_approval(bound)}
    assert api_code(ENGINE, "role", IDC_OPS, alice, alice_lead, RESERVED) == "403 self_approval"


def test_a_session_bound_grant_of_an_ordinary_role_refuses_its_other_sessions() -> None:
    """Whoever assumes an ordinary role picks the session name: erin's session may be alice."""
    alice = idc_session(ENGINE, "ops-shared", "alice")
    erin = idc_session(ENGINE, "ops-shared", "erin")
    codes = {
        d.code for d in check_approval(bound_access(ENGINE, "ops-shared", alice, erin, "AROAEXAMPLE:alice"))
    }
    assert codes == {"self_approval", "approver_is_operator"}
    assert api_code(ENGINE, "role", "ops-shared", alice, erin) == "403 self_approval"


def test_a_grant_of_the_whole_role_refuses_its_other_sessions() -> None:
    """Unbound (the role itself carries the tag, e.g. a role that is not shared, or a request by someone
    who is not a session of it): every session of the role receives the access."""
    alice = idc_session(ENGINE, IDC_OPS, "alice@example.com")
    erin = idc_session(ENGINE, IDC_OPS, "erin@example.com")
    codes = {d.code for d in check_approval(bound_access(ENGINE, IDC_OPS, alice, erin, None))}
    assert codes == {"approver_is_operator"}
    # The request API: a requester who is not a session of the role asks for the whole role.
    bob = f"arn:aws:iam::{ENGINE}:user/bob"
    assert api_code(ENGINE, "role", IDC_OPS, bob, erin, RESERVED) == "403 approver_is_operator"
    # A role with an Identity Center name outside Identity Center's path is an ordinary role: a grant in
    # principal mode tags it whole, so its other sessions would receive the access.
    assert api_code(ENGINE, "role", IDC_OPS, alice, erin, "/") == "403 approver_is_operator"
