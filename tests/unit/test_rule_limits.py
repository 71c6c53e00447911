"""Issue 18, per-rule limits: a ticket the rule requires (with a pattern), and live grants capped per
person and per instance (on the in-memory fakes, with the real grant core and native verifier)."""

from __future__ import annotations

from typing import Any

import pytest

from sessiongate.access_requests.errors import InvalidInput
from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError
from tests.unit.access_world import ALICE, APPROVERS, BOB, caller, create
from tests.unit.fakes.access import ACCOUNT, world

OPS = f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"


def policy(**rule: Any) -> dict[str, Any]:
    """One rule ``ops`` over every instance, approved by one of the approvers' role, plus ``rule``."""
    return {
        "version": 1,
        "rules": [{"name": "ops", "levels": [{"name": "ops", "approvers": [OPS]}], **rule}],
    }


TICKETED = policy(ticket={"required": True, "pattern": "^OPS-[0-9]+$"})


# ------------------------------------------------------------------------------------------- ticket
@pytest.mark.parametrize(
    ("ticket", "code"),
    [(None, "ticket_required"), ("INC-12", "ticket_mismatch"), ("OPS-12x", "ticket_mismatch")],
)
def test_a_rule_requiring_a_ticket_refuses_a_request_without_a_matching_one(
    ticket: str | None, code: str
) -> None:
    w = world(TICKETED)
    body = {} if ticket is None else {"ticket": ticket}
    with pytest.raises(InvalidInput) as err:
        create(w, **body)
    assert err.value.code == code
    assert "rule 'ops'" in err.value.message
    assert w.store.writes == []  # refused before anything is written or notified
    assert w.notifier.types == []


def test_a_matching_ticket_is_accepted_and_granted() -> None:
    w = world(TICKETED)
    request_id = create(w, ticket="OPS-42")
    w.service.approve(caller(BOB), request_id, None)
    assert w.grant().result == "granted"


def test_the_verifier_re_checks_the_ticket_at_grant_time() -> None:
    """The policy gained a ticket requirement after the approval: the grant is denied, with its code."""
    w = world(policy())
    request_id = create(w, ticket="INC-7")
    w.service.approve(caller(BOB), request_id, None)
    w.policies.document = TICKETED
    outcome = w.grant()
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["ticket_invalid"]


def test_an_extension_needs_the_ticket_its_rule_now_requires() -> None:
    w = world(policy())
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    assert w.grant().result == "granted"
    w.policies.document = TICKETED
    with pytest.raises(InvalidInput) as err:
        w.service.extend(caller(ALICE), request_id, {"reason": "more", "duration_minutes": 5})
    assert err.value.code == "ticket_required"


@pytest.mark.parametrize(
    ("ticket", "message"),
    [
        ("yes", "ticket must be an object"),
        ({"required": "yes"}, "ticket.required must be true or false"),
        ({"pattern": "(unclosed"}, "ticket.pattern is not a regular expression"),
        ({"pattern": ""}, "ticket.pattern must be a string of 1..200"),
        ({"required": True, "regex": "x"}, "unknown key(s) ['regex']"),
    ],
)
def test_invalid_ticket_rules_are_refused_with_where_and_why(ticket: object, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        ApprovalPolicy.parse(policy(ticket=ticket))
    assert message in str(err.value)
    assert "rules[0].ticket" in str(err.value)
