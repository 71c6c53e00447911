"""Issue 18, reminders and escalation: the sweep re-notifies the approvers a pending request waits for
every N minutes and notifies a second list once after M minutes, within the pending TTL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.access_requests.errors import NotAllowed
from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError
from sessiongate.core.notifications import render
from tests.unit.access_world import APPROVERS, BOB, SAM, caller, create
from tests.unit.fakes.access import ACCOUNT, world

OPS = f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"
MANAGERS = f"arn:aws:iam::{ACCOUNT}:role/Managers"
REMINDING = {
    "version": 1,
    "rules": [
        {
            "name": "ops",
            "levels": [{"approvers": [OPS]}],
            "reminders": {
                "remind_after_minutes": 15,
                "escalate_after_minutes": 40,
                "escalate_to": [MANAGERS],
            },
        }
    ],
}


def sweep_at(w: Any, minutes: int) -> dict[str, Any]:
    w.clock.advance(timedelta(minutes=minutes))
    result: dict[str, Any] = w.service.sweep()
    return result


def test_reminders_every_n_minutes_then_one_escalation_then_nothing_after_the_ttl() -> None:
    w = world(REMINDING)  # the pending TTL is the default 60 minutes
    request_id = create(w)
    assert sweep_at(w, 14).get("reminded") is None
    assert sweep_at(w, 1)["reminded"] == 1  # 15 min
    assert sweep_at(w, 5).get("reminded") is None  # 20 min: the same period, not again
    assert sweep_at(w, 10)["reminded"] == 1  # 30 min: second reminder
    assert sweep_at(w, 10)["reminded"] == 1  # 40 min: the escalation
    assert sweep_at(w, 5)["reminded"] == 1  # 45 min: third reminder
    assert sweep_at(w, 20).get("reminded") is None  # 65 min: expired, never reminded again
    assert w.notifier.types == [
        "AccessRequested",
        "AccessRequestReminder",
        "AccessRequestReminder",
        "AccessRequestEscalated",
        "AccessRequestReminder",
        "AccessRequestExpired",
    ]
    reminder = dict(w.notifier.sent)["AccessRequestReminder"]
    assert (reminder["request_id"], reminder["next_approvers"]) == (request_id, [OPS])
    escalation = dict(w.notifier.sent)["AccessRequestEscalated"]
    assert escalation["escalate_to"] == [MANAGERS]
    email = render("AccessRequestEscalated", escalation)["email"]
    assert f"ESCALATED to {MANAGERS}: nobody approved it in time." in email
    assert f"sessiongate approve {request_id}" in email


def test_an_approved_request_is_not_reminded() -> None:
    w = world(REMINDING)
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    assert sweep_at(w, 45).get("reminded") is None
    assert "AccessRequestReminder" not in w.notifier.types


def test_missed_periods_make_one_reminder_and_a_lost_race_sends_none() -> None:
    w = world(REMINDING)
    create(w)
    w.clock.advance(timedelta(minutes=35))  # two periods passed unswept (and the escalation is not due)
    assert w.service.sweep()["reminded"] == 1
    assert w.notifier.types.count("AccessRequestReminder") == 1
    assert sweep_at(w, 1).get("reminded") is None  # 36 min: the count reached 2, nothing owed
    # Another writer wins the record meanwhile: no notification from this sweep.
    w.clock.advance(timedelta(minutes=9))  # 45 min: the third reminder and the escalation are due

    def other_writer(_: str) -> None:
        [pending] = w.store.pending(limit=1)
        w.store.items[pending.request_id] = replace(pending, version=pending.version + 1)

    w.store.before_write = other_writer
    sent = len(w.notifier.sent)
    assert w.service.sweep().get("reminded") is None
    assert len(w.notifier.sent) == sent


@pytest.mark.parametrize(
    ("reminders", "message"),
    [
        ({}, "must set remind_after_minutes"),
        ({"remind_after_minutes": 0}, "remind_after_minutes must be an integer from 1"),
        ({"escalate_after_minutes": 30}, "escalate_after_minutes and escalate_to go together"),
        ({"escalate_to": [MANAGERS]}, "escalate_after_minutes and escalate_to go together"),
        ({"escalate_after_minutes": 30, "escalate_to": ["managers"]}, "escalate_to must be a list of ARN"),
        ({"every": 5}, "unknown key(s) ['every']"),
    ],
)
def test_invalid_reminders_are_refused_with_where_and_why(reminders: object, message: str) -> None:
    document = {
        "version": 1,
        "rules": [{"name": "ops", "levels": [{"approvers": [OPS]}], "reminders": reminders}],
    }
    with pytest.raises(PolicyError) as err:
        ApprovalPolicy.parse(document)
    assert message in str(err.value)
    assert "rules[0].reminders" in str(err.value)


def test_once_escalated_the_second_list_may_approve_and_the_grant_accepts_it() -> None:
    security = f"arn:aws:iam::{ACCOUNT}:role/Security"
    document = {
        "version": 1,
        "rules": [
            {
                "name": "ops",
                "levels": [{"approvers": [OPS]}],
                "reminders": {"escalate_after_minutes": 30, "escalate_to": [security]},
            }
        ],
    }
    w = world(document)
    request_id = create(w)
    with pytest.raises(NotAllowed) as err:
        w.service.approve(caller(SAM), request_id, None)
    assert err.value.code == "not_an_approver"
    w.clock.advance(timedelta(minutes=30))
    approved = w.service.approve(caller(SAM), request_id, None)["request"]
    assert (approved["status"], approved["approvals"][0]["approver_arn"]) == ("APPROVED", SAM)
    assert w.grant().result == "granted"  # the native verifier counts the escalated approval


def test_the_verifier_does_not_count_an_escalated_approver_before_the_escalation() -> None:
    """A record whose approval by the second list predates the escalation (no API makes one; a signed
    record edited to claim it, or a policy whose escalation time grew since) is not granted."""
    security = f"arn:aws:iam::{ACCOUNT}:role/Security"
    plan = {"escalate_after_minutes": 30, "escalate_to": [security]}
    document = {"version": 1, "rules": [{"name": "ops", "levels": [{"approvers": [OPS]}], "reminders": plan}]}
    w = world(document)
    request_id = create(w)
    w.clock.advance(timedelta(minutes=30))
    w.service.approve(caller(SAM), request_id, None)
    w.policies.document = {
        **document,
        "rules": [{**document["rules"][0], "reminders": {**plan, "escalate_after_minutes": 45}}],
    }
    outcome = w.grant()
    assert outcome.result == "denied"
    assert outcome.detail["denials"][0]["code"] == "approval_insufficient"
