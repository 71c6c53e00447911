"""The SSM fake answers like SSM: for every operation it implements, the errors botocore's model declares
are listed here with the situation in which the fake raises each (or why it never does), and its
approval step enforces the change template's approvers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from sandbox.fake_ssm import FakeSsm
from sessiongate.clock import ManualClock

MODEL = botocore.session.get_session().get_service_model("ssm")
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"
EVE = f"arn:aws:iam::{ACCOUNT}:user/eve"
RUNBOOK = [
    {
        "DocumentName": "Runbook",
        "Parameters": {"InstanceId": ["i-0123456789abcdef0"], "PrincipalType": ["User"]},
    }
]
MISSING_ID = "00000000-0000-0000-0000-000000000000"


def _template(approvals: Any = 1, approver: str = "Approvers", kind: str = "IamGroup") -> dict[str, Any]:
    return {
        "schemaVersion": "0.3",
        "executableRunBooks": [{"name": "Runbook", "version": "$DEFAULT"}],
        "mainSteps": [
            {
                "name": "Approve",
                "action": "aws:approve",
                "inputs": {
                    "MinRequiredApprovals": approvals,
                    "EnhancedApprovals": {
                        "Approvers": [{"approver": approver, "type": kind, "minRequiredApprovals": 0}]
                    },
                },
            }
        ],
    }


def _fake(**template: Any) -> FakeSsm:
    fake = FakeSsm(
        clock=ManualClock(NOW), group_members=lambda g: {BOB, CAROL} if g == "Approvers" else set()
    )
    fake.register_document("Template", "Automation.ChangeTemplate", _template(**template))
    fake.managed.add("i-0123456789abcdef0")
    return fake


def _start(fake: FakeSsm, **extra: Any) -> str:
    params = {"DocumentName": "Template", "Runbooks": copy.deepcopy(RUNBOOK), **extra}
    response = fake.start_change_request_execution(requester_arn=ALICE, now=NOW, **params)
    return str(response["AutomationExecutionId"])


def _signal(fake: FakeSsm, execution_id: str, signer: str, signal: str = "Approve", **kw: Any) -> str:
    return fake.send_automation_signal(
        signer_arn=signer, now=NOW, AutomationExecutionId=execution_id, SignalType=signal, **kw
    )


def _not_approved_template(fake: FakeSsm) -> None:
    fake.documents["Template"]["review_status"] = "PENDING"
    _start(fake)


def _token_reused(fake: FakeSsm) -> None:
    _start(fake, ClientToken="11111111-2222-3333-4444-555555555555")
    _start(fake, ClientToken="11111111-2222-3333-4444-555555555555", ChangeRequestName="other")


def _decided(fake: FakeSsm) -> None:
    execution_id = _start(fake)
    _signal(fake, execution_id, BOB, "Reject")
    _signal(fake, execution_id, CAROL)


Situation = Callable[[FakeSsm], Any]
# operation -> declared error -> the situation that raises it, or (str) why the fake never raises it.
ERRORS: dict[str, dict[str, Situation | str]] = {
    "DescribeInstanceInformation": {
        "InvalidInstanceId": lambda f: f.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": ["i-0aaaaaaaaaaaaaaaa"]}]
        ),
        "InvalidFilterKey": lambda f: f.describe_instance_information(
            Filters=[{"Key": "Colour", "Values": ["blue"]}]
        ),
        "InvalidNextToken": lambda f: f.describe_instance_information(NextToken="forged"),
        "InvalidInstanceInformationFilterValue": "only for the InstanceInformationFilterList form, "
        "which the fake does not implement (it refuses it)",
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
    "DescribeAutomationExecutions": {
        "InvalidFilterKey": lambda f: f.describe_automation_executions(
            Filters=[{"Key": "Colour", "Values": ["blue"]}]
        ),
        "InvalidFilterValue": lambda f: f.describe_automation_executions(
            Filters=[{"Key": "AutomationSubtype", "Values": ["Coffee"]}]
        ),
        "InvalidNextToken": lambda f: f.describe_automation_executions(NextToken="forged"),
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
    "GetAutomationExecution": {
        "AutomationExecutionNotFoundException": lambda f: f.get_automation_execution(
            AutomationExecutionId=MISSING_ID
        ),
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
    "DescribeSessions": {
        "InvalidFilterKey": lambda f: f.describe_sessions(
            State="Active", Filters=[{"key": "Colour", "value": "blue"}]
        ),
        "InvalidNextToken": lambda f: f.describe_sessions(State="Active", NextToken="forged"),
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
    "GetDocument": {
        "InvalidDocument": lambda f: f.get_document(Name="NoSuchDocument"),
        "InvalidDocumentVersion": lambda f: f.get_document(Name="Template", DocumentVersion="7"),
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
    "TerminateSession": {
        "InternalServerError": "a server fault; ending an unknown or ended session succeeds",
    },
    "StartChangeRequestExecution": {
        "AutomationDefinitionNotFoundException": lambda f: f.start_change_request_execution(
            requester_arn=ALICE, now=NOW, DocumentName="NoSuchTemplate", Runbooks=copy.deepcopy(RUNBOOK)
        ),
        "AutomationDefinitionVersionNotFoundException": lambda f: _start(f, DocumentVersion="7"),
        "AutomationDefinitionNotApprovedException": _not_approved_template,
        "InvalidAutomationExecutionParametersException": lambda f: f.start_change_request_execution(
            requester_arn=ALICE,
            now=NOW,
            DocumentName="Template",
            Runbooks=[{**RUNBOOK[0], "DocumentName": "NotAllowedByTheTemplate"}],
        ),
        "IdempotentParameterMismatch": _token_reused,
        "AutomationExecutionLimitExceededException": "the fake has no concurrency quota",
        "NoLongerSupportedException": "never for change requests",
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
    "SendAutomationSignal": {
        "AutomationExecutionNotFoundException": lambda f: _signal(f, MISSING_ID, BOB),
        "InvalidAutomationSignalException": lambda f: _signal(f, _start(f), EVE),
        "AutomationStepNotFoundException": "only for StartStep/StopStep/Resume, which the fake does not "
        "implement (it refuses them)",
        "InternalServerError": "a server fault; the fake never fails on its own",
    },
}
RAISED = [(op, code) for op, errors in ERRORS.items() for code, how in errors.items() if callable(how)]


def test_the_table_lists_exactly_the_operations_the_fake_implements() -> None:
    implemented = {op for op in MODEL.operation_names if xform_name(op) in vars(FakeSsm)}
    assert implemented == set(ERRORS)


@pytest.mark.parametrize("operation", sorted(ERRORS))
def test_the_table_lists_exactly_the_errors_botocore_declares(operation: str) -> None:
    declared = {e.name for e in MODEL.operation_model(operation).error_shapes}
    assert set(ERRORS[operation]) == declared


@pytest.mark.parametrize(("operation", "code"), RAISED, ids=[f"{op}-{code}" for op, code in RAISED])
def test_the_fake_raises_each_error_in_its_situation(operation: str, code: str) -> None:
    fake = _fake()
    situation = ERRORS[operation][code]
    assert callable(situation)
    with pytest.raises(ClientError) as caught:
        situation(fake)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.operation_name == operation
    assert isinstance(caught.value, getattr(fake.exceptions, code))  # what `except ssm.exceptions.X` catches


def test_a_second_decision_after_rejection_is_refused() -> None:
    with pytest.raises(ClientError, match="InvalidAutomationSignalException"):
        _decided(_fake())


def test_pages_join_up_to_every_item_and_responses_fit_the_output_shapes() -> None:
    fake = _fake()
    ids = {_start(fake) for _ in range(7)}
    seen: list[str] = []
    params: dict[str, Any] = {"MaxResults": 3}
    while True:
        page = fake.describe_automation_executions(**params)  # _respond checks the output shape
        seen += [m["AutomationExecutionId"] for m in page["AutomationExecutionMetadataList"]]
        if "NextToken" not in page:
            break
        params["NextToken"] = page["NextToken"]
    assert sorted(seen) == sorted(ids)


def test_filters_select_change_requests_of_one_ops_item() -> None:
    fake = _fake()
    wanted = _start(fake)
    _start(fake)
    ops_item = fake.executions[wanted]["OpsItemId"]
    page = fake.describe_automation_executions(
        Filters=[
            {"Key": "OpsItemId", "Values": [ops_item]},
            {"Key": "AutomationSubtype", "Values": ["ChangeRequest"]},
        ]
    )
    assert [m["AutomationExecutionId"] for m in page["AutomationExecutionMetadataList"]] == [wanted]
    none = fake.describe_automation_executions(
        Filters=[{"Key": "AutomationSubtype", "Values": ["AccessRequest"]}]
    )
    assert none["AutomationExecutionMetadataList"] == []


# -- approvers ------------------------------------------------------------------------------------
def test_group_members_approve_and_anyone_else_is_refused() -> None:
    fake = _fake()
    execution_id = _start(fake)
    with pytest.raises(ClientError, match="not an approver"):
        _signal(fake, execution_id, EVE)
    assert fake.executions[execution_id]["AutomationExecutionStatus"] == "PendingApproval"
    assert _signal(fake, execution_id, BOB) == "Approved"


def test_a_requester_in_the_approver_group_may_approve_their_own_request() -> None:
    """Change Manager does not document stopping it: SessionGate's guardrails must (self_approval)."""
    fake = _fake()
    execution_id = fake.start_change_request_execution(
        requester_arn=BOB, now=NOW, DocumentName="Template", Runbooks=copy.deepcopy(RUNBOOK)
    )["AutomationExecutionId"]
    assert _signal(fake, execution_id, BOB) == "Approved"


def test_the_level_needs_min_required_approvals_from_distinct_approvers() -> None:
    fake = _fake(approvals=2)
    execution_id = _start(fake)
    assert _signal(fake, execution_id, BOB) == "PendingApproval"
    with pytest.raises(ClientError, match="already decided"):
        _signal(fake, execution_id, BOB)
    assert _signal(fake, execution_id, CAROL) == "Approved"
    [step] = fake.executions[execution_id]["StepExecutions"]
    assert step["Outputs"]["ApprovalStatus"] == ["Approved"]
    assert len(step["Outputs"]["ApproverDecisions"]) == 2


def test_one_rejection_rejects() -> None:
    fake = _fake(approvals=2)
    execution_id = _start(fake)
    _signal(fake, execution_id, BOB)
    assert _signal(fake, execution_id, CAROL, "Reject") == "Rejected"


@pytest.mark.parametrize(
    ("kind", "approver", "signer", "allowed"),
    [
        ("IamUser", "bob", BOB, True),
        ("IamUser", "bob", CAROL, False),
        ("IamRole", "Approver", f"arn:aws:sts::{ACCOUNT}:assumed-role/Approver/carol", True),
        ("IamRole", "Approver", f"arn:aws:sts::{ACCOUNT}:assumed-role/Other/carol", False),
        ("IamRole", "Approver", BOB, False),
        (
            "SSOUser",
            "carol@example.com",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_A_1/carol@example.com",
            True,
        ),
        (
            "SSOUser",
            "carol@example.com",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/Plain/carol@example.com",
            False,
        ),
    ],
)
def test_approver_types(kind: str, approver: str, signer: str, allowed: bool) -> None:
    fake = _fake(approver=approver, kind=kind)
    execution_id = _start(fake)
    if allowed:
        assert _signal(fake, execution_id, signer) == "Approved"
    else:
        with pytest.raises(ClientError, match="InvalidAutomationSignalException"):
            _signal(fake, execution_id, signer)


@pytest.mark.parametrize("count", ["2", 2.0, True])
def test_a_change_template_with_non_integer_approval_counts_is_refused(count: Any) -> None:
    """What `!Ref MinRequiredApprovals` (a string) would have put into the document."""
    with pytest.raises(ValueError, match="must be an integer"):
        FakeSsm().register_document("T", "Automation.ChangeTemplate", _template(approvals=count))


def test_an_approval_ssm_shows_late_is_read_as_pending_until_then() -> None:
    fake = _fake()
    execution_id = _start(fake)
    assert _signal(fake, execution_id, BOB, visible_after=timedelta(minutes=2)) == "Approved"
    read = fake.get_automation_execution(AutomationExecutionId=execution_id)["AutomationExecution"]
    assert read["AutomationExecutionStatus"] == "PendingApproval"
    [meta] = fake.describe_automation_executions()["AutomationExecutionMetadataList"]
    assert meta["AutomationExecutionStatus"] == "PendingApproval"
    event = fake.status_event(execution_id, account=ACCOUNT, region="us-east-1", now=NOW)
    assert '"ops-item-status": "Approved"' in event["Detail"]  # the event is not late
    assert fake.clock is not None
    fake.clock.advance(timedelta(minutes=2))
    read = fake.get_automation_execution(AutomationExecutionId=execution_id)["AutomationExecution"]
    assert read["AutomationExecutionStatus"] == "Approved"


# -- Session Manager: preferences and session history (issue 17) -----------------------------------
def test_preferences_are_versioned_and_latest_is_the_last_change() -> None:
    fake = _fake()
    fake.set_preferences({"s3BucketName": "logs", "s3EncryptionEnabled": True})
    fake.set_preferences({})
    latest = fake.get_document(
        Name="SSM-SessionManagerRunShell", DocumentVersion="$LATEST", DocumentFormat="JSON"
    )
    assert (latest["DocumentType"], latest["DocumentVersion"]) == ("Session", "2")
    assert '"inputs": {}' in latest["Content"]
    first = fake.get_document(Name="SSM-SessionManagerRunShell")  # the default version: the first
    assert "logs" in first["Content"]
    fake.set_preferences(None)
    with pytest.raises(ClientError) as caught:
        fake.get_document(Name="SSM-SessionManagerRunShell")
    assert caught.value.response["Error"]["Code"] == "InvalidDocument"


def test_session_history_by_start_time_with_end_dates() -> None:
    fake = _fake()
    clock = fake.clock
    early = fake.open_session(owner_arn=ALICE, user_id="AIDAALICE", target="i-0123456789abcdef0", now=NOW)
    later = fake.open_session(
        owner_arn=ALICE, user_id="AIDAALICE", target="i-0123456789abcdef0", now=NOW + timedelta(minutes=5)
    )
    clock.advance(timedelta(minutes=7))
    fake.terminate_session(SessionId=later)
    fake.close_session(early, now=NOW + timedelta(minutes=6))

    def ids(state: str, **window: str) -> list[str]:
        filters = [{"key": k, "value": v} for k, v in window.items()]
        params: dict[str, Any] = {"State": state, **({"Filters": filters} if filters else {})}
        return [s["SessionId"] for s in fake.describe_sessions(**params)["Sessions"]]

    assert ids("History") == [early, later]
    assert ids("Active") == []
    assert ids("History", InvokedAfter="2026-11-24T09:01:00Z") == [later]
    assert ids("History", InvokedBefore="2026-11-24T09:05:00Z") == [early]
    assert ids("History", InvokedAfter="2026-11-24T09:05:00Z", InvokedBefore="2026-11-24T09:05:01Z") == [
        later
    ]
    ended = {s["SessionId"]: s["EndDate"] for s in fake.describe_sessions(State="History")["Sessions"]}
    assert ended == {early: NOW + timedelta(minutes=6), later: NOW + timedelta(minutes=7)}
