"""template.yaml: what it promises about names, triggers and least privilege."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from sessiongate import slots
from tests.conftest import load_event
from tests.support.template import MEMBER_TEMPLATE, function_statements, resource, template, unwrap

ENGINE_FUNCTIONS = ["GrantAccessFunction", "RevokeAccessFunction", "AdaptChangeRequestFunction"]


def _pattern(function: str, event: str) -> EventPattern:
    return EventPattern.load(
        json.dumps(resource(function)["Properties"]["Events"][event]["Properties"]["Pattern"])
    )


def test_change_manager_rule_matches_the_documented_event_shape_for_our_template_only() -> None:
    pattern = _pattern("AdaptChangeRequestFunction", "ChangeRequestApproved")
    event = load_event("change_request_approved.json")
    assert pattern.matches_event(event)
    for key, value in [("ops-item-status", "InProgress"), ("change-template-document-name", "Other")]:
        other = json.loads(json.dumps(event))
        other["detail"][key] = value
        assert not pattern.matches_event(other)


def test_grant_rule_listens_for_access_approved_on_the_sessiongate_bus() -> None:
    props = resource("GrantAccessFunction")["Properties"]["Events"]["AccessApproved"]["Properties"]
    assert props["EventBusName"] == {"Ref": "EventBus"}
    assert props["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["EventDeliveryDeadLetterQueue", "Arn"]}
    assert _pattern("GrantAccessFunction", "AccessApproved").matches_event(load_event("access_approved.json"))


def test_original_resource_names_and_parameters_are_kept() -> None:
    t = template()
    assert resource("ChangeTemplate")["Properties"]["Name"] == "AllowSsmSessionStartTemplate"
    assert resource("ChangeTemplate")["Properties"]["DocumentType"] == "Automation.ChangeTemplate"
    assert (
        resource("AllowStartSsmSessionBasedOnIamTags")["Properties"]["ManagedPolicyName"]
        == "AllowStartSsmSessionBasedOnIamTags"
    )
    assert t["Parameters"]["NotificationTopicName"]["Default"] == "change-manager-ssm-approval"
    assert t["Parameters"]["ApprovalValidityMinutes"]["Default"] == 10
    assert "MaxValidityMinutes" in t["Parameters"]


def test_change_template_has_one_runbook_and_an_approval_step_notifying_the_topic() -> None:
    content = resource("ChangeTemplate")["Properties"]["Content"]
    assert content["executableRunBooks"] == [{"name": "AllowSsmSessionStartRunbook", "version": "$DEFAULT"}]
    assert content["autoApprovable"] is False
    [step] = content["mainSteps"]
    assert step["action"] == "aws:approve"
    approvals = step["inputs"]["EnhancedApprovals"]
    assert approvals["NotificationArn"] == {"Ref": "NotificationTopic"}
    assert approvals["Approvers"][0]["approver"] == {"Ref": "ApproverName"}


def test_runbook_neither_sleeps_nor_tags() -> None:
    content = resource("SessionStartRunbook")["Properties"]["Content"]
    actions = [step["action"] for step in content["mainSteps"]]
    assert "aws:sleep" not in actions
    apis = [step["inputs"].get("Api", "") for step in content["mainSteps"] if "inputs" in step]
    assert not any("Tag" in api for api in apis)  # the old TagUser/UntagUser calls
    assert set(content["parameters"]) == {
        "AccountId",
        "InstanceId",
        "PrincipalType",
        "PrincipalName",
        "ValidityMinutes",
        "AutomationAssumeRole",
    }


def test_operator_policy_has_an_unbound_and_a_bound_statement_per_slot() -> None:
    doc = resource("AllowStartSsmSessionBasedOnIamTags")["Properties"]["PolicyDocument"]
    statements = {s["Sid"]: s for s in map(unwrap, doc["Statement"])}
    for slot in range(1, 6):
        unbound, bound = statements[f"StartSessionSlot{slot}"], statements[f"StartSessionBoundSlot{slot}"]
        for s in (unbound, bound):
            assert s["Action"] == "ssm:StartSession"
            assert "${!aws:PrincipalTag/" + slots.instance_key(slot) + "}" in s["Resource"]["Fn::Sub"]
        # Unbound only while the slot has no session binding; bound only for that one session.
        assert unbound["Condition"] == {"Null": {f"aws:PrincipalTag/{slots.user_key(slot)}": "true"}}
        assert bound["Condition"] == {
            "StringEquals": {"aws:userid": "${aws:PrincipalTag/" + slots.user_key(slot) + "}"}
        }
    assert statements["SessionDocument"]["Resource"]["Fn::Sub"].endswith(
        "document/SSM-SessionManagerRunShell"
    )
    own = statements["OwnSessionsOnly"]
    assert own["Action"] == ["ssm:TerminateSession", "ssm:ResumeSession"]
    assert own["Resource"]["Fn::Sub"].endswith("session/${!aws:userid}-*")
    # Nothing else grants StartSession.
    starters = [sid for sid, s in statements.items() if "ssm:StartSession" in json.dumps(s["Action"])]
    expected = [f"StartSession{kind}Slot{k}" for k in range(1, 6) for kind in ("", "Bound")] + [
        "SessionDocument"
    ]
    assert sorted(starters) == sorted(expected)


@pytest.mark.parametrize("function", ENGINE_FUNCTIONS)
def test_engine_roles_live_under_the_sessiongate_path(function: str) -> None:
    assert template()["Globals"]["Function"]["RolePath"] == "/sessiongate/"
    assert "Role" not in resource(function)["Properties"]


@pytest.mark.parametrize("function", ["GrantAccessFunction", "RevokeAccessFunction"])
def test_engine_may_touch_only_slot_tag_keys_and_never_its_own_roles(function: str) -> None:
    statements = function_statements(function)
    tagging = [s for s in statements if s["Effect"] == "Allow" and any("Tag" in a for a in _actions(s))]
    assert tagging, "no tagging statement"
    for s in tagging:
        condition = s["Condition"]
        assert set(condition["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(slots.all_keys(5))
        # ForAllValues is true for an empty key set: the Null check closes that hole.
        assert condition["Null"] == {"aws:TagKeys": "false"}
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies
    assert all("role/sessiongate/*" in json.dumps(s["Resource"]) for s in denies)
    allowed = {a for s in statements if s["Effect"] == "Allow" for a in _actions(s)}
    assert not any(a.endswith("*") for a in allowed)


def test_pass_role_only_to_scheduler() -> None:
    for function in ("GrantAccessFunction", "AdaptChangeRequestFunction"):
        [passrole] = [s for s in function_statements(function) if "iam:PassRole" in _actions(s)]
        assert passrole["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
        assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}


def test_publish_only_to_the_topic_and_schedule_only_our_names() -> None:
    for function in ENGINE_FUNCTIONS:
        for s in function_statements(function):
            if "sns:Publish" in _actions(s):
                assert s["Resource"] == {"Ref": "NotificationTopic"}
            if "scheduler:CreateSchedule" in _actions(s) or "scheduler:DeleteSchedule" in _actions(s):
                assert "${ScheduleGroup}/sg-" in s["Resource"]["Fn::Sub"]


def test_scheduler_role_invokes_only_the_engine_targets() -> None:
    [policy] = resource("SchedulerRole")["Properties"]["Policies"]
    [invoke] = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "lambda:InvokeFunction"]
    assert [r["Fn::Sub"].rsplit(":function:", 1)[-1] for r in invoke["Resource"]] == [
        "${AWS::StackName}-revoke-access",
        "${AWS::StackName}-adapt-change-request",
    ]


def test_tag_key_guard_denies_everyone_but_the_engine() -> None:
    [statement] = resource("SessionGateTagKeyGuard")["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"]["ForAnyValue:StringLike"]["aws:TagKeys"] == ["SecurityAllowSession*"]
    assert "role/sessiongate/*" in statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::Sub"]


def test_every_function_has_a_log_group_with_retention_and_a_failure_destination() -> None:
    resources = template()["Resources"]
    groups = {
        json.dumps(r["Properties"]["LogGroupName"]): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::LogGroup"
    }
    for function in ENGINE_FUNCTIONS:
        assert any(function in key for key in groups), function
        invoke = resource(function)["Properties"]["EventInvokeConfig"]
        assert invoke["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert all(g["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_every_dead_letter_queue_has_an_alarm_to_the_alarm_topic() -> None:
    resources = template()["Resources"]
    queues = {k for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    alarmed = set()
    for r in resources.values():
        if r["Type"] != "AWS::CloudWatch::Alarm":
            continue
        assert r["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        for dimension in r["Properties"].get("Dimensions", []):
            value = dimension["Value"]
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                alarmed.add(value["Fn::GetAtt"][0])
    assert queues <= alarmed, queues - alarmed


def test_alarm_topic_key_lets_cloudwatch_publish() -> None:
    statements = resource("AlarmTopicKey")["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch
    assert cloudwatch[0]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_member_stack_gives_operators_the_same_policy() -> None:
    member = template(MEMBER_TEMPLATE)["Resources"]["AllowStartSsmSessionBasedOnIamTags"]["Properties"]
    engine = resource("AllowStartSsmSessionBasedOnIamTags")["Properties"]
    assert member["ManagedPolicyName"] == engine["ManagedPolicyName"]
    assert member["PolicyDocument"] == engine["PolicyDocument"]


def test_member_role_trusts_only_engine_roles_with_the_external_id() -> None:
    role = template(MEMBER_TEMPLATE)["Resources"]["SessionGateMemberRole"]["Properties"]
    assert (role["RoleName"], role["Path"]) == ("SessionGateMember", "/sessiongate/")
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"]["StringEquals"] == {"sts:ExternalId": {"Ref": "ExternalId"}}
    assert trust["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"].endswith(":role/sessiongate/*")
    [policy] = role["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    tagging = statements["SetAndClearSlotTagsOnly"]["Condition"]
    assert set(tagging["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(slots.all_keys(5))
    assert tagging["Null"] == {"aws:TagKeys": "false"}
    assert statements["NeverTagSessionGateItself"]["Effect"] == "Deny"


def test_engine_assumes_only_member_roles_of_listed_accounts() -> None:
    for function in ("GrantAccessFunction", "RevokeAccessFunction", "ReconcileGrantsFunction"):
        [assume] = [s for s in function_statements(function) if s.get("Sid") == "ActInMemberAccounts"]
        assert assume["Resource"]["Fn::Sub"].endswith(":role/sessiongate/SessionGateMember")
        assert assume["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Ref": "MemberAccounts"}}}
