"""Pure rules of the native front door: policy parsing and evaluation, callers, input, state machine."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiongate.access_requests import policy as ap
from sessiongate.access_requests.caller import caller_from_context, same_caller
from sessiongate.access_requests.errors import Refused
from sessiongate.access_requests.http import status_of
from sessiongate.access_requests.ids import grant_id_for, request_id_of
from sessiongate.access_requests.inputs import parse_create
from sessiongate.access_requests.records import TRANSITIONS, Approval, Request, RequestStatus
from sessiongate.core.identity import PrincipalType
from sessiongate.core.notifications import render
from tests.support.people import ALICE, APPROVERS_ROLE, BOB, CAROL, DAVE, POLICY, SECURITY, make_request
from tests.support.values import ACCOUNT

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
RID = "0123456789abcdef0123456789abcdef"


def request(**changes: Any) -> Request:
    return make_request(request_id=RID, **changes)


def policy() -> ap.ApprovalPolicy:
    return ap.ApprovalPolicy.parse(POLICY)


def test_the_readmes_example_policy_parses() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [example] = [block for block in readme.split("```json\n")[1:] if '"rules"' in block.split("```")[0]]
    parsed = ap.ApprovalPolicy.parse_json(example.split("```")[0])
    assert [r.name for r in parsed.rules] == ["production", "everything else"]
    assert parsed.rules[0].levels[0].min_approvals == 2


def test_first_matching_rule_applies() -> None:
    p = policy()
    assert p.rule_for("i-0a1b2c3d4e5f60718", {"Environment": "prod"}).name == "prod"  # type: ignore[union-attr]
    assert p.rule_for("i-0a1b2c3d4e5f60718", {"Environment": "dev"}).name == "default"  # type: ignore[union-attr]
    by_id = ap.ApprovalPolicy.parse(
        {
            "version": 1,
            "rules": [
                {
                    "name": "one",
                    "instances": {"ids": ["i-0a1b2c3d4e5f60718"], "tags": {"Team": "pay*"}},
                    "levels": [{"approvers": [BOB]}],
                }
            ],
        }
    )
    assert by_id.rule_for("i-0a1b2c3d4e5f60718", {"Team": "payments"}) is not None
    assert by_id.rule_for("i-0a1b2c3d4e5f60718", {"Team": "search"}) is None
    assert by_id.rule_for("i-0123456789abcdef0", {"Team": "payments"}) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(rules=[]),
        lambda d: d.update(extra=1),
        lambda d: d["rules"][0].update(levels=[]),
        lambda d: d["rules"][0]["levels"][0].update(approvers=["bob"]),
        lambda d: d["rules"][0]["levels"][0].update(approvers=[]),
        lambda d: d["rules"][0]["levels"][0].update(min_approvals=0),
        lambda d: d["rules"][0]["levels"][0].update(min_approvals=True),
        lambda d: d["rules"][0].update(instances={"ids": ["web-1"]}),
        lambda d: d["rules"][0]["break_glass"].update(max_duration_minutes=600),
        lambda d: d["rules"][0]["break_glass"].update(enabled="yes"),
        lambda d: d["rules"][0]["break_glass"].update(max_per_day=0),
        lambda d: d["rules"][1].update(name="prod"),
        lambda d: d["rules"][0].update(approvers=[BOB]),
    ],
)
def test_invalid_policies_are_refused(mutate: Any) -> None:
    doc = copy.deepcopy(POLICY)
    mutate(doc)
    with pytest.raises(ap.PolicyError):
        ap.ApprovalPolicy.parse(doc)
    with pytest.raises(ap.PolicyError):
        ap.ApprovalPolicy.parse_json("{nope")


def test_role_patterns_match_sessions_and_user_patterns_ignore_paths() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}"
    assert ap.arn_matches(BOB, [role])
    assert ap.arn_matches(
        BOB, [f"arn:aws:sts::{ACCOUNT}:assumed-role/awsreservedsso_approvers_*/*@example.com"]
    )
    assert not ap.arn_matches(BOB, [f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}2"])
    assert not ap.arn_matches(BOB, [f"arn:aws:iam::210987654321:role/{APPROVERS_ROLE}"])
    assert ap.arn_matches(f"arn:aws:iam::{ACCOUNT}:user/team/dave", [DAVE])


def test_levels_in_order_with_n_of_m() -> None:
    rule = policy().rules[0]
    pending = request()
    assert ap.approver_level(rule, pending, BOB) == 0
    with pytest.raises(Refused) as err:
        ap.approver_level(rule, pending, SECURITY)
    assert err.value.code == "level_not_reached"
    one = request(approvals=(Approval(BOB, 0, "t"),))
    assert ap.current_level(rule, one.approvals) == 0
    with pytest.raises(Refused) as err:
        ap.approver_level(rule, one, BOB)
    assert err.value.code == "already_approved"
    two = request(approvals=(Approval(BOB, 0, "t"), Approval(CAROL, 0, "t")))
    assert ap.current_level(rule, two.approvals) == 1
    assert ap.approver_level(rule, two, SECURITY) == 1
    done = request(approvals=(*two.approvals, Approval(SECURITY, 1, "t")))
    assert ap.current_level(rule, done.approvals) is None
    assert ap.progress(rule, done.approvals) == [
        {"level": 1, "name": "leads", "approved": 2, "required": 2},
        {"level": 2, "name": "security", "approved": 1, "required": 1},
    ]


def test_approvals_that_no_longer_match_the_rule_do_not_count() -> None:
    rule = policy().rules[0]
    forged = (Approval(f"arn:aws:iam::{ACCOUNT}:user/mallory", 0, "t"), Approval(BOB, 0, "t"))
    assert ap.counted(rule, forged) == [1, 0]
    assert ap.counted(rule, (Approval(BOB, 5, "t"),)) == [0, 0]


@pytest.mark.parametrize(
    ("requester", "approver", "code"),
    [
        (ALICE, ALICE, "self_approval"),
        (ALICE, f"arn:aws:iam::{ACCOUNT}:root", "self_approval"),
        (BOB, f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}", "self_approval"),
        (BOB, CAROL, "approver_is_operator"),
        (ALICE, "not-an-arn", "self_approval"),
    ],
)
def test_separation_of_duties_fails_closed(requester: str, approver: str, code: str) -> None:
    kind, name = ("role", APPROVERS_ROLE) if "assumed-role" in requester else ("user", "alice")
    r = request(requester_arn=requester, principal_type=PrincipalType(kind), principal_name=name)
    with pytest.raises(Refused) as err:
        ap.check_not_involved(r, approver)
    assert (status_of(err.value), err.value.code) == (403, code)


IDC_OPS = "AWSReservedSSO_Ops_fedcba9876543210"


def test_one_idc_user_in_two_permission_sets_cannot_approve_their_own_request() -> None:
    requester = f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_OPS}/alice@example.com"
    r = request(requester_arn=requester, principal_type=PrincipalType.ROLE, principal_name=IDC_OPS)
    with pytest.raises(Refused) as err:
        ap.approver_level(
            policy().rules[0], r, f"arn:aws:sts::{ACCOUNT}:assumed-role/{APPROVERS_ROLE}/alice@example.com"
        )
    assert err.value.code == "self_approval"
    assert ap.approver_level(policy().rules[0], r, BOB) == 0


def test_one_person_counts_once_across_permission_sets_and_session_names() -> None:
    rule = ap.Rule(
        "r",
        (
            ap.Level(
                "leads",
                (f"arn:aws:iam::{ACCOUNT}:role/TeamLead", f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_*"),
                2,
            ),
        ),
    )
    lead = f"arn:aws:sts::{ACCOUNT}:assumed-role/TeamLead/bob"
    once = request(approvals=(Approval(lead, 0, "t"),))
    with pytest.raises(Refused) as err:
        ap.approver_level(rule, once, f"arn:aws:sts::{ACCOUNT}:assumed-role/TeamLead/bob-again")
    assert err.value.code == "already_approved"
    idc = request(approvals=(Approval(BOB, 0, "t"),))
    with pytest.raises(Refused) as err:
        ap.approver_level(rule, idc, f"arn:aws:sts::{ACCOUNT}:assumed-role/{IDC_OPS}/Bob@example.com")
    assert err.value.code == "already_approved"
    assert ap.approver_level(rule, idc, CAROL) == 0


def test_break_glass_rules() -> None:
    prod, default = policy().rules
    ap.check_break_glass(prod, ALICE, 15, "x" * 20)
    for rule, minutes, reason, code in [
        (default, 5, "x" * 40, "break_glass_not_allowed"),
        (prod, 16, "x" * 40, "break_glass_duration_over_cap"),
        (prod, 5, "x" * 19, "break_glass_reason_too_short"),
    ]:
        with pytest.raises(Refused) as err:
            ap.check_break_glass(rule, ALICE, minutes, reason)
        assert err.value.code == code
    restricted = ap.Rule("r", prod.levels, break_glass=ap.BreakGlass(True, requesters=(DAVE,)))
    with pytest.raises(Refused):
        ap.check_break_glass(restricted, ALICE, 5, "x" * 40)
    ap.check_break_glass(restricted, DAVE, 5, "x" * 40)


def test_state_machine_refuses_illegal_moves() -> None:
    for state in RequestStatus:
        for target in RequestStatus:
            r = request(status=state)
            if target in TRANSITIONS.get(state, frozenset()):
                moved = r.transition(target, at=NOW, by=BOB)
                assert moved.status is target
                assert moved.history[-1] == {"at": "2026-11-24T09:00:00Z", "status": target.value, "by": BOB}
            else:
                with pytest.raises(Refused) as err:
                    r.transition(target, at=NOW, by=BOB)
                assert status_of(err.value) == 409
    terminal = {"REVOKED", "EXPIRED", "REJECTED", "CANCELLED", "DENIED"}
    assert {s.value for s in RequestStatus} - {s.value for s in TRANSITIONS} == terminal


@given(st.integers(min_value=1, max_value=9999))
def test_grant_ids_fit_the_engine_contract(n: int) -> None:
    from sessiongate.core.model import GRANT_ID_RE

    for request_id in (RID, f"{RID}-x{n}"):
        grant_id = grant_id_for(request_id)
        assert GRANT_ID_RE.fullmatch(grant_id)
        assert len(grant_id) <= 48
        assert request_id_of(grant_id) == request_id
    assert request_id_of(f"cm-{RID}") is None


def test_callers() -> None:
    def ctx(arn: object, account: str = ACCOUNT) -> dict[str, Any]:
        return {"identity": {"userArn": arn, "accountId": account}}

    user = caller_from_context(ctx(f"arn:aws:iam::{ACCOUNT}:user/team/alice"))
    assert (user.principal_type, user.principal_name) == (PrincipalType.USER, "alice")
    role = caller_from_context(ctx(BOB))
    assert (role.principal_type, role.principal_name, role.account) == (
        PrincipalType.ROLE,
        APPROVERS_ROLE,
        ACCOUNT,
    )
    for bad, status in [
        ({}, 401),
        ({"authorizer": {"jwt": {}}}, 401),
        # The identity is read from requestContext.identity only: an HTTP API's IAM authorizer context
        # (or anything a Lambda authorizer could put under ``authorizer``) is not a signed caller here.
        ({"authorizer": {"iam": {"userArn": ALICE, "accountId": ACCOUNT}}}, 401),
        ({"identity": {"userArn": None}, "authorizer": {"principalId": ALICE, "userArn": ALICE}}, 401),
        (ctx(None), 401),
        (ctx(f"arn:aws:iam::{ACCOUNT}:root"), 403),
        (ctx(f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}"), 403),
        (ctx(ALICE, account="210987654321"), 403),
    ]:
        with pytest.raises(Refused) as err:
            caller_from_context(bad)
        assert status_of(err.value) == status
    assert same_caller(BOB, BOB.replace("Approvers", "approvers"))
    assert not same_caller(BOB, CAROL)
    assert not same_caller(BOB, f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}")


def test_create_input_defaults_and_limits() -> None:
    body = {"instance_id": "i-0a1b2c3d4e5f60718", "reason": "  why  "}
    parsed = parse_create(body, default_minutes=10, max_minutes=60)
    assert (parsed.duration_minutes, parsed.reason, parsed.break_glass) == (10, "why", False)
    with pytest.raises(Refused):
        parse_create({**body, "reason": "x\x00y"}, default_minutes=10, max_minutes=60)
    with pytest.raises(Refused):
        parse_create({**body, "reason": "x" * 301}, default_minutes=10, max_minutes=60)


def test_access_approved_of_a_break_glass_request_is_marked() -> None:
    r = request(
        status=RequestStatus.APPROVED,
        break_glass=True,
        approved_at="2026-11-24T09:00:00Z",
        approver_arns=("arn:aws:iam::123456789012:role/sessiongate/api",),
        ticket="INC-1",
    )
    event = r.to_access_approved()
    assert event.reason == "[BREAK-GLASS] x (ticket INC-1)"
    assert event.grant_id == f"rq-{RID}"
    assert event.not_before == NOW


def test_native_notifications_are_readable() -> None:
    payload = {
        "request_id": RID,
        "grant_id": f"rq-{RID}",
        "instance_id": "i-0a1b2c3d4e5f60718",
        "principal_arn": ALICE,
        "requester_arn": ALICE,
        "duration_minutes": 15,
        "reason": "restart nginx",
        "approval_progress": [{"level": 1, "name": "leads", "approved": 1, "required": 2}],
        "account": ACCOUNT,
    }
    email = render("AccessRequested", payload)["email"]
    assert "SessionGate - Access requested" in email
    assert "level 1 (leads): 1/2" in email
    assert f"sessiongate approve {RID}" in email
    glass = render("BreakGlassUsed", payload)["email"]
    assert "BREAK-GLASS" in glass
    assert f"sessiongate revoke {RID}" in glass
    assert json.loads(render("AccessRejected", payload)["sqs"])["event_type"] == "AccessRejected"
