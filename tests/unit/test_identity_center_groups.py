"""Approver (and requester) groups of IAM Identity Center: the policy, the identity-store adapter on a
fake identity store (validated against botocore's model), and the request API and grant over them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sessiongate.access_requests import policy as ap
from sessiongate.access_requests.errors import NotAllowed, Unavailable
from sessiongate.access_requests.groups import GroupLookupFailed, bind, idc_user, in_groups
from sessiongate.adapters.identity_store import CACHE, IdentityStoreGroups
from sessiongate.clock import ManualClock
from sessiongate.core.identity import PrincipalType
from sessiongate.errors import TransientError
from tests.unit.access_world import caller
from tests.unit.fakes.access import ACCOUNT, START, World, world
from tests.unit.fakes.identity_store import READER_ROLE, STORE_ID, ClientMaker, FakeIdentityStore, FakeSts

SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
OPERATORS = "AWSReservedSSO_Operators_1a2b3c4d5e6f7a8b"
LEADS = "AWSReservedSSO_Leads_0f1e2d3c4b5a6978"


def sso(role: str, user: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{user}"


ALICE_OPS = sso(OPERATORS, "alice@example.com")
ALICE_LEAD = sso(LEADS, "alice@example.com")  # the same person, another permission set
BOB_LEAD = sso(LEADS, "bob@example.com")
CAROL_LEAD = sso(LEADS, "carol@example.com")  # in the Leads permission set, not in the group
ALICE_IAM = f"arn:aws:iam::{ACCOUNT}:user/alice"
GROUP = {"identity_center_group": "Platform-Leads"}

POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [{"name": "default", "levels": [{"name": "leads", "approvers": [GROUP]}]}],
}


def adapter(store: FakeIdentityStore, clock: ManualClock) -> tuple[IdentityStoreGroups, FakeSts, ClientMaker]:
    sts, make = FakeSts(clock), ClientMaker(store)
    groups = IdentityStoreGroups(
        sts, make, clock, identity_store_id=STORE_ID, role_arn=READER_ROLE, region="eu-west-1"
    )
    return groups, sts, make


def directory_store() -> FakeIdentityStore:
    store = FakeIdentityStore()
    store.add_group("Platform-Leads", ["alice@example.com", "bob@example.com"])
    store.add_user("carol@example.com")
    return store


# ------------------------------------------------------------------------------------------ policy
def test_a_policy_names_groups_as_approvers_and_requesters_next_to_arns() -> None:
    parsed = ap.ApprovalPolicy.parse(
        {
            "version": 1,
            "rules": [
                {
                    "name": "r",
                    "requesters": [ALICE_IAM, {"identity_center_group": "Operators"}],
                    "levels": [{"approvers": [f"arn:aws:iam::{ACCOUNT}:user/dave", GROUP]}],
                }
            ],
        }
    )
    [rule] = parsed.rules
    assert rule.requesters == (ALICE_IAM,)
    assert rule.requester_groups == ("Operators",)
    assert rule.levels[0].approvers == (f"arn:aws:iam::{ACCOUNT}:user/dave",)
    assert rule.levels[0].groups == ("Platform-Leads",)


@pytest.mark.parametrize(
    ("approvers", "problem"),
    [
        ([{"identity_center_group": ""}], "levels[0].approvers[0] must be {identity_center_group: NAME}"),
        ([{"identity_center_group": "A", "extra": 1}], "and no other key"),
        ([{"identity_center_group": 5}], "display name"),
        ([{"group": "A"}], "levels[0].approvers[0] must be {identity_center_group: NAME}"),
        ([GROUP, GROUP], "names an Identity Center group twice"),
        (["alice"], "ARN patterns (starting with 'arn:')"),
        ([], "ARN patterns (starting with 'arn:') or {identity_center_group: NAME} entries"),
    ],
)
def test_a_bad_group_entry_is_refused_with_its_place(approvers: list[Any], problem: str) -> None:
    with pytest.raises(ap.PolicyError) as err:
        ap.ApprovalPolicy.parse(
            {"version": 1, "rules": [{"name": "r", "levels": [{"approvers": approvers}]}]}
        )
    assert problem in str(err.value)
    assert "rules[0].levels[0].approvers" in str(err.value)


def test_the_policy_summary_lists_the_groups() -> None:
    verified = ap.VerifiedPolicy(ap.ApprovalPolicy.parse(POLICY), "d", "test")
    assert verified.summary()[0]["levels"][0]["approvers"] == ["identity_center_group:Platform-Leads"]


class Answers:
    """A membership that answers from a set (and counts the questions)."""

    def __init__(self, members: set[str], *, broken: bool = False) -> None:
        self.members, self.broken, self.asked = members, broken, 0

    def is_member(self, user_name: str, groups: Any) -> bool:
        self.asked += 1
        if self.broken:
            raise GroupLookupFailed("test: the store is down")
        return user_name in self.members


def test_only_identity_center_sessions_are_group_members_and_others_cost_no_lookup() -> None:
    answers = Answers({"alice@example.com", "alice"})
    level = bind(ap.ApprovalPolicy.parse(POLICY), answers, [ACCOUNT]).rules[0].levels[0]
    assert level.admits(ALICE_LEAD)
    assert not level.admits(CAROL_LEAD)
    # An IAM user, an ordinary role's session named like a member: not Identity Center, no lookup.
    asked = answers.asked
    assert not level.admits(ALICE_IAM)
    assert not level.admits(f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops/alice@example.com")
    assert answers.asked == asked
    assert idc_user(ALICE_OPS, [ACCOUNT]) == "alice@example.com"
    assert idc_user(ALICE_IAM, [ACCOUNT]) is None


def test_without_an_identity_store_a_group_question_fails_closed_with_the_reason() -> None:
    level = bind(ap.ApprovalPolicy.parse(POLICY), None, [ACCOUNT]).rules[0].levels[0]  # no identity store
    with pytest.raises(GroupLookupFailed) as err:
        level.admits(BOB_LEAD)
    assert "IdentityStoreId and IdentityStoreRoleArn" in err.value.message
    assert not in_groups(None, ALICE_IAM, ["Platform-Leads"], [ACCOUNT])  # not Identity Center: simply no


# ------------------------------------------------------------------------------------------ adapter
def test_the_adapter_asks_the_store_through_the_read_role_and_caches_for_a_minute() -> None:
    clock = ManualClock(START)
    store = directory_store()
    groups, sts, make = adapter(store, clock)
    assert groups.is_member("alice@example.com", ["Platform-Leads"])
    assert not groups.is_member("carol@example.com", ["Platform-Leads"])
    assert not groups.is_member("zoe@example.com", ["Platform-Leads"])  # unknown user: in no group
    assert [a["RoleArn"] for a in sts.assumed] == [READER_ROLE]  # assumed once
    assert make.credentials[0] is not None
    assert make.credentials[0]["region_name"] == "eu-west-1"
    calls = len(store.calls)
    store.remove_member("alice@example.com", "Platform-Leads")
    clock.advance(CACHE - timedelta(seconds=1))
    assert groups.is_member("alice@example.com", ["Platform-Leads"])  # cached answer
    assert len(store.calls) == calls
    clock.advance(timedelta(seconds=2))
    assert not groups.is_member("alice@example.com", ["Platform-Leads"])  # asked again
    assert store.calls[calls:] == ["GetUserId", "GetGroupId", "IsMemberInGroups"]


def test_the_read_role_is_assumed_again_before_its_credentials_expire() -> None:
    clock = ManualClock(START)
    groups, sts, _ = adapter(directory_store(), clock)
    groups.is_member("alice@example.com", ["Platform-Leads"])
    clock.advance(timedelta(minutes=56))
    groups.is_member("bob@example.com", ["Platform-Leads"])
    assert len(sts.assumed) == 2


@pytest.mark.parametrize(
    ("operation", "code", "transient"),
    [
        ("GetUserId", "AccessDeniedException", False),
        ("GetGroupId", "ThrottlingException", True),
        ("IsMemberInGroups", "InternalServerException", True),
        ("IsMemberInGroups", "ResourceNotFoundException", False),
    ],
)
def test_every_store_error_fails_closed_and_is_not_cached(operation: str, code: str, transient: bool) -> None:
    """Every failure refuses; those a later try can clear (throttling, 5xx) say so (the grant retries)."""
    clock = ManualClock(START)
    store = directory_store()
    groups, _, _ = adapter(store, clock)
    store.fail[operation] = code
    with pytest.raises(GroupLookupFailed) as err:
        groups.is_member("alice@example.com", ["Platform-Leads"])
    assert code in err.value.message
    assert err.value.code == "identity_store_unavailable"
    assert err.value.transient is transient
    del store.fail[operation]
    assert groups.is_member("alice@example.com", ["Platform-Leads"])


def test_a_group_the_store_does_not_have_and_an_unassumable_role_fail_closed() -> None:
    clock = ManualClock(START)
    groups, sts, _ = adapter(directory_store(), clock)
    with pytest.raises(GroupLookupFailed) as missing:
        groups.is_member("alice@example.com", ["Platform-Lead"])
    assert "'Platform-Lead'" in missing.value.message
    other, sts, _ = adapter(directory_store(), clock)
    sts.denied = True
    with pytest.raises(GroupLookupFailed) as denied:
        other.is_member("alice@example.com", ["Platform-Leads"])
    assert "cannot assume" in denied.value.message
    assert "AccessDenied" in denied.value.message
    assert not missing.value.transient
    assert not denied.value.transient


# ------------------------------------------------------------------------------------------ the API
def api_world(store: FakeIdentityStore, policy: dict[str, Any] = POLICY) -> World:
    clock = ManualClock(START)
    groups, _, _ = adapter(store, clock)
    w = world(policy, groups=groups)
    groups._clock = w.clock  # the adapter's cache runs on the world's clock
    for role in (OPERATORS, LEADS):
        w.directory.add(PrincipalType.ROLE, role, path=SSO_PATH)
    return w


def create(w: World, who: str) -> str:
    out = w.service.create(caller(who), {"instance_id": w.instance(), "reason": "restart nginx"})
    return str(out["request"]["request_id"])


def test_a_group_member_approves_and_the_grant_re_checks_the_group() -> None:
    w = api_world(directory_store())
    request_id = create(w, ALICE_IAM)
    assert w.service.approve(caller(BOB_LEAD), request_id, None)["request"]["status"] == "APPROVED"
    outcome = w.grant()
    assert outcome.result == "granted", outcome.detail


# Review B, H1: an AWSReservedSSO_* role in an account SessionGate does not serve (any account of the
# organization, the management account above all) is whatever its creator made it, and so is its session
# name: such a session is nobody's Identity Center identity, in no group, and costs no lookup.
OTHER_ACCOUNT = "999999999999"
FAKE_BOB = f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/AWSReservedSSO_Mine/bob@example.com"
MEMBER = "210987654321"


def test_a_look_alike_idc_session_of_an_unserved_account_is_in_no_group() -> None:
    w = api_world(directory_store())
    request_id = create(w, ALICE_IAM)
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(FAKE_BOB), request_id, None)
    assert err.value.code == "not_an_approver"
    assert idc_user(FAKE_BOB, [ACCOUNT]) is None
    assert idc_user(FAKE_BOB, [ACCOUNT, OTHER_ACCOUNT]) == "bob@example.com"


def test_an_idc_session_of_a_member_account_is_a_group_member() -> None:
    clock = ManualClock(START)
    groups, _, _ = adapter(directory_store(), clock)
    w = world(POLICY, groups=groups, member_accounts=(MEMBER,))
    request_id = create(w, ALICE_IAM)
    bob_there = f"arn:aws:sts::{MEMBER}:assumed-role/{LEADS}/bob@example.com"
    assert w.service.approve(caller(bob_there), request_id, None)["request"]["status"] == "APPROVED"


def test_the_grant_re_checks_that_the_approvers_idc_account_is_served() -> None:
    # Approved while the account was served (MemberAccounts), granted after it no longer is: denied.
    w = api_world(directory_store())
    w.policies.served = (ACCOUNT, OTHER_ACCOUNT)
    request_id = create(w, ALICE_IAM)
    assert w.service.approve(caller(FAKE_BOB), request_id, None)["request"]["status"] == "APPROVED"
    w.policies.served = (ACCOUNT,)
    outcome = w.grant()
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["approval_insufficient"]


def test_a_permission_set_colleague_outside_the_group_is_not_an_approver() -> None:
    w = api_world(directory_store())
    request_id = create(w, ALICE_IAM)
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(CAROL_LEAD), request_id, None)
    assert err.value.code == "not_an_approver"


def test_a_group_member_cannot_approve_their_own_request_from_another_permission_set() -> None:
    w = api_world(directory_store())
    request_id = create(w, ALICE_OPS)  # alice, as an Operator
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(ALICE_LEAD), request_id, None)  # alice again, as a Lead in the group
    assert err.value.code == "self_approval"
    assert w.service.approve(caller(BOB_LEAD), request_id, None)["request"]["status"] == "APPROVED"


def test_an_identity_store_failure_refuses_the_approval_with_its_reason() -> None:
    store = directory_store()
    w = api_world(store)
    request_id = create(w, ALICE_IAM)
    store.fail["IsMemberInGroups"] = "AccessDeniedException"
    with pytest.raises(Unavailable) as err:
        w.service.approve(caller(BOB_LEAD), request_id, None)
    assert err.value.code == "identity_store_unavailable"
    assert "AccessDeniedException" in err.value.message
    assert w.bus.emitted == []


def test_the_grant_is_denied_when_the_group_no_longer_holds_the_approver() -> None:
    store = directory_store()
    w = api_world(store)
    request_id = create(w, ALICE_IAM)
    w.service.approve(caller(BOB_LEAD), request_id, None)
    store.remove_member("bob@example.com", "Platform-Leads")
    w.clock.advance(CACHE)  # the cached membership has aged out
    outcome = w.grant()
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["approval_insufficient"]


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalServerException"])
def test_the_grant_is_retried_while_the_identity_store_is_throttled_or_unavailable(code: str) -> None:
    """A lookup a later try can clear is no decision: the grant raises (its event is retried, then
    alarmed), records nothing and never grants; once the store answers, the retry grants."""
    store = directory_store()
    w = api_world(store)
    request_id = create(w, ALICE_IAM)
    w.service.approve(caller(BOB_LEAD), request_id, None)
    w.clock.advance(CACHE)
    store.fail["GetUserId"] = code
    with pytest.raises(TransientError, match=code):
        w.grant()
    assert w.grant_status(request_id) is None  # no record: nothing denied, nothing granted

    del store.fail["GetUserId"]
    assert w.grant().result == "granted"


def test_the_grant_is_denied_when_the_identity_store_refuses_the_lookup() -> None:
    """Access denied (a read role without the permission) is a configuration answer a retry would get
    again: denied, as before (fail closed)."""
    store = directory_store()
    w = api_world(store)
    request_id = create(w, ALICE_IAM)
    w.service.approve(caller(BOB_LEAD), request_id, None)
    w.clock.advance(CACHE)
    store.fail["GetUserId"] = "AccessDeniedException"
    outcome = w.grant()
    assert outcome.result == "denied"
    [denial] = outcome.detail["denials"]
    assert denial["code"] == "approval_insufficient"
    assert "AccessDeniedException" in denial["message"]


def test_a_requester_group_admits_its_members_only() -> None:
    store = directory_store()
    store.add_group("Operators", ["alice@example.com"])
    policy = {
        "version": 1,
        "rules": [
            {
                "name": "default",
                "requesters": [{"identity_center_group": "Operators"}],
                "levels": [{"approvers": [GROUP]}],
            }
        ],
    }
    w = api_world(store, policy)
    assert create(w, ALICE_OPS)
    with pytest.raises(NotAllowed) as err:
        create(w, sso(OPERATORS, "carol@example.com"))
    assert err.value.code == "not_a_requester"


class OddAnswers(FakeIdentityStore):
    """A store whose IsMemberInGroups names another group, or leaves the asked one out."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        super().__init__()
        self.results = results

    def is_member_in_groups(self, **params: Any) -> dict[str, Any]:
        super().is_member_in_groups(**params)
        return {"Results": self.results}


@pytest.mark.parametrize("other_group", [True, False])
def test_only_a_yes_for_a_group_asked_about_admits(other_group: bool) -> None:
    other = "0123456789-01234567-89ab-cdef-0123-456789abcdef"
    results = (
        [{"GroupId": other, "MemberId": {"UserId": "u"}, "MembershipExists": True}] if other_group else []
    )
    store = OddAnswers(results)
    store.add_group("Platform-Leads", ["alice@example.com"])
    groups, _, _ = adapter(store, ManualClock(START))
    assert not groups.is_member("alice@example.com", ["Platform-Leads"])


def test_the_approvals_list_says_the_identity_store_did_not_answer_instead_of_showing_nothing() -> None:
    """GET /approvals for a group approver while the store cannot answer: a 503, not an empty list that
    reads as "nothing waits for you" (nor one doomed lookup per pending request)."""
    store = directory_store()
    w = api_world(store)
    create(w, ALICE_IAM)
    assert len(w.service.list_to_approve(caller(BOB_LEAD), 10)["requests"]) == 1
    w.clock.advance(CACHE)
    store.fail["GetUserId"] = "ThrottlingException"
    with pytest.raises(Unavailable) as err:
        w.service.list_to_approve(caller(BOB_LEAD), 10)
    assert err.value.code == "identity_store_unavailable"
