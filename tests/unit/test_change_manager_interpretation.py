"""Interpreting a change request record: who approved (the stack's approvers, enough distinct people),
the runbook parameters, and the record agreeing with the event. Pure: no fakes of AWS needed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.interpretation import interpret
from sessiongate.core.model import AccessApproved, Denial
from tests.unit.fakes.change_manager import (
    ACCOUNT,
    ALICE,
    APPROVED_AT,
    APPROVER_GROUP,
    BOB,
    CAROL,
    EXECUTION_ID,
    INSTANCE,
    MALLORY,
    OPS_ITEM,
    awaiting,
    change_request,
    decision,
    model_problems,
    settings,
)

REF = ChangeRequestRef(OPS_ITEM, EXECUTION_ID, "Approved", "AllowSsmSessionStartTemplate", ALICE)
MEMBERS = {APPROVER_GROUP: frozenset({"bob", "carol"})}


def _interpret(
    record: dict[str, Any], ref: ChangeRequestRef = REF, **config: Any
) -> AccessApproved | list[Denial]:
    return interpret(
        ref,
        record,
        settings(**config),
        account=ACCOUNT,
        now=APPROVED_AT,
        group_members=lambda group: MEMBERS.get(group, frozenset()),
    )


def _codes(result: AccessApproved | list[Denial]) -> list[str]:
    assert isinstance(result, list), result
    return [d.code for d in result]


def test_the_builder_makes_records_botocore_s_model_accepts() -> None:
    for record in (
        change_request(),
        change_request(status="Scheduled", scheduled=APPROVED_AT + timedelta(hours=1)),
        awaiting(change_request()),
    ):
        assert model_problems(record) == []


def test_the_model_check_finds_what_ssm_could_not_return() -> None:
    record = change_request(status="Granted")
    record["ScheduledTime"] = "2026-11-24T09:00:00Z"
    record["Runbooks"][0]["Parameters"]["InstanceId"] = INSTANCE
    record["Approvers"] = [BOB]
    assert model_problems(record) == [
        "AutomationExecution.Approvers: not in the model",
        "AutomationExecution.AutomationExecutionStatus: 'Granted' is not one of the enum",
        "AutomationExecution.Runbooks[0].Parameters.InstanceId: not a list",
        "AutomationExecution.ScheduledTime: not an aware datetime",
    ]


def test_an_approved_record_becomes_the_access_approved() -> None:
    result = _interpret(change_request())
    assert isinstance(result, AccessApproved)
    assert (result.grant_id, result.requester_arn, result.approver_arns) == (
        f"cm-{EXECUTION_ID}",
        ALICE,
        (BOB,),
    )
    assert (result.instance_id, result.principal_name, result.duration_minutes) == (INSTANCE, "alice", 10)


# -- who approved ------------------------------------------------------------------------------------
def test_an_approver_outside_the_stack_s_approver_group_is_not_configured() -> None:
    """An SSM admin can rewrite the change template to name themselves; the stack's setting decides."""
    assert _codes(_interpret(change_request(approvers=[MALLORY]))) == ["approver_not_configured"]


def test_one_stranger_among_the_approvers_is_enough_to_deny() -> None:
    assert _codes(_interpret(change_request(approvers=[BOB, MALLORY]))) == ["approver_not_configured"]


def test_too_few_approvers_are_insufficient() -> None:
    result = _interpret(change_request(approvers=[BOB]), min_required_approvals=2)
    assert _codes(result) == ["approvals_insufficient"]
    assert isinstance(result, list)
    assert result[0].message == "1 distinct approver(s), 2 required"


def test_two_configured_approvers_are_enough() -> None:
    result = _interpret(change_request(approvers=[BOB, CAROL]), min_required_approvals=2)
    assert isinstance(result, AccessApproved)
    assert result.approver_arns == (BOB, CAROL)


@pytest.mark.parametrize(
    "arns",
    [
        # Whoever assumes a role picks the session name: two sessions of it may be one person.
        [
            f"arn:aws:sts::{ACCOUNT}:assumed-role/Approver/carol",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/Approver/x",
        ],
        # The role itself and a session of it.
        [f"arn:aws:iam::{ACCOUNT}:role/Approver", f"arn:aws:sts::{ACCOUNT}:assumed-role/Approver/carol"],
    ],
)
def test_approvals_that_may_be_the_same_person_count_once(arns: list[str]) -> None:
    result = _interpret(
        change_request(approvers=arns),
        approver_type="IamRole",
        approver_name="Approver",
        min_required_approvals=2,
    )
    assert _codes(result) == ["approvals_insufficient"]


def test_the_same_approver_twice_counts_once() -> None:
    record = change_request(decisions=[decision(BOB), decision(BOB)])
    assert _codes(_interpret(record, min_required_approvals=2)) == ["approvals_insufficient"]


@pytest.mark.parametrize(
    ("kind", "name"),
    [("", ""), ("IamUser", ""), ("", "bob"), ("SSOGroup", "Approvers")],
)
def test_an_approver_setting_that_cannot_be_checked_is_unverifiable(kind: str, name: str) -> None:
    result = _interpret(change_request(), approver_type=kind, approver_name=name)
    assert _codes(result) == ["approvers_unverifiable"]


def test_an_iam_group_approver_without_a_group_lookup_is_unverifiable() -> None:
    result = interpret(REF, change_request(), settings(), account=ACCOUNT, now=APPROVED_AT)
    assert _codes(result) == ["approvers_unverifiable"]


@pytest.mark.parametrize(
    ("decisions", "codes"),
    [
        ([], ["approvers_unknown"]),
        ([decision(BOB, "Reject")], ["approvers_unknown"]),
        (["not json"], ["approvers_unknown"]),
        ([f"[{decision(BOB)}, {decision(CAROL)}]"], []),  # a list of decisions in one entry
    ],
)
def test_only_approve_decisions_name_approvers(decisions: list[str], codes: list[str]) -> None:
    result = _interpret(change_request(decisions=decisions))
    assert (_codes(result) if codes else result.approver_arns) == (codes or (BOB, CAROL))  # type: ignore[union-attr]


def test_a_rejected_approval_step_is_not_approved() -> None:
    assert "change_request_not_approved" in _codes(_interpret(change_request(approval="Rejected")))


def test_a_record_without_an_approval_step_is_not_approved() -> None:
    record = change_request()
    record["StepExecutions"] = []
    assert _codes(_interpret(record)) == ["change_request_not_approved", "approvers_unknown"]


# -- the record agrees with the event ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"AutomationSubtype": "AccessRequest"}, "not_a_change_request"),
        ({"DocumentName": "SomeOtherTemplate"}, "unknown_template"),
        ({"OpsItemId": "oi-0123456789ff"}, "ops_item_mismatch"),
        ({"AutomationExecutionStatus": "Rejected"}, "change_request_not_approved"),
        ({"ExecutedBy": MALLORY}, "requester_mismatch"),
        # alice of another account may be the same person, but it is not the same requester record.
        ({"ExecutedBy": "arn:aws:iam::210987654321:user/alice"}, "requester_mismatch"),
        ({"ExecutedBy": "alice"}, "requester_unknown"),
        ({"AutomationExecutionId": "11111111-2222-3333-4444-555555555555"}, "change_request_mismatch"),
        ({"AutomationExecutionId": "D0585556-80F6-4522-8DAD-DADA6D45B67D"}, "change_request_unknown"),
        ({"ChangeRequestName": "restart\u2028APPROVED BY SECURITY"}, "invalid_reason"),
    ],
)
def test_a_record_that_is_not_the_approved_change_request_of_the_event_is_denied(
    change: dict[str, Any], code: str
) -> None:
    assert _codes(_interpret({**change_request(), **change})) == [code]


def test_a_requester_role_session_is_the_role_the_event_names() -> None:
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops/alice"
    ref = replace(REF, created_by=f"arn:aws:iam::{ACCOUNT}:role/Ops")
    result = _interpret(change_request(requester=session), ref)
    assert isinstance(result, AccessApproved)
    assert result.requester_arn == session


def test_the_start_is_the_later_of_the_scheduled_time_and_the_approval() -> None:
    later = APPROVED_AT + timedelta(hours=1)
    result = _interpret(change_request(scheduled=later))
    assert isinstance(result, AccessApproved)
    assert (result.not_before, result.approved_at) == (later, APPROVED_AT)


# -- runbook parameters ------------------------------------------------------------------------------
PARAMETERS = {
    "InstanceId": [INSTANCE],
    "PrincipalType": ["User"],
    "PrincipalName": ["alice"],
    "ValidityMinutes": ["10"],
}


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("InstanceId", ["i-nothex"]),
        ("InstanceId", [INSTANCE, "i-0a1b2c3d4e5f60719"]),
        ("InstanceId", []),
        ("PrincipalType", ["Group"]),
        ("PrincipalName", ["alice bob"]),
        ("PrincipalName", ["a" * 65]),
        ("ValidityMinutes", ["-5"]),
        ("ValidityMinutes", ["ten"]),
        ("ValidityMinutes", ["0"]),
        ("ValidityMinutes", ["100001"]),
        ("ValidityMinutes", ["\u00b2"]),  # a digit to str.isdigit, not a number to int()
        ("AccountId", ["12345"]),
        ("AccountId", ["123456789012", "210987654321"]),
    ],
)
def test_invalid_runbook_parameters_are_denied(name: str, values: list[str]) -> None:
    assert _codes(_interpret(change_request(parameters={**PARAMETERS, name: values}))) == [
        "invalid_parameters"
    ]


@pytest.mark.parametrize("name", ["InstanceId", "PrincipalType", "PrincipalName"])
def test_a_missing_required_parameter_is_denied(name: str) -> None:
    parameters = {k: v for k, v in PARAMETERS.items() if k != name}
    assert _codes(_interpret(change_request(parameters=parameters))) == ["invalid_parameters"]


def test_one_runbook_exactly() -> None:
    record = change_request()
    record["Runbooks"] = record["Runbooks"] * 2
    assert _codes(_interpret(record)) == ["invalid_parameters"]


def test_values_are_stripped_and_a_missing_validity_is_the_stack_s_default() -> None:
    parameters = {"InstanceId": [f" {INSTANCE} "], "PrincipalType": ["role"], "PrincipalName": ["Ops"]}
    result = _interpret(change_request(parameters=parameters), default_validity_minutes=25)
    assert isinstance(result, AccessApproved)
    assert (result.instance_id, result.principal_type.value, result.principal_name) == (
        INSTANCE,
        "role",
        "Ops",
    )
    assert result.duration_minutes == 25


@pytest.mark.parametrize(
    ("values", "account"),
    [(None, ACCOUNT), ([""], ACCOUNT), (["this"], ACCOUNT), (["210987654321"], "210987654321")],
)
def test_the_target_account_is_this_one_unless_a_member_account_is_named(
    values: list[str] | None, account: str
) -> None:
    parameters = dict(PARAMETERS) if values is None else {**PARAMETERS, "AccountId": values}
    result = _interpret(change_request(parameters=parameters))
    assert isinstance(result, AccessApproved)
    assert result.account == account
