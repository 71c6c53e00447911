"""The transactional outbox: which record changes are which lifecycle events, with what payload and id;
the publisher and the stream handler (partial batch responses, in order)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from functions.publish_events import app
from sessiongate.access_requests.policy import Level, Rule
from sessiongate.access_requests.records import AUTO_LEVEL, Approval, Request, RequestStatus
from sessiongate.access_requests.rule_limits import Reminders, SessionDocument
from sessiongate.adapters.ledger import _item
from sessiongate.adapters.request_store import to_item
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.errors import TransientError
from sessiongate.outbox import (
    LEDGER,
    REQUESTS,
    Publisher,
    events_of,
    grant_events,
    request_events,
    rule_snapshot,
)

ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"
LEDGER_STREAM = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sg-GrantsTable-X/stream/2026-01-01T00:00:00.000"
REQUESTS_STREAM = (
    f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sg-RequestsTable-X/stream/2026-01-01T00:00:00.000"
)
RULE = Rule("ops", (Level("first", (BOB,), 1), Level("second", (CAROL,), 1)))


def _grant(status: GrantStatus, **changes: Any) -> Grant:
    grant = Grant(
        grant_id="cm-1",
        status=status,
        origin="change-manager",
        origin_ref="oi-0123456789ab",
        account=ACCOUNT,
        instance_id="i-0123456789abcdef0",
        principal_type="user",
        principal_name="alice",
        principal_arn=ALICE,
        requester_arn=ALICE,
        approver_arns=[BOB],
        duration_minutes=10,
        created_at="2026-01-05T09:00:00Z",
    )
    return replace(grant, **changes)


ACTIVE = _grant(
    GrantStatus.ACTIVE, slot=1, expires_at="2026-01-05T09:10:00Z", activated_at="2026-01-05T09:00:01Z"
)


def test_a_grant_going_active_is_access_granted_with_the_payload_subscribers_know() -> None:
    [event] = grant_events(None, ACTIVE)
    assert event.event_type == "AccessGranted"
    assert event.subject == "SessionGate: alice may open a session on i-0123456789abcdef0"
    assert event.event_id == "AccessGranted/cm-1"
    assert event.payload == {
        "at": "2026-01-05T09:00:01Z",
        "grant_id": "cm-1",
        "status": "ACTIVE",
        "account": ACCOUNT,
        "instance_id": "i-0123456789abcdef0",
        "principal_arn": ALICE,
        "principal_name": "alice",
        "origin": "change-manager",
        "origin_ref": "oi-0123456789ab",
        "requester_arn": ALICE,
        "approver_arns": [BOB],
        "expires_at": "2026-01-05T09:10:00Z",
        "slot": 1,
        "event_id": "AccessGranted/cm-1",
    }
    # From PROVISIONING too (records of earlier releases); an older record's time is its creation.
    [event] = grant_events(_grant(GrantStatus.PROVISIONING), replace(ACTIVE, activated_at=None))
    assert (event.event_type, event.payload["at"]) == ("AccessGranted", "2026-01-05T09:00:00Z")


def test_revocations_and_denials_carry_their_reason() -> None:
    revoked = replace(
        ACTIVE,
        status=GrantStatus.REVOKED,
        revoked_at="2026-01-05T09:10:20Z",
        revoke_reason="expired",
        revoked_by="scheduler",
    )
    [event] = grant_events(ACTIVE, revoked)
    assert event.event_type == "AccessRevoked"
    assert event.subject == "SessionGate: access of alice to i-0123456789abcdef0 revoked"
    assert (event.payload["at"], event.payload["reason"], event.payload["revoked_by"]) == (
        "2026-01-05T09:10:20Z",
        "expired",
        "scheduler",
    )
    denials = [{"code": "instance_not_found", "message": "gone"}, {"code": "stale", "message": "old"}]
    [event] = grant_events(None, _grant(GrantStatus.DENIED, denials=denials))
    assert event.event_type == "AccessDenied"
    assert event.subject == "SessionGate: request cm-1 denied (instance_not_found, stale)"
    assert event.payload["denials"] == denials
    assert event.event_id == "AccessDenied/cm-1"


def test_changes_that_are_no_state_change_are_no_event() -> None:
    # The schedule name written, a tombstone added, a record written again unchanged: no event.
    assert grant_events(ACTIVE, replace(ACTIVE, schedule_name="sg-revoke-cm-1")) == []
    assert grant_events(ACTIVE, ACTIVE) == []
    assert grant_events(None, _grant(GrantStatus.PROVISIONING)) == []
    assert grant_events(ACTIVE, None) == []  # a deletion


def _ledger_image(grant: Grant) -> dict[str, Any]:
    values = {
        **grant.__dict__,
        "status": grant.status.value,
        "pk": f"GRANT#{grant.grant_id}",
        "kind": "grant",
    }
    return _item(values)


def test_stream_images_of_the_ledger_are_read_as_the_adapter_reads_items() -> None:
    [event] = events_of(LEDGER, None, _ledger_image(ACTIVE))
    assert event.payload["slot"] == 1  # a number in DynamoDB, an int in the payload
    slot = {"pk": {"S": f"SLOT#{ALICE}#1"}, "kind": {"S": "slot"}, "grant_id": {"S": "cm-1"}}
    tombstone = {"pk": {"S": "GRANT#cm-2"}, "revoke_requested": {"S": "2026-01-05T09:00:00Z"}}
    assert events_of(LEDGER, None, slot) == []
    assert events_of(LEDGER, None, tombstone) == []
    with pytest.raises(ValueError, match="unknown outbox source"):
        events_of("elsewhere", None, slot)


def _request(**changes: Any) -> Request:
    request = Request(
        request_id="r1",
        status=RequestStatus.PENDING,
        account=ACCOUNT,
        instance_id="i-0123456789abcdef0",
        principal_type=PrincipalType.USER,
        principal_name="alice",
        principal_arn=ALICE,
        requester_arn=ALICE,
        duration_minutes=30,
        reason="restart nginx",
        created_at="2026-01-05T09:00:00Z",
        pending_expires_at="2026-01-05T10:00:00Z",
        rule="ops",
        history=({"at": "2026-01-05T09:00:00Z", "status": "PENDING", "by": ALICE},),
        notice_rule=rule_snapshot(RULE),
    )
    return replace(request, **changes)


def test_a_new_request_asks_its_first_approvers_and_each_approval_reports_progress() -> None:
    pending = _request()
    [event] = request_events(None, pending)
    assert event.event_type == "AccessRequested"
    assert event.subject == "SessionGate: approve alice on i-0123456789abcdef0?"
    assert event.event_id == "AccessRequested/r1/0"
    assert event.payload == {
        "at": "2026-01-05T09:00:00Z",
        "request_id": "r1",
        "grant_id": "rq-r1",
        "status": "PENDING",
        "account": ACCOUNT,
        "instance_id": "i-0123456789abcdef0",
        "principal_arn": ALICE,
        "principal_name": "alice",
        "requester_arn": ALICE,
        "approver_arns": [],
        "duration_minutes": 30,
        "reason": "restart nginx",
        "ticket": "",
        "break_glass": False,
        "origin": "native",
        "origin_ref": "r1",
        "rule": "ops",
        "approval_progress": [
            {"level": 1, "name": "first", "approved": 0, "required": 1},
            {"level": 2, "name": "second", "approved": 0, "required": 1},
        ],
        "next_approvers": [BOB],
        "event_id": "AccessRequested/r1/0",
    }
    once = replace(pending, approvals=(Approval(BOB, 0, "2026-01-05T09:05:00Z"),), version=1)
    [event] = request_events(pending, once)
    assert (event.event_type, event.event_id, event.payload["at"]) == (
        "ApprovalRecorded",
        "ApprovalRecorded/r1/1",
        "2026-01-05T09:05:00Z",
    )
    assert event.payload["next_approvers"] == [CAROL]
    assert event.subject == "SessionGate: more approvals needed for request r1"


@pytest.mark.parametrize(
    ("status", "break_glass", "event_type", "with_rule"),
    [
        (RequestStatus.APPROVED, False, "AccessApproved", True),
        (RequestStatus.APPROVED, True, "BreakGlassUsed", True),
        (RequestStatus.REJECTED, False, "AccessRejected", True),
        (RequestStatus.CANCELLED, False, "AccessRequestCancelled", False),
        (RequestStatus.EXPIRED, False, "AccessRequestExpired", False),
    ],
)
def test_each_decision_on_a_pending_request_is_one_event(
    status: RequestStatus, break_glass: bool, event_type: str, with_rule: bool
) -> None:
    pending = _request()
    decided = pending.transition(
        status, at=_at("09:07"), by=BOB, version=1, break_glass=break_glass, comment="ok"
    )
    [event] = request_events(pending, decided)
    assert event.event_type == event_type
    assert event.payload["at"] == "2026-01-05T09:07:00Z"
    assert event.payload["status"] == status.value
    assert event.payload["comment"] == "ok"
    assert ("rule" in event.payload) is with_rule
    if status is RequestStatus.APPROVED:
        # ... and never again: the moves that follow the grant are the grant's own events.
        expired = decided.transition(RequestStatus.EXPIRED, at=_at("09:30"), by="sessiongate", version=2)
        assert request_events(decided, expired) == []


def test_a_break_glass_request_created_approved_is_break_glass_used_only() -> None:
    approved = _request().transition(
        RequestStatus.APPROVED,
        at=_at("09:00"),
        by=ALICE,
        break_glass=True,
        approved_at="2026-01-05T09:00:00Z",
        version=1,
    )
    [event] = request_events(None, approved)
    assert event.event_type == "BreakGlassUsed"
    assert event.payload["notify_approvers"] == [BOB, CAROL]
    assert event.subject == "SessionGate: BREAK-GLASS alice on i-0123456789abcdef0"
    # An approved request created otherwise (none is) and the grant's own moves stand for nothing.
    assert request_events(None, replace(approved, break_glass=False)) == []
    active = approved.transition(RequestStatus.ACTIVE, at=_at("09:01"), by="sessiongate", version=2)
    assert request_events(approved, active) == []


def test_the_rule_described_is_the_one_the_writer_decided_under() -> None:
    """A policy changed after the write does not change what the write's notification says."""
    pending = _request()
    [event] = events_of(REQUESTS, None, to_item(pending))
    assert event.payload["next_approvers"] == [BOB]
    assert event.payload["approval_progress"][1]["required"] == 1


# -- issue 18 (auto-approval, reminders, escalation, rule fields) and Identity Center groups ------------
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/sessiongate-request-api"
MANAGERS = f"arn:aws:iam::{ACCOUNT}:role/Managers"
FULL_RULE = Rule(
    "ops",
    (Level("first", (BOB,), 1, groups=("Platform-Leads",)), Level("second", (CAROL,), 1, groups=("SRE",))),
    reminders=Reminders(remind_after_minutes=15, escalate_after_minutes=40, escalate_to=(MANAGERS,)),
    documents=(
        SessionDocument("AWS-StartInteractiveCommand"),
        SessionDocument("AWS-StartPortForwardingSessionToRemoteHost", ("db.internal",), (5432,)),
    ),
)


def _auto_approved(pending: Request) -> Request:
    return pending.transition(
        RequestStatus.APPROVED,
        at=_at("09:00"),
        by=API_ROLE,
        approvals=(Approval(API_ROLE, AUTO_LEVEL, "2026-01-05T09:00:00Z", "auto"),),
        approver_arns=(API_ROLE,),
        approved_at="2026-01-05T09:00:00Z",
        auto_approval="dev in office hours",
        version=pending.version + 1,
    )


def test_an_auto_approved_request_is_auto_approved_never_a_persons_approval() -> None:
    """Created APPROVED by a permit (one write), or so approved later: AutoApproved, naming the permit,
    to every approver of the rule (ARN patterns and Identity Center groups)."""
    approved = _auto_approved(_request(notice_rule=rule_snapshot(FULL_RULE)))
    [event] = request_events(None, approved)
    assert (event.event_type, event.event_id) == ("AutoApproved", "AutoApproved/r1/1")
    assert event.subject == "SessionGate: AUTO-APPROVED alice on i-0123456789abcdef0"
    assert event.payload["at"] == "2026-01-05T09:00:00Z"
    assert (event.payload["approval_kind"], event.payload["auto_approval"]) == (
        "AutoApproved",
        "dev in office hours",
    )
    assert event.payload["notify_approvers"] == [
        BOB,
        CAROL,
        "identity_center_group:Platform-Leads",
        "identity_center_group:SRE",
    ]
    [event] = request_events(_request(notice_rule=rule_snapshot(FULL_RULE)), approved)
    assert event.event_type == "AutoApproved"


def test_a_reminder_and_an_escalation_are_the_sweeps_writes_of_a_pending_request() -> None:
    pending = _request(notice_rule=rule_snapshot(FULL_RULE))
    reminded = replace(pending, reminders_sent=1, reminded_at="2026-01-05T09:15:00Z", version=1)
    [event] = request_events(pending, reminded)
    assert (event.event_type, event.event_id, event.payload["at"]) == (
        "AccessRequestReminder",
        "AccessRequestReminder/r1/1",
        "2026-01-05T09:15:00Z",
    )
    assert event.subject == "SessionGate: reminder - request r1 waits for you"
    assert event.payload["next_approvers"] == [BOB, "identity_center_group:Platform-Leads"]
    assert "escalate_to" not in event.payload
    # One write that owes a reminder and the escalation is the escalation (it names the approvers too).
    escalated = replace(reminded, reminders_sent=2, escalated_at="2026-01-05T09:40:00Z", version=2)
    [event] = request_events(reminded, escalated)
    assert (event.event_type, event.event_id, event.payload["at"]) == (
        "AccessRequestEscalated",
        "AccessRequestEscalated/r1/2",
        "2026-01-05T09:40:00Z",
    )
    assert event.subject == "SessionGate: ESCALATED - request r1 still waits"
    assert event.payload["escalate_to"] == [MANAGERS]
    assert event.payload["next_approvers"] == [BOB, "identity_center_group:Platform-Leads"]
    # Written again without a new reminder or escalation (a lost race re-read, say): nothing.
    assert request_events(escalated, replace(escalated, version=3)) == []


def test_the_issue_18_fields_and_group_approvers_come_through_the_stream() -> None:
    """Ticket, scheduled start, documents (with the rule's hosts and ports for the approvers to judge),
    group approvers: from the stream's typed image (numbers come back as Decimal) into the payload."""
    pending = _request(
        ticket="CHG-42",
        start_at="2026-01-05T12:00:00Z",
        documents=("AWS-StartPortForwardingSessionToRemoteHost",),
        notice_rule=rule_snapshot(FULL_RULE),
    )
    [event] = events_of(REQUESTS, None, to_item(pending))
    payload = event.payload
    assert (payload["ticket"], payload["start_at"]) == ("CHG-42", "2026-01-05T12:00:00Z")
    assert payload["documents"] == ["AWS-StartPortForwardingSessionToRemoteHost"]
    assert payload["rule_documents"] == [
        {"name": "AWS-StartPortForwardingSessionToRemoteHost", "hosts": ["db.internal"], "ports": [5432]}
    ]
    assert json.loads(json.dumps(payload)) == payload  # SNS gets JSON: no Decimal left
    assert payload["next_approvers"] == [BOB, "identity_center_group:Platform-Leads"]
    # A group member's approval counts as the request API accepted it (the publisher asks no store).
    member = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Lead_0123456789abcdef/dana"
    once = replace(pending, approvals=(Approval(member, 0, "2026-01-05T09:05:00Z"),), version=1)
    [event] = events_of(REQUESTS, to_item(pending), to_item(once))
    assert event.event_type == "ApprovalRecorded"
    assert event.payload["approval_progress"][0]["approved"] == 1
    assert event.payload["next_approvers"] == [CAROL, "identity_center_group:SRE"]


def _at(hhmm: str) -> Any:
    from sessiongate.clock import parse_iso

    return parse_iso(f"2026-01-05T{hhmm}:00Z")


class Recorder:
    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.fail_on = fail_on or set()
        self.sent: list[tuple[str, str | None]] = []

    def publish(self, event_type: str, payload: Any, *, subject: str, event_id: str | None = None) -> bool:
        if event_id in self.fail_on:
            return False
        self.sent.append((event_type, event_id))
        return True


def _publisher(notifier: Recorder) -> Publisher:
    return Publisher(notifier, {"sg-GrantsTable-X": LEDGER, "sg-RequestsTable-X": REQUESTS})


def test_an_event_sns_did_not_take_fails_its_record() -> None:
    publisher = _publisher(Recorder(fail_on={"AccessGranted/cm-1"}))
    with pytest.raises(TransientError, match="AccessGranted/cm-1"):
        publisher.publish(LEDGER_STREAM, {"NewImage": _ledger_image(ACTIVE)})
    with pytest.raises(ValueError, match="unknown stream"):
        publisher.publish(LEDGER_STREAM.replace("sg-GrantsTable-X", "other"), {"NewImage": {}})


def _record(seq: int, stream: str, change: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventID": str(seq),
        "eventName": "INSERT" if "OldImage" not in change else "MODIFY",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": stream,
        "dynamodb": {**change, "SequenceNumber": str(seq), "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


class Context:
    function_name = "sessiongate-publish-events"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:sessiongate-publish-events"
    aws_request_id = "test"


def test_the_handler_publishes_in_order_and_reports_from_the_first_failure_on() -> None:
    """Lambda resumes the shard at the first reported record: those after it are not published now
    (they would be again on the retry), so subscribers get each event once, in order."""
    other = replace(ACTIVE, grant_id="cm-2")
    third = replace(ACTIVE, grant_id="cm-3")
    event = {
        "Records": [
            _record(1, LEDGER_STREAM, {"NewImage": _ledger_image(ACTIVE)}),
            _record(2, LEDGER_STREAM, {"NewImage": _ledger_image(other)}),
            _record(3, REQUESTS_STREAM, {"NewImage": to_item(_request())}),
            _record(4, LEDGER_STREAM, {"NewImage": _ledger_image(third)}),
        ]
    }
    notifier = Recorder(fail_on={"AccessGranted/cm-2"})
    answer = app.lambda_handler(json.loads(json.dumps(event)), Context(), deps=_publisher(notifier))
    assert answer == {
        "batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}, {"itemIdentifier": "4"}]
    }
    assert notifier.sent == [("AccessGranted", "AccessGranted/cm-1")]
    # The retry from record 2 publishes the rest, once each.
    notifier.fail_on.clear()
    retry = {"Records": event["Records"][1:]}
    assert app.lambda_handler(retry, Context(), deps=_publisher(notifier)) == {"batchItemFailures": []}
    assert [i for _, i in notifier.sent] == [
        "AccessGranted/cm-1",
        "AccessGranted/cm-2",
        "AccessRequested/r1/0",
        "AccessGranted/cm-3",
    ]
