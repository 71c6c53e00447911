"""Change Manager adapter: the event is only a pointer; SSM's record decides."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sessiongate.adapters.change_requests import ChangeRequests
from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.interpretation import interpret
from sessiongate.core.model import AccessApproved, GrantStatus
from sessiongate.errors import TransientError
from tests.conftest import load_event
from tests.support.stack import ACCOUNT, Stack, change_request, settings, through_change_manager

BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
SAMPLE_EXECUTION_ID = "d0585556-80f6-4522-8dad-dada6d45b67d"
CHANGE_REQUEST_FILTERS = [
    {"Key": "OpsItemId", "Values": ["oi-0123456789ab"]},
    {"Key": "AutomationSubtype", "Values": ["ChangeRequest"]},
]


def _sample_request() -> AccessApproved:
    return AccessApproved.from_detail(load_event("access_approved.json")["detail"])


@pytest.fixture(autouse=True)
def _sample_approver_is_in_the_approver_group(request: pytest.FixtureRequest) -> None:
    """The sample change request's approver (bob) is a member of the stack's approver group."""
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        stack.approvers(*_sample_request().approver_arns)


@pytest.fixture
def approved_event(stack: Stack) -> dict[str, Any]:
    stack.ssm.add_execution(change_request(_sample_request()))
    return load_event("change_request_approved.json")


def test_approved_change_request_emits_one_normalized_access_approved(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    outcome = stack.change_manager().on_change_request(approved_event)

    assert outcome.result == "emitted"
    [event] = stack.bus_events()
    assert event["source"] == "sessiongate"
    assert event["detail-type"] == "AccessApproved"
    assert event["detail"] == load_event("access_approved.json")["detail"]
    assert stack.ssm.calls == ["DescribeAutomationExecutions", "GetAutomationExecution"]


def test_duplicate_approved_events_converge_on_one_grant(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    adapter = stack.change_manager()
    adapter.on_change_request(approved_event)
    adapter.on_change_request(copy.deepcopy(approved_event))
    events = stack.bus_events()
    assert [e["detail"]["grant_id"] for e in events] == [f"cm-{SAMPLE_EXECUTION_ID}"] * 2
    # Make the sample's principal and instance real, then deliver both events to the grant.
    stack.user("alice")
    instance = stack.instance()
    stack.ssm.executions[SAMPLE_EXECUTION_ID]["Runbooks"][0]["Parameters"]["InstanceId"] = [instance]
    results = []
    for event in events:
        event["detail"]["instance_id"] = instance
        results.append(stack.engine().on_access_approved(event).result)
    assert results == ["granted", "duplicate"]
    assert len(stack.schedules()) == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"AutomationExecutionStatus": "Rejected"}, "change_request_not_approved"),
        ({"AutomationExecutionStatus": "Failed"}, "change_request_not_approved"),
        ({"ExecutedBy": "arn:aws:iam::123456789012:user/mallory"}, "requester_mismatch"),
        # alice of another account may be the same person, but it is not the same requester record.
        ({"ExecutedBy": "arn:aws:iam::210987654321:user/alice"}, "requester_mismatch"),
        ({"DocumentName": "SomeOtherTemplate"}, "unknown_template"),
    ],
)
def test_ssm_record_that_is_not_an_approved_change_request_is_denied(
    stack: Stack, approved_event: dict[str, Any], change: dict[str, Any], code: str
) -> None:
    stack.ssm.executions[SAMPLE_EXECUTION_ID].update(change)
    outcome = stack.change_manager().on_change_request(approved_event)
    assert outcome.result == "denied"
    assert code in [d["code"] for d in outcome.detail["denials"]]
    assert stack.bus_events() == []
    record = stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}")
    assert record is not None
    assert record.status is GrantStatus.DENIED


def test_a_change_calendar_override_decides_nothing_until_it_is_approved(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    """Approved, but the change calendar is closed: SSM shows PendingChangeCalendarOverride. No DENIED
    record (it would make the grant of the later override a duplicate); the later status event grants."""
    execution = stack.ssm.executions[SAMPLE_EXECUTION_ID]
    execution["AutomationExecutionStatus"] = "PendingChangeCalendarOverride"
    adapter = stack.change_manager()
    assert adapter.on_change_request(approved_event).result == "ignored"
    assert stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}") is None
    assert stack.bus_events() == []

    execution["AutomationExecutionStatus"] = "RunbookInProgress"
    approved_event["detail"]["ops-item-status"] = "RunbookInProgress"
    assert adapter.on_change_request(approved_event).result == "emitted"
    assert len(stack.bus_events()) == 1


def test_an_in_progress_event_after_a_rejection_records_nothing(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    """Events come in any order: InProgress does not claim an approval, so a rejected request is no
    denial to record and notify (Change Manager tells of the rejection itself)."""
    stack.ssm.executions[SAMPLE_EXECUTION_ID]["AutomationExecutionStatus"] = "Rejected"
    approved_event["detail"]["ops-item-status"] = "InProgress"
    assert stack.change_manager().on_change_request(approved_event).result == "ignored"
    assert stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}") is None
    assert stack.notifications() == []


def test_automation_that_is_not_a_change_request_is_rejected(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    stack.ssm.executions[SAMPLE_EXECUTION_ID]["AutomationSubtype"] = "AccessRequest"
    assert stack.change_manager().on_change_request(approved_event).result == "rejected"
    assert stack.bus_events() == []


def test_rejected_approval_step_is_denied(stack: Stack) -> None:
    stack.ssm.add_execution(change_request(_sample_request(), approval="Rejected"))
    outcome = stack.change_manager().on_change_request(load_event("change_request_approved.json"))
    assert outcome.result == "denied"
    assert "change_request_not_approved" in [d["code"] for d in outcome.detail["denials"]]


def test_unknown_approvers_fail_closed(stack: Stack) -> None:
    stack.ssm.add_execution(change_request(_sample_request(), decisions=[]))
    outcome = stack.change_manager().on_change_request(load_event("change_request_approved.json"))
    assert outcome.result == "denied"
    assert "approvers_unknown" in [d["code"] for d in outcome.detail["denials"]]


def test_reject_decisions_do_not_count_as_approvals(stack: Stack) -> None:
    decisions = [{"Approver": f"arn:aws:iam::{ACCOUNT}:user/bob", "Decision": "Reject"}]
    stack.ssm.add_execution(change_request(_sample_request(), decisions=decisions))
    outcome = stack.change_manager().on_change_request(load_event("change_request_approved.json"))
    assert "approvers_unknown" in [d["code"] for d in outcome.detail["denials"]]


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("InstanceId", ["i-nothex"]),
        ("InstanceId", ["i-0a1b2c3d4e5f60718", "i-0a1b2c3d4e5f60719"]),
        ("PrincipalType", ["Group"]),
        ("PrincipalName", ["alice bob"]),
        ("ValidityMinutes", ["-5"]),
        ("ValidityMinutes", ["ten"]),
    ],
)
def test_invalid_runbook_parameters_are_denied(stack: Stack, name: str, values: list[str]) -> None:
    execution = change_request(_sample_request())
    execution["Runbooks"][0]["Parameters"][name] = values
    stack.ssm.add_execution(execution)
    outcome = stack.change_manager().on_change_request(load_event("change_request_approved.json"))
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["invalid_parameters"]


def test_missing_validity_uses_the_configured_default(stack: Stack) -> None:
    execution = change_request(_sample_request())
    del execution["Runbooks"][0]["Parameters"]["ValidityMinutes"]
    stack.ssm.add_execution(execution)
    assert (
        stack.change_manager().on_change_request(load_event("change_request_approved.json")).result
        == "emitted"
    )
    [event] = stack.bus_events()
    assert event["detail"]["duration_minutes"] == stack.settings.default_validity_minutes


def test_future_scheduled_time_defers_the_grant_until_then(stack: Stack) -> None:
    later = stack.clock.now() + timedelta(hours=2)
    stack.ssm.add_execution(change_request(_sample_request(), status="Scheduled", scheduled=later))
    adapter = stack.change_manager()

    outcome = adapter.on_change_request(load_event("change_request_approved.json"))

    assert outcome.result == "deferred"
    assert stack.bus_events() == []
    [(name, schedule)] = stack.schedules().items()
    assert name == f"sg-start-cm-{SAMPLE_EXECUTION_ID}"
    assert schedule["ScheduleExpression"] == "at(2026-11-24T11:00:00)"
    assert schedule["Target"]["Arn"] == stack.settings.adapter_target_arn
    due = json.loads(schedule["Target"]["Input"])
    assert due == load_event("change_request_due.json")

    # At ScheduledTime the schedule fires: the adapter re-reads SSM and now emits.
    stack.clock.advance(timedelta(hours=2))
    assert adapter.on_change_request(due).result == "emitted"
    [event] = stack.bus_events()
    assert event["detail"]["not_before"] == "2026-11-24T11:00:00Z"


def test_deferral_is_idempotent(stack: Stack) -> None:
    later = stack.clock.now() + timedelta(hours=2)
    stack.ssm.add_execution(change_request(_sample_request(), status="Scheduled", scheduled=later))
    adapter = stack.change_manager()
    for _ in range(2):
        assert adapter.on_change_request(load_event("change_request_approved.json")).result == "deferred"
    assert len(stack.schedules()) == 1


def test_due_event_for_a_change_request_cancelled_meanwhile_is_denied(stack: Stack) -> None:
    stack.ssm.add_execution(change_request(_sample_request(), status="Cancelled"))
    outcome = stack.change_manager().on_change_request(load_event("change_request_due.json"))
    assert outcome.result == "denied"


def test_event_for_another_template_is_rejected(stack: Stack, approved_event: dict[str, Any]) -> None:
    approved_event["detail"]["change-template-document-name"] = "SomebodyElsesTemplate"
    outcome = stack.change_manager().on_change_request(approved_event)
    assert outcome.result == "rejected"
    assert stack.ssm.calls == []
    [note] = stack.notifications()
    assert note["attributes"]["event_type"] == "EventRejected"


@pytest.mark.parametrize("status", ["Open", "PendingApproval", "Rejected", "CompletedWithSuccess"])
def test_statuses_before_approval_or_after_the_runbook_are_ignored(
    stack: Stack, approved_event: dict[str, Any], status: str
) -> None:
    approved_event["detail"]["ops-item-status"] = status
    assert stack.change_manager().on_change_request(approved_event).result == "ignored"
    assert stack.ssm.calls == []


@pytest.mark.parametrize("status", ["Approved", "Scheduled", "RunbookInProgress", "InProgress"])
def test_every_status_after_approval_reads_ssm_and_emits_the_same_grant(
    stack: Stack, approved_event: dict[str, Any], status: str
) -> None:
    """A late or missing Approved event is covered by the statuses that follow it."""
    approved_event["detail"]["ops-item-status"] = status
    assert stack.change_manager().on_change_request(approved_event).result == "emitted"
    [event] = stack.bus_events()
    assert event["detail"]["grant_id"] == f"cm-{SAMPLE_EXECUTION_ID}"


def _lagging(stack: Stack, seconds: float) -> None:
    """SSM shows the sample change request as still waiting for approval for ``seconds`` more."""
    approved = stack.ssm.executions[SAMPLE_EXECUTION_ID]
    pending = copy.deepcopy(approved)
    pending["AutomationExecutionStatus"] = "PendingApproval"
    pending["StepExecutions"][0].update(StepStatus="Waiting", Outputs={})
    del pending["StepExecutions"][0]["ExecutionEndTime"]
    stack.ssm.clock = stack.clock
    stack.ssm.lagging[SAMPLE_EXECUTION_ID] = (pending, stack.clock.now() + timedelta(seconds=seconds))


def test_approval_ssm_shows_a_few_seconds_late_is_re_read_and_emitted(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    _lagging(stack, 5)
    start = stack.clock.now()
    outcome = stack.change_manager().on_change_request(approved_event)
    assert outcome.result == "emitted"
    assert len(stack.bus_events()) == 1
    assert stack.clock.now() - start == timedelta(seconds=7)  # waited 1 s, 2 s, 4 s: then it showed
    assert stack.notifications() == []
    assert stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}") is None


def test_approval_ssm_does_not_show_yet_is_transient_never_a_denial(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    _lagging(stack, 600)
    start = stack.clock.now()
    with pytest.raises(TransientError, match="not shown as approved yet"):
        stack.change_manager().on_change_request(approved_event)
    assert stack.clock.now() - start == timedelta(seconds=15)  # bounded: 1 + 2 + 4 + 8 s of waiting
    assert stack.ssm.calls.count("DescribeAutomationExecutions") == 5
    assert stack.bus_events() == []
    assert stack.notifications() == []  # no AccessDenied
    assert stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}") is None


def test_the_re_read_never_outlives_the_invocation(stack: Stack, approved_event: dict[str, Any]) -> None:
    """Waiting stops when the Lambda invocation has too little time left for another wait and re-read:
    the event is retried (transient), never timed out mid-way."""
    _lagging(stack, 600)
    start = stack.clock.now()
    deadline = start + timedelta(seconds=11)  # time for the 1 s and 2 s waits (each with the 5 s reserve)

    def remaining() -> float:
        return (deadline - stack.clock.now()).total_seconds()

    with pytest.raises(TransientError, match="not shown as approved yet"):
        stack.change_manager().on_change_request(approved_event, remaining_seconds=remaining)
    assert stack.clock.now() - start == timedelta(seconds=3)
    assert stack.ssm.calls.count("DescribeAutomationExecutions") == 3
    assert stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}") is None


def test_in_progress_without_approval_in_ssm_waits_for_a_later_event(
    stack: Stack, approved_event: dict[str, Any]
) -> None:
    """InProgress alone does not say the request was approved: no waiting, no retry, no denial."""
    _lagging(stack, 600)
    approved_event["detail"]["ops-item-status"] = "InProgress"
    start = stack.clock.now()
    assert stack.change_manager().on_change_request(approved_event).result == "ignored"
    assert stack.clock.now() == start
    assert stack.notifications() == []


def test_change_request_missing_in_ssm_is_rejected(stack: Stack) -> None:
    assert (
        stack.change_manager().on_change_request(load_event("change_request_approved.json")).result
        == "rejected"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["detail"].pop("ops-item-id"),
        lambda e: e["detail"].update({"ops-item-id": "oi-XYZ"}),
        lambda e: e["detail"].update({"ops-item-id": ["oi-0123456789ab"]}),
        lambda e: e["detail"].pop("ops-item-status"),
        lambda e: e["detail"].pop("change-template-document-name"),
        lambda e: e.update({"detail": "nope"}),
        lambda e: e.update({"source": "aws.ec2"}),
        lambda e: e.update({"detail-type": "Something Else"}),
    ],
)
def test_malformed_change_manager_events_are_rejected(stack: Stack, mutate: Any) -> None:
    event = load_event("change_request_approved.json")
    mutate(event)
    outcome = stack.change_manager().on_change_request(event)
    assert outcome.result == "rejected"
    assert stack.ssm.calls == []


def test_change_requests_adapter_calls_ssm_as_documented() -> None:
    """The exact SSM requests (botocore Stubber validates them against the service model)."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    execution = change_request(_sample_request())
    with Stubber(ssm) as stub:
        stub.add_response(
            "describe_automation_executions",
            {
                "AutomationExecutionMetadataList": [
                    {
                        "AutomationExecutionId": SAMPLE_EXECUTION_ID,
                        "AutomationSubtype": "ChangeRequest",
                        "OpsItemId": "oi-0123456789ab",
                    }
                ]
            },
            {"Filters": CHANGE_REQUEST_FILTERS, "MaxResults": 50},
        )
        stub.add_response(
            "get_automation_execution",
            {"AutomationExecution": execution},
            {"AutomationExecutionId": SAMPLE_EXECUTION_ID},
        )
        found = ChangeRequests(ssm).find("oi-0123456789ab")
        stub.assert_no_pending_responses()
    assert found is not None
    assert found["AutomationExecutionId"] == SAMPLE_EXECUTION_ID


def test_change_request_on_a_later_page_is_found() -> None:
    """DescribeAutomationExecutions pages (NextToken): the adapter reads every page."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    execution = change_request(_sample_request())
    meta = {"AutomationSubtype": "ChangeRequest", "OpsItemId": "oi-0123456789ab"}
    with Stubber(ssm) as stub:
        stub.add_response(
            "describe_automation_executions",
            {"AutomationExecutionMetadataList": [], "NextToken": "page-2"},
            {"Filters": CHANGE_REQUEST_FILTERS, "MaxResults": 50},
        )
        stub.add_response(
            "describe_automation_executions",
            {"AutomationExecutionMetadataList": [{**meta, "AutomationExecutionId": SAMPLE_EXECUTION_ID}]},
            {"Filters": CHANGE_REQUEST_FILTERS, "MaxResults": 50, "NextToken": "page-2"},
        )
        stub.add_response(
            "get_automation_execution",
            {"AutomationExecution": execution},
            {"AutomationExecutionId": SAMPLE_EXECUTION_ID},
        )
        found = ChangeRequests(ssm).find("oi-0123456789ab")
        stub.assert_no_pending_responses()
    assert found is not None


def test_only_change_requests_are_asked_for(stack: Stack, approved_event: dict[str, Any]) -> None:
    """Other automations linked to the OpsItem (a full first page of them) neither hide the change
    request nor pass for it: SSM is asked for change requests only (AutomationSubtype filter)."""
    change = stack.ssm.executions.pop(SAMPLE_EXECUTION_ID)
    for n in range(50):
        other = copy.deepcopy(change)
        other.update(
            AutomationExecutionId=f"11111111-2222-3333-4444-{n:012d}", AutomationSubtype="AccessRequest"
        )
        stack.ssm.add_execution(other)
    stack.ssm.add_execution(change)
    assert stack.change_manager().on_change_request(approved_event).result == "emitted"


def test_two_change_requests_for_one_ops_item_are_ambiguous() -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    meta = {"AutomationSubtype": "ChangeRequest", "OpsItemId": "oi-0123456789ab"}
    with Stubber(ssm) as stub:
        stub.add_response(
            "describe_automation_executions",
            {
                "AutomationExecutionMetadataList": [
                    {**meta, "AutomationExecutionId": SAMPLE_EXECUTION_ID},
                    {**meta, "AutomationExecutionId": "11111111-2222-3333-4444-555555555555"},
                ]
            },
        )
        assert ChangeRequests(ssm).find("oi-0123456789ab") is None


# -- who approved: the stack's approvers, not whoever the change template names --------------------
MALLORY = f"arn:aws:iam::{ACCOUNT}:user/mallory"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"


def _denied_with(stack: Stack, outcome: Any, code: str) -> None:
    assert outcome.result == "denied", outcome
    assert [d["code"] for d in outcome.detail["denials"]] == [code]
    assert stack.bus_events() == []
    record = stack.engine().ledger.get_grant(outcome.grant_id)
    assert record is not None
    assert record.status is GrantStatus.DENIED
    [notice] = stack.notifications()
    assert code in json.dumps(notice)


def test_an_approver_named_only_by_a_rewritten_change_template_is_denied(stack: Stack) -> None:
    """An SSM admin makes themselves the template's approver; Change Manager then accepts their approval
    (the fake refuses anyone the template does not name), but they are not in SessionGateApprovers."""
    stack.user("mallory")
    _, event = through_change_manager(stack, MALLORY, approver="mallory", kind="IamUser")
    assert (
        stack.ssm.executions[event["detail"]["change-request-id"]]["AutomationExecutionStatus"] == "Approved"
    )

    _denied_with(stack, stack.change_manager().on_change_request(event), "approver_not_configured")


def test_a_template_rewritten_to_fewer_approvals_is_denied(stack: Stack) -> None:
    """The stack asks for two approvers; the rewritten template for one: one approval is too few."""
    stack.approvers(CAROL)
    stack.settings = replace(stack.settings, min_required_approvals=2)
    _, event = through_change_manager(stack, CAROL, level=1)

    _denied_with(stack, stack.change_manager().on_change_request(event), "approvals_insufficient")


def test_two_sessions_of_one_approver_role_are_one_approver(stack: Stack) -> None:
    """Whoever assumes a role picks the session name: two sessions of it may be one person, counted once."""
    stack.settings = replace(
        stack.settings, approver_type="IamRole", approver_name="Approver", min_required_approvals=2
    )
    sessions = [f"arn:aws:sts::{ACCOUNT}:assumed-role/Approver/{name}" for name in ("carol", "carol-again")]
    _, event = through_change_manager(stack, *sessions, approver="Approver", kind="IamRole", level=2)

    _denied_with(stack, stack.change_manager().on_change_request(event), "approvals_insufficient")


def test_the_configured_approvers_are_enough(stack: Stack) -> None:
    stack.approvers(CAROL)
    stack.settings = replace(stack.settings, min_required_approvals=2)
    _, event = through_change_manager(stack, BOB, CAROL, level=2)

    assert stack.change_manager().on_change_request(event).result == "emitted"
    [approved] = stack.bus_events()
    assert approved["detail"]["approver_arns"] == [BOB, CAROL]


def test_an_approver_removed_from_the_group_no_longer_counts(stack: Stack) -> None:
    """Membership is read when the change request is interpreted, not when the approver signed."""
    _, event = through_change_manager(stack, BOB)
    stack.client("iam").remove_user_from_group(GroupName="SessionGateApprovers", UserName="bob")

    _denied_with(stack, stack.change_manager().on_change_request(event), "approver_not_configured")


@pytest.mark.parametrize(
    ("kind", "name", "approver", "code"),
    [
        ("IamUser", "bob", f"arn:aws:iam::{ACCOUNT}:user/team/bob", None),
        ("IamUser", "bob", f"arn:aws:iam::{ACCOUNT}:user/bobby", "approver_not_configured"),
        ("IamUser", "bob", "arn:aws:iam::210987654321:user/bob", "approver_not_configured"),
        ("IamUser", "bob", f"arn:aws:sts::{ACCOUNT}:assumed-role/bob/bob", "approver_not_configured"),
        ("IamRole", "Approver", f"arn:aws:sts::{ACCOUNT}:assumed-role/Approver/bob", None),
        ("IamRole", "Approver", f"arn:aws:iam::{ACCOUNT}:role/ops/Approver", None),
        ("IamRole", "Approver", f"arn:aws:sts::{ACCOUNT}:assumed-role/Other/bob", "approver_not_configured"),
        ("IamRole", "Approver", f"arn:aws:iam::{ACCOUNT}:user/Approver", "approver_not_configured"),
        (
            "SSOUser",
            "bob@example.com",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Ops_12/bob@example.com",
            None,
        ),
        (
            "SSOUser",
            "bob@example.com",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops/bob@example.com",
            "approver_not_configured",
        ),
        (
            "SSOUser",
            "bob@example.com",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Ops_12/eve",
            "approver_not_configured",
        ),
        (
            "SSOGroup",
            "Approvers",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Ops_12/bob",
            "approvers_unverifiable",
        ),
        ("", "", f"arn:aws:iam::{ACCOUNT}:user/bob", "approvers_unverifiable"),
    ],
)
def test_approver_types(kind: str, name: str, approver: str, code: str | None) -> None:
    request = replace(_sample_request(), approver_arns=(approver,))
    config = settings(approver_type=kind, approver_name=name)
    ref = ChangeRequestRef(request.origin_ref, None, "Approved", None, None)
    result = interpret(ref, change_request(request), config, account=ACCOUNT, now=request.approved_at)
    if code is None:
        assert isinstance(result, AccessApproved)
    else:
        assert isinstance(result, list)
        assert [d.code for d in result] == [code]


def test_an_iam_group_approver_without_a_directory_is_unverifiable() -> None:
    request = _sample_request()
    ref = ChangeRequestRef(request.origin_ref, None, "Approved", None, None)
    result = interpret(ref, change_request(request), settings(), account=ACCOUNT, now=request.approved_at)
    assert isinstance(result, list)
    assert [d.code for d in result] == ["approvers_unverifiable"]


def test_a_change_request_for_an_instance_that_is_no_managed_node_is_denied_before_any_grant(
    stack: Stack,
) -> None:
    """RequireSsmManagedInstance on the Change Manager path: asked by the adapter (the grant no longer
    asks), in moto's EC2 and the SSM fake; denied, recorded and notified; nothing emitted."""
    unmanaged = stack.instance(managed=False)
    stack.ssm.add_execution(change_request(replace(_sample_request(), instance_id=unmanaged)))
    stack.notifications()

    outcome = stack.change_manager().on_change_request(load_event("change_request_approved.json"))

    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["instance_not_managed"]
    assert stack.bus_events() == []
    record = stack.engine().ledger.get_grant(f"cm-{SAMPLE_EXECUTION_ID}")
    assert record is not None
    assert (record.status, record.instance_id, record.principal_name) == (
        GrantStatus.DENIED,
        unmanaged,
        "alice",
    )
    assert [n["attributes"]["event_type"] for n in stack.notifications()] == ["AccessDenied"]
    assert "DescribeInstanceInformation" in stack.ssm.calls
    # A later status event of the same change request: a duplicate of the recorded denial.
    again = stack.change_manager().on_change_request(load_event("change_request_approved.json"))
    assert again.result == "duplicate"
