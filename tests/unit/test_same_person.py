"""One "same person" rule for both front doors (issue items 6, 9, 10): pure checks, no AWS.

``guardrails.check_approval`` is what the engine applies to every grant (Change Manager and native);
``approval_policy.check_not_involved`` is what the request API applies before recording an approval.
Both must deny the same cases.
"""

from __future__ import annotations

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


def pending(account: str, kind: str, name: str, requester: str) -> Request:
    return make_request(
        account=account,
        principal_type=PrincipalType(kind),
        principal_name=name,
        principal_arn=f"arn:aws:iam::{account}:{kind}/{name}",
        requester_arn=requester,
        rule="r",
    )


def engine_codes(account: str, kind: str, name: str, requester: str, approver: str) -> set[str]:
    return {d.code for d in check_approval(access(account, kind, name, requester, approver))}


def api_code(account: str, kind: str, name: str, requester: str, approver: str) -> str | None:
    try:
        ap.check_not_involved(pending(account, kind, name, requester), approver)
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
