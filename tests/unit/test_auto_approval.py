"""Issue 18, auto-approval: permit statements approve a request without a person, forbid statements
always override them; recorded and notified as AutoApproved, bound by the approval MAC and re-checked
by the native verifier (the in-memory fakes, the real grant core)."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sessiongate.access_requests.auto_approval import Facts, decide
from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError
from sessiongate.access_requests.records import AUTO_LEVEL
from sessiongate.core.notifications import render
from tests.support.people import DAVE
from tests.unit.access_world import ALICE, APPROVERS, BOB, caller, create
from tests.unit.fakes.access import ACCOUNT, API_ROLE, world

OPS = f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"
PARIS_HOURS = {
    "time_zone": "Europe/Paris",
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "from": "08:00",
    "to": "19:00",
}
POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"name": "dev", "instances": {"tags": {"Environment": "dev"}}, "levels": [{"approvers": [OPS]}]},
        {"name": "prod", "levels": [{"approvers": [OPS]}]},
    ],
    "auto_approval": [
        {
            "name": "dev in office hours",
            "effect": "permit",
            "rules": ["dev"],
            "requesters": [f"arn:aws:iam::{ACCOUNT}:user/alice", f"arn:aws:iam::{ACCOUNT}:user/dave"],
            "hours": PARIS_HOURS,
            "max_duration_minutes": 30,
        },
        {"name": "never PCI", "effect": "forbid", "instances": {"tags": {"PCI": "*"}}},
    ],
}
MONDAY_NOON_PARIS = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # CET = UTC+1


def parsed(document: dict[str, Any] | None = None) -> ApprovalPolicy:
    return ApprovalPolicy.parse(document or POLICY)


def facts(
    at: datetime = MONDAY_NOON_PARIS,
    *,
    rule: str = "dev",
    who: str = ALICE,
    minutes: int = 10,
    tags: dict[str, str] | None = None,
    break_glass: bool = False,
    document: dict[str, Any] | None = None,
) -> Facts:
    p = parsed(document)
    the_rule = p.rule_named(rule)
    assert the_rule is not None
    return Facts(
        the_rule, "i-0123456789abcdef0", tags or {"Environment": "dev"}, who, minutes, at, break_glass
    )


# ------------------------------------------------------------------------------------------ decide
@pytest.mark.parametrize(
    ("changes", "auto", "why"),
    [
        ({}, True, "permit 'dev in office hours' matches and no forbid does"),
        ({"at": datetime(2026, 1, 5, 6, 59, tzinfo=UTC)}, False, "no permit"),  # 07:59 in Paris
        ({"at": datetime(2026, 1, 5, 7, 0, tzinfo=UTC)}, True, "permit"),  # 08:00 in Paris
        ({"at": datetime(2026, 1, 5, 18, 0, tzinfo=UTC)}, False, "no permit"),  # 19:00: `to` is exclusive
        ({"at": datetime(2026, 7, 6, 16, 30, tzinfo=UTC)}, True, "permit"),  # summer: 18:30 CEST
        ({"at": datetime(2026, 7, 6, 17, 30, tzinfo=UTC)}, False, "no permit"),  # 19:30 CEST
        ({"at": datetime(2026, 1, 10, 11, 0, tzinfo=UTC)}, False, "no permit"),  # Saturday
        ({"rule": "prod"}, False, "no permit"),
        ({"who": f"arn:aws:iam::{ACCOUNT}:user/eve"}, False, "no permit"),
        ({"minutes": 31}, False, "no permit"),
        ({"tags": {"Environment": "dev", "PCI": "yes"}}, False, "forbid 'never PCI' matches"),
        ({"break_glass": True}, False, "break-glass requests are self-approved"),
    ],
)
def test_a_permit_approves_within_all_its_conditions_and_a_forbid_always_wins(
    changes: dict[str, Any], auto: bool, why: str
) -> None:
    decision = decide(parsed(), facts(**changes))
    assert decision.auto_approved is auto
    assert why in decision.why


def test_a_forbid_wins_whatever_the_order_and_names_both_statements() -> None:
    first = copy.deepcopy(POLICY)
    first["auto_approval"].reverse()
    decision = decide(parsed(first), facts(tags={"Environment": "dev", "PCI": "x"}, document=first))
    assert (decision.auto_approved, decision.permit, decision.forbid) == (
        False,
        "dev in office hours",
        "never PCI",
    )


def test_a_forbid_on_rules_without_break_glass() -> None:
    document = copy.deepcopy(POLICY)
    document["auto_approval"].append({"name": "glass off", "effect": "forbid", "break_glass_enabled": False})
    assert decide(parsed(document), facts(document=document)).forbid == "glass off"
    document["rules"][0]["break_glass"] = {"enabled": True}
    assert decide(parsed(document), facts(document=document)).auto_approved


def test_hours_may_span_midnight() -> None:
    document = copy.deepcopy(POLICY)
    document["auto_approval"][0]["hours"] = {"time_zone": "UTC", "from": "22:00", "to": "06:00"}
    assert decide(
        parsed(document), facts(datetime(2026, 1, 5, 23, 0, tzinfo=UTC), document=document)
    ).auto_approved
    assert decide(
        parsed(document), facts(datetime(2026, 1, 6, 5, 59, tzinfo=UTC), document=document)
    ).auto_approved
    assert not decide(
        parsed(document), facts(datetime(2026, 1, 6, 6, 0, tzinfo=UTC), document=document)
    ).auto_approved


def test_no_statement_no_auto_approval() -> None:
    document = {k: v for k, v in POLICY.items() if k != "auto_approval"}
    assert decide(parsed(document), facts(document=document)).why == "no permit statement matches"


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            {"name": "x", "effect": "allow", "rules": ["dev"]},
            "auto_approval[0].effect must be 'permit' or 'forbid'",
        ),
        ({"name": "x", "effect": "permit"}, "a permit with no condition would auto-approve every request"),
        ({"name": "x", "effect": "permit", "rules": ["staging"]}, "rules names no rule of this policy"),
        ({"name": "x", "effect": "permit", "when": {}}, "unknown key(s) ['when']"),
        ({"name": "x", "effect": "permit", "requesters": ["alice"]}, "requesters must be a list of up to 50"),
        (
            {"name": "x", "effect": "permit", "hours": {**PARIS_HOURS, "time_zone": "Mars/Olympus"}},
            "not a known IANA",
        ),
        (
            {"name": "x", "effect": "permit", "hours": {**PARIS_HOURS, "days": ["monday"]}},
            "days must be a non-empty",
        ),
        (
            {"name": "x", "effect": "permit", "hours": {**PARIS_HOURS, "from": "8:00"}},
            "from must be a time of day",
        ),
        (
            {"name": "x", "effect": "permit", "hours": {**PARIS_HOURS, "to": "08:00"}},
            "from and to must differ",
        ),
        ({"name": "x", "effect": "forbid", "break_glass_enabled": "no"}, "break_glass_enabled must be true"),
        (
            {"name": "x", "effect": "permit", "max_duration_minutes": 0},
            "max_duration_minutes must be an integer",
        ),
    ],
)
def test_invalid_statements_are_refused_with_where_and_why(statement: dict[str, Any], message: str) -> None:
    document = {**POLICY, "auto_approval": [statement]}
    with pytest.raises(PolicyError) as err:
        ApprovalPolicy.parse(document)
    assert message in str(err.value)


def test_statement_names_are_unique() -> None:
    statement = POLICY["auto_approval"][1]
    with pytest.raises(PolicyError, match="names must be unique"):
        ApprovalPolicy.parse({**POLICY, "auto_approval": [statement, statement]})


# ----------------------------------------------------------------------------- through the service
def auto_world() -> Any:
    w = world(POLICY)
    w.clock.set(MONDAY_NOON_PARIS)
    return w


def test_an_auto_approved_request_is_recorded_notified_and_granted_as_such() -> None:
    w = auto_world()
    out = w.service.create(
        caller(ALICE),
        {"instance_id": w.instance(Environment="dev"), "reason": "restart", "duration_minutes": 10},
    )["request"]
    assert (out["status"], out["auto_approval"]) == ("APPROVED", "dev in office hours")
    [approval] = out["approvals"]
    assert (approval["kind"], approval["approver_arn"], approval["level"]) == (
        "AutoApproved",
        API_ROLE,
        AUTO_LEVEL,
    )
    assert w.notifier.types == ["AutoApproved"]  # never AccessApproved: nobody takes it for a person's
    payload = w.notifier.sent[0][1]
    assert (payload["approval_kind"], payload["auto_approval"]) == ("AutoApproved", "dev in office hours")
    assert OPS in payload["notify_approvers"]
    email = render("AutoApproved", payload)["email"]
    assert email.startswith("SessionGate - Access AUTO-APPROVED by the approval policy\n")
    assert "statement 'dev in office hours': no person did." in email
    assert f"sessiongate revoke {out['request_id']}" in email
    assert w.grant().result == "granted"
    grant = w.ledger.get_grant(f"rq-{out['request_id']}")
    assert grant is not None
    assert grant.approver_arns == [API_ROLE]
    assert grant.reason.startswith("[AUTO-APPROVED] ")


def test_a_forbidden_or_unpermitted_request_waits_for_people() -> None:
    w = auto_world()
    pci = create(w, instance_id=w.instance("i-0000000000000000a", Environment="dev", PCI="1"))
    assert w.store.get(pci).status.value == "PENDING"  # type: ignore[union-attr]
    w.clock.advance(timedelta(hours=10))  # 21:00 in Paris
    late = create(w, DAVE, instance_id=w.instance("i-0000000000000000b", Environment="dev"))
    assert w.store.get(late).status.value == "PENDING"  # type: ignore[union-attr]
    assert w.notifier.types == ["AccessRequested", "AccessRequested"]
    assert w.bus.emitted == []


def test_the_verifier_refuses_an_auto_approval_the_policy_no_longer_gives() -> None:
    w = auto_world()
    create(w, instance_id=w.instance(Environment="dev"))
    w.policies.document = {
        **POLICY,
        "auto_approval": [*POLICY["auto_approval"], {"name": "freeze", "effect": "forbid", "rules": ["dev"]}],
    }
    outcome = w.grant()
    assert outcome.result == "denied"
    [denial] = outcome.detail["denials"]
    assert denial["code"] == "approval_insufficient"
    assert "forbid 'freeze' matches" in denial["message"]


def test_the_verifier_refuses_a_person_approval_dressed_as_an_auto_approval() -> None:
    """Even signed with the approval key (a bug in the request API), a record that names a permit but
    carries a person's approval is not an auto-approval."""
    w = auto_world()
    request_id = create(w, instance_id=w.instance(Environment="prod"))
    w.service.approve(caller(BOB), request_id, None)
    record = w.store.get(request_id)
    assert record is not None
    forged = w.service._sign(replace(record, auto_approval="dev in office hours"))
    w.store.items[request_id] = forged
    # The forged record as the request API would emit it (its signed facts travel in the event).
    outcome = w.grant(forged.to_access_approved())
    assert outcome.result == "denied"
    assert "is not recorded as one" in outcome.detail["denials"][0]["message"]


def test_the_approval_mac_binds_the_auto_approval() -> None:
    w = auto_world()
    request_id = create(w, instance_id=w.instance(Environment="prod"))
    w.service.approve(caller(BOB), request_id, None)
    record = w.store.get(request_id)
    assert record is not None
    # A person's approval relabelled (no new MAC), in the table and in the event's signed facts.
    relabelled = replace(record, auto_approval="dev in office hours")
    w.store.items[request_id] = relabelled
    denied = w.grant(relabelled.to_access_approved()).detail["denials"]
    assert [d["code"] for d in denied] == ["approval_not_signed"]
