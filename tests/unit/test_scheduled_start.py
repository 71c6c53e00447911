"""Issue 18, a scheduled start on the native API: ``start_at`` within the rule's ``max_lead_minutes``;
the approved request is handed to the engine by the first sweep after its start (in-memory fakes, the
real grant core and native verifier)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.access_requests.errors import InvalidInput
from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError
from sessiongate.clock import to_iso
from tests.unit.access_world import APPROVERS, BOB, caller, create
from tests.unit.fakes.access import ACCOUNT, START, world

OPS = f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"


def policy(**rule: Any) -> dict[str, Any]:
    return {"version": 1, "rules": [{"name": "ops", "levels": [{"approvers": [OPS]}], **rule}]}


LEAD = policy(max_lead_minutes=120)


def at(minutes: int) -> str:
    return to_iso(START + timedelta(minutes=minutes))


def test_an_approved_scheduled_request_is_granted_by_the_first_sweep_after_its_start() -> None:
    w = world(LEAD)
    request_id = create(w, start_at=at(60), duration_minutes=10)
    approved = w.service.approve(caller(BOB), request_id, None)["request"]
    assert (approved["status"], approved["start_at"]) == ("APPROVED", at(60))
    assert w.bus.emitted == []  # not handed over before its start
    w.clock.advance(timedelta(minutes=59))
    assert w.service.sweep().get("started") is None
    assert w.bus.emitted == []
    w.clock.advance(timedelta(minutes=1))
    assert w.service.sweep()["started"] == 1
    [event] = w.bus.emitted
    assert event.not_before == START + timedelta(minutes=60)
    assert event.approved_at == START  # the approval's own time: the MAC binds both
    outcome = w.grant()
    assert outcome.result == "granted", outcome.detail
    grant = w.ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert grant.expires_at == at(70)
    assert w.service.sweep().get("started") is None  # handed over once


def test_a_start_already_past_at_approval_starts_at_once() -> None:
    w = world(LEAD)
    request_id = create(w, start_at=at(5))
    w.clock.advance(timedelta(minutes=10))
    w.service.approve(caller(BOB), request_id, None)
    assert len(w.bus.emitted) == 1
    assert w.grant().result == "granted"


@pytest.mark.parametrize(
    ("document", "body", "code"),
    [
        (policy(), {"start_at": at(30)}, "start_at_not_allowed"),
        (LEAD, {"start_at": at(121)}, "start_at_too_far"),
        (LEAD, {"start_at": at(-5)}, "start_at_in_past"),
        (LEAD, {"start_at": "tomorrow"}, "invalid_start_at"),
        (LEAD, {"start_at": "2026-01-05T10:00:00"}, "invalid_start_at"),  # no zone
    ],
)
def test_a_start_the_rule_does_not_allow_is_a_400(
    document: dict[str, Any], body: dict[str, Any], code: str
) -> None:
    w = world(document)
    with pytest.raises(InvalidInput) as err:
        create(w, **body)
    assert err.value.code == code
    assert w.store.items == {}


def test_break_glass_cannot_be_scheduled() -> None:
    w = world(policy(max_lead_minutes=60, break_glass={"enabled": True}))
    with pytest.raises(InvalidInput) as err:
        create(w, start_at=at(10), break_glass=True, reason="the primary database is down since 03:10")
    assert err.value.code == "start_at_not_allowed"


def test_the_verifier_refuses_an_event_that_starts_earlier_than_the_record() -> None:
    w = world(LEAD)
    request_id = create(w, start_at=at(60))
    w.service.approve(caller(BOB), request_id, None)
    record = w.store.get(request_id)
    assert record is not None
    early = replace(record.to_access_approved(), not_before=START)  # a hand-made event: start now
    outcome = w.grant(early)
    assert outcome.result == "denied"
    assert outcome.detail["denials"] == [
        {
            "code": "origin_mismatch",
            "message": f"the event disagrees with request {request_id} on ['approved_at']",
        }
    ]


def test_the_approval_mac_binds_the_scheduled_start() -> None:
    w = world(LEAD)
    request_id = create(w, start_at=at(60))
    w.service.approve(caller(BOB), request_id, None)
    record = w.store.get(request_id)
    assert record is not None
    w.store.items[request_id] = replace(record, start_at=at(30))  # moved by someone who writes the table
    w.clock.advance(timedelta(minutes=30))
    assert w.service.sweep().get("started") is None  # the sweep hands over only what the API approved


@pytest.mark.parametrize("lead", [0, 10081, "60", True])
def test_invalid_max_lead_is_refused(lead: object) -> None:
    with pytest.raises(PolicyError, match=r"rules\[0\]\.max_lead_minutes must be an integer from 1 to 10080"):
        ApprovalPolicy.parse(policy(max_lead_minutes=lead))
