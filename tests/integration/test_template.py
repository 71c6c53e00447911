"""template.yaml: what it promises about names, triggers and least privilege."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from sessiongate.core import slots
from tests.conftest import load_event
from tests.support.template import (
    MEMBER_TEMPLATE,
    TEMPLATE,
    function_statements,
    resource,
    template,
    unwrap,
)

ENGINE_FUNCTIONS = ["GrantAccessFunction", "RevokeAccessFunction", "AdaptChangeRequestFunction"]


def _pattern(function: str, event: str) -> EventPattern:
    return EventPattern.load(
        json.dumps(resource(function)["Properties"]["Events"][event]["Properties"]["Pattern"])
    )


def test_change_manager_rule_matches_the_documented_event_shape_for_our_template_only() -> None:
    pattern = _pattern("AdaptChangeRequestFunction", "ChangeRequestApproved")
    event = load_event("change_request_approved.json")
    assert pattern.matches_event(event)
    for key, value in [("ops-item-status", "PendingApproval"), ("change-template-document-name", "Other")]:
        other = json.loads(json.dumps(event))
        other["detail"][key] = value
        assert not pattern.matches_event(other)


@pytest.mark.parametrize(
    ("status", "routed"),
    [
        ("Approved", True),
        ("Scheduled", True),
        ("RunbookInProgress", True),
        ("InProgress", True),
        ("Open", False),
        ("PendingApproval", False),
        ("Rejected", False),
        ("CompletedWithSuccess", False),
    ],
)
def test_change_manager_rule_routes_the_statuses_after_approval(status: str, routed: bool) -> None:
    """A late or lost Approved event is made up for by the statuses that follow it."""
    event = load_event("change_request_approved.json")
    event["detail"]["ops-item-status"] = status
    assert _pattern("AdaptChangeRequestFunction", "ChangeRequestApproved").matches_event(event) is routed


def test_change_template_approval_counts_are_integers_in_the_document() -> None:
    """MinRequiredApprovals is a Number parameter; Ref would put the string "2" into the document."""
    from sandbox import cfn

    for count in ("1", "2", "5"):
        stack = cfn.load("sg", "123456789012", "us-east-1", {"MinRequiredApprovals": count})
        inputs = stack.resources["ChangeTemplate"].properties["Content"]["mainSteps"][0]["inputs"]
        assert inputs["MinRequiredApprovals"] == int(count)
        assert type(inputs["MinRequiredApprovals"]) is int
        [line] = inputs["EnhancedApprovals"]["Approvers"]
        assert line["minRequiredApprovals"] == 0  # per-level approvals: each line may contribute


@pytest.mark.parametrize(
    ("approver_type", "approvals", "accepted"),
    [
        ("IamUser", "1", True),
        ("IamUser", "2", False),
        ("SSOUser", "3", False),
        ("IamGroup", "5", True),
        ("IamRole", "2", True),
    ],
)
def test_approvals_one_approver_can_never_give_are_refused_at_deploy_time(
    approver_type: str, approvals: str, accepted: bool
) -> None:
    """The template's Rules refuse the parameters before anything is created (as CloudFormation does)."""
    from sandbox import cfn

    overrides = {"ApproverType": approver_type, "MinRequiredApprovals": approvals}
    if accepted:
        cfn.load("sg", "123456789012", "us-east-1", overrides)
    else:
        with pytest.raises(ValueError, match="ApprovalsCanBeMet"):
            cfn.load("sg", "123456789012", "us-east-1", overrides)
    # Without the Change Manager front door there is nothing to refuse.
    cfn.load("sg", "123456789012", "us-east-1", {**overrides, "EnableChangeManager": "false"})


def test_approvers_the_engine_cannot_verify_are_refused_at_deploy_time() -> None:
    """The engine checks each approval against ApproverName/ApproverType; it cannot see IAM Identity
    Center group membership, so an SSOGroup would deny every request: refused before deploying."""
    from sandbox import cfn

    with pytest.raises(ValueError, match="ApproversCanBeVerified"):
        cfn.load("sg", "123456789012", "us-east-1", {"ApproverType": "SSOGroup"})
    cfn.load("sg", "123456789012", "us-east-1", {"ApproverType": "SSOGroup", "EnableChangeManager": "false"})


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
    own, by_tag = statements["OwnSessionsOnly"], statements["OwnSessionsByTag"]
    assert own["Action"] == by_tag["Action"] == ["ssm:TerminateSession", "ssm:ResumeSession"]
    # IAM users' session ids start with the user name; role sessions' with the role session name, which
    # no policy variable holds: those are matched by the tag Session Manager puts on every session.
    assert own["Resource"]["Fn::Sub"].endswith(":session/${!aws:username}-*")
    assert by_tag["Resource"]["Fn::Sub"].endswith(":session/*")
    assert by_tag["Condition"] == {
        "StringEquals": {"ssm:resourceTag/aws:ssmmessages:session-id": "${aws:userid}"}
    }
    assert "aws:userid}-*" not in json.dumps(doc)  # never matches a session id
    # AWS's current end-user policy grants the data channel; only in this account and Region.
    channel = statements["OpenSessionDataChannel"]
    assert channel["Action"] == "ssmmessages:OpenDataChannel"
    assert channel["Resource"]["Fn::Sub"] == (
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:session/*"
    )
    # Instance binding: StartSession on any instance whose slot k tag is the caller's own aws:userid.
    for slot in range(1, 6):
        on_instance = statements[f"StartSessionOnInstanceSlot{slot}"]
        assert on_instance["Resource"]["Fn::Sub"].endswith(":instance/*")
        assert on_instance["Condition"] == {
            "StringEquals": {f"ssm:resourceTag/{slots.for_key(slot)}": "${aws:userid}"}
        }
    # Nothing else grants StartSession.
    starters = [sid for sid, s in statements.items() if "ssm:StartSession" in json.dumps(s["Action"])]
    expected = [f"StartSession{kind}Slot{k}" for k in range(1, 6) for kind in ("", "Bound", "OnInstance")] + [
        "SessionDocument",
        "SessionDocumentsOfTheStack",
    ]
    assert sorted(starters) == sorted(expected)


def test_other_session_documents_are_opt_in_aws_owned_documents_behind_the_access_check() -> None:
    """Issue 18: each extra document is behind its own stack parameter (default false), names exactly
    one AWS-owned document (no account in the ARN, no wildcard), and keeps SessionDocumentAccessCheck
    (without it, allowing a document would also allow the default shell document)."""
    doc = resource("AllowStartSsmSessionBasedOnIamTags")["Properties"]["PolicyDocument"]
    [wrapped] = [s for s in doc["Statement"] if "SessionDocumentsOfTheStack" in json.dumps(s)]
    assert wrapped["Fn::If"][0] == "AnySessionDocument"
    assert wrapped["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    statement = wrapped["Fn::If"][1]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "ssm:StartSession")
    assert statement["Condition"] == {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}
    params, conditions = template()["Parameters"], template()["Conditions"]
    documents = {}
    for entry in statement["Resource"]:
        condition, arn, otherwise = entry["Fn::If"]
        assert otherwise == {"Ref": "AWS::NoValue"}
        [parameter] = conditions[condition]["Fn::Equals"][0].values()
        assert params[parameter]["Default"] == "false"
        assert conditions[condition]["Fn::Equals"][1] == "true"
        assert arn["Fn::Sub"].startswith("arn:${AWS::Partition}:ssm:${AWS::Region}::document/AWS-")
        assert "*" not in arn["Fn::Sub"]
        documents[parameter] = arn["Fn::Sub"].rpartition("/")[2]
    assert documents == {
        "AllowSshDocument": "AWS-StartSSHSession",
        "AllowPortForwardingDocument": "AWS-StartPortForwardingSession",
        "AllowRemoteHostPortForwardingDocument": "AWS-StartPortForwardingSessionToRemoteHost",
        "AllowInteractiveCommandDocument": "AWS-StartInteractiveCommand",
    }
    assert sorted(conditions["AnySessionDocument"]["Fn::Or"], key=json.dumps) == sorted(
        (
            {"Condition": c}
            for c in (
                "SshDocument",
                "PortForwardingDocument",
                "RemoteHostPortForwardingDocument",
                "InteractiveCommandDocument",
            )
        ),
        key=json.dumps,
    )


@pytest.mark.parametrize("function", ENGINE_FUNCTIONS)
def test_engine_roles_live_under_the_sessiongate_path(function: str) -> None:
    assert template()["Globals"]["Function"]["RolePath"] == "/sessiongate/"
    assert "Role" not in resource(function)["Properties"]


@pytest.mark.parametrize(
    "function",
    ["GrantAccessFunction", "RevokeAccessFunction", "ReconcileGrantsFunction", "RequestApiFunction"],
)
def test_engine_may_touch_only_slot_tag_keys_and_never_its_own_roles(function: str) -> None:
    """Every role that tags or untags (ec2:DeleteTags included) names the slot keys only. DeleteTags can
    be scoped by the keys (aws:TagKeys) but not by the value it deletes: it takes no aws:RequestTag, only
    the resource's current tags (aws:ResourceTag, ec2:ResourceTag), which cover all of an instance's
    tags, not the one deleted (Service Authorization Reference, "Actions, resources, and condition keys
    for Amazon EC2"); the value goes in the request (``Inventory.untag_instance``)."""
    statements = function_statements(function)
    # "tag" in any case: the revoke role's only tagging actions are iam:Untag* (List*Tags are gone).
    tagging = [
        s for s in statements if s["Effect"] == "Allow" and any("tag" in a.lower() for a in _actions(s))
    ]
    assert tagging, "no tagging statement"
    for s in tagging:
        condition = s["Condition"]
        # IAM principals: the principal slot keys; EC2 instances (instance binding): the instance keys.
        keys = slots.all_for_keys(5) if _actions(s)[0].startswith("ec2:") else slots.all_keys(5)
        assert set(condition["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(keys)
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


# The engine roles that set or clear slot tags: the guard exempts exactly these (finding 7: no path).
SLOT_TAGGING_ROLES = [
    {"Fn::GetAtt": ["GrantAccessFunctionRole", "Arn"]},
    {"Fn::GetAtt": ["RevokeAccessFunctionRole", "Arn"]},
    {"Fn::GetAtt": ["ReconcileGrantsFunctionRole", "Arn"]},
    {"Fn::GetAtt": ["RequestApiFunctionRole", "Arn"]},
]


def test_tag_key_guard_denies_everyone_but_the_engine() -> None:
    statements = resource("SessionGateTagKeyGuard")["Properties"]["PolicyDocument"]["Statement"]
    [statement] = [s for s in statements if "ForAnyValue:StringLike" in s.get("Condition", {})]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"]["ForAnyValue:StringLike"]["aws:TagKeys"] == ["SecurityAllowSession*"]
    assert statement["Condition"] == {
        "ForAnyValue:StringLike": {"aws:TagKeys": ["SecurityAllowSession*"]},
        "ArnNotEquals": {"aws:PrincipalArn": SLOT_TAGGING_ROLES},
    }


GUARDED_ACTIONS = {
    "iam:TagUser",
    "iam:TagRole",
    "iam:UntagUser",
    "iam:UntagRole",
    "iam:CreateUser",
    "iam:CreateRole",
    "sts:TagSession",
    "sts:GetFederationToken",
    # Instance binding: the instance slot keys, also when given at creation (RunInstances).
    "ec2:CreateTags",
    "ec2:DeleteTags",
    # ... and on the launch calls themselves, which take aws:TagKeys on the instances they launch.
    "ec2:RunInstances",
    "ec2:CreateFleet",
    # Auto Scaling group tags reach instances at launch through its service-linked role (REVIEW-A F3);
    # SSM resource tags (hybrid managed instances): defense in depth (REVIEW-A L4).
    "autoscaling:CreateOrUpdateTags",
    # ... and so does a group created with such a tag (Auto Scaling checks aws:TagKeys there too).
    "autoscaling:CreateAutoScalingGroup",
    "ssm:AddTagsToResource",
}


def _guard_statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The guard's statements, those behind ``Fn::If`` (RequiresSessionLogging) taken as if it held."""
    return [unwrap(s) for s in doc["Statement"]]


@pytest.mark.parametrize("source", ["engine", "member", "scp"])
def test_tag_key_guard_covers_every_slot_key_in_any_case_and_tags_at_creation(source: str) -> None:
    """IAM tag keys are case-insensitive: the guard compares every possible slot key ignoring case."""
    if source == "engine":
        doc = resource("SessionGateTagKeyGuard")["Properties"]["PolicyDocument"]
    elif source == "member":
        doc = template(MEMBER_TEMPLATE)["Resources"]["SessionGateTagKeyGuard"]["Properties"]["PolicyDocument"]
    else:
        doc = json.loads((TEMPLATE.parent / "docs" / "scp-deny-slot-tags.json").read_text())
    statements = _guard_statements(doc)
    assert all(s["Effect"] == "Deny" for s in statements)
    slot_statements = [s for s in statements if "aws:TagKeys" in json.dumps(s.get("Condition", {}))]
    if source == "scp":  # the sample also guards instance scope tag keys (finding 8), tested apart
        slot_statements = [s for s in slot_statements if not s["Sid"].startswith("EDITInstanceScope")]
    [any_case] = [s for s in slot_statements if "ForAnyValue:StringEqualsIgnoreCase" in s["Condition"]]
    assert set(any_case["Condition"]["ForAnyValue:StringEqualsIgnoreCase"]["aws:TagKeys"]) == set(
        slots.all_keys(slots.MAX_SLOTS) + slots.all_for_keys(slots.MAX_SLOTS)
    )
    assert len(slot_statements) == 2
    for s in slot_statements:
        assert set(_actions(s)) == GUARDED_ACTIONS
        # Exact role ARNs only (finding 7): no exemption of a path anyone who creates roles can claim.
        exempt = json.dumps(s["Condition"].get("ArnNotEquals") or s["Condition"]["ArnNotLike"])
        assert "role/sessiongate/*" not in exempt
        assert "GetAtt" in exempt or source == "scp"


def _without_exemptions(doc: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The guard's statements as (Sid, Action, Condition minus the exempt principals)."""
    out = []
    for s in _guard_statements(doc):
        condition = {k: v for k, v in s.get("Condition", {}).items() if k != "ArnNotEquals"}
        out.append((s["Sid"], s["Action"], condition))
    return out


def test_member_guard_is_the_engine_guard() -> None:
    """Same statements; each exempts its own account's SessionGate roles (exact ARNs)."""
    member = template(MEMBER_TEMPLATE)["Resources"]["SessionGateTagKeyGuard"]["Properties"]["PolicyDocument"]
    engine = resource("SessionGateTagKeyGuard")["Properties"]["PolicyDocument"]
    assert _without_exemptions(member) == _without_exemptions(engine)
    # A member account runs no SessionGate function and serves no request API: nothing to keep from
    # being invoked or rewired there, no history export (its bucket and key are the engine's) and no
    # Slack secrets (issue 19). Those statements are the engine's second guard policy (one managed
    # policy cannot hold both: IAM's 6,144 characters), which the member stack does not have.
    engine_only = {
        "DenySessionPreferenceChanges",
        "DenyChangingSessionGateEventSourceMappings",
        "DenyInvokingSessionGateFunctions",
        "DenyChangingTheRequestApi",
        "DenyRewritingHistory",
        "DenyChangingTheHistoryKey",
        "DenyTouchingTheChatSecrets",
        "DenyForgingLifecycleEvents",  # the notification topic is the engine's
    }
    control = resource("SessionGateControlPlaneGuard")["Properties"]["PolicyDocument"]
    assert {s["Sid"] for s in _guard_statements(control)} <= engine_only
    assert {s["Sid"] for s in _guard_statements(engine)}.isdisjoint(engine_only)
    assert "SessionGateControlPlaneGuard" not in template(MEMBER_TEMPLATE)["Resources"]
    for s in member["Statement"]:
        if "ArnNotEquals" in s.get("Condition", {}):
            assert s["Condition"]["ArnNotEquals"] == {
                "aws:PrincipalArn": {"Fn::GetAtt": ["SessionGateMemberRole", "Arn"]}
            }


def _tag_statements(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow" and any(a in ("iam:TagUser", "iam:TagRole") for a in _actions(s))
    ]


def _member_statements() -> list[dict[str, Any]]:
    [policy] = template(MEMBER_TEMPLATE)["Resources"]["SessionGateMemberRole"]["Properties"]["Policies"]
    return [unwrap(s) for s in policy["PolicyDocument"]["Statement"]]


EXPECTED_REQUEST_TAG_VALUES = {
    **{f"aws:RequestTag/{slots.instance_key(k)}": "i-*" for k in range(1, 6)},
    **{f"aws:RequestTag/{slots.user_key(k)}": "AROA*:*" for k in range(1, 6)},
}


@pytest.mark.parametrize("where", ["GrantAccessFunction", "member"])
def test_tagging_constrains_tag_values(where: str) -> None:
    """Slot values are instance ids and role-session user ids (<RoleId>:<session>), nothing else."""
    statements = _member_statements() if where == "member" else function_statements(where)
    tagging = _tag_statements(statements)
    assert tagging
    for s in tagging:
        assert s["Condition"]["StringLikeIfExists"] == EXPECTED_REQUEST_TAG_VALUES


@pytest.mark.parametrize(
    "where",
    [
        "GrantAccessFunction",
        "RevokeAccessFunction",
        "ReconcileGrantsFunction",
        "RequestApiFunction",
        "member",
    ],
)
def test_no_list_tags_under_a_tag_keys_condition(where: str) -> None:
    """List*Tags requests carry no aws:TagKeys: under the Null check they could never be allowed.

    The engine reads tags through GetUser/GetRole, so they are not granted at all.
    """
    statements = _member_statements() if where == "member" else function_statements(where)
    for s in statements:
        if s["Effect"] == "Allow":
            assert not {"iam:ListUserTags", "iam:ListRoleTags"} & set(_actions(s)), s.get("Sid")


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


def _key_statements(logical_id: str, *, deployers: bool) -> list[dict[str, Any]]:
    """A key policy's statements with the HasDeployers branches taken."""
    out = []
    for statement in resource(logical_id)["Properties"]["KeyPolicy"]["Statement"]:
        if "Fn::If" in statement:
            condition, when_true, when_false = statement["Fn::If"]
            assert condition == "HasDeployers"
            statement = when_true if deployers else when_false
            if statement == {"Ref": "AWS::NoValue"}:
                continue
        out.append(statement)
    return out


ROOT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}


@pytest.mark.parametrize("key", ["AlarmTopicKey", "NotificationTopicKey"])
def test_with_deployers_only_they_administer_the_topic_keys(key: str) -> None:
    """A KMS admin through IAM could disable the alarm topic's key and silence every alarm: with
    DeployerArns the account (IAM) may only use the key, and the deployers administer it."""
    with_deployers = _key_statements(key, deployers=True)
    [admin] = [s for s in with_deployers if s["Action"] == "kms:*"]
    assert admin["Principal"] == {"AWS": {"Ref": "DeployerArns"}}
    [account] = [s for s in with_deployers if s["Principal"] == ROOT]
    assert account["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"]
    # Without DeployerArns the account administers the key, as before (weaker; doctor warns).
    [admin] = [s for s in _key_statements(key, deployers=False) if s["Principal"] == ROOT]
    assert admin["Action"] == "kms:*"


def test_alarm_topic_key_lets_cloudwatch_publish() -> None:
    statements = _key_statements("AlarmTopicKey", deployers=True)
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
    condition, exact, by_path = trust["Condition"]["Fn::If"]
    assert condition == "HasEngineRoleArns"
    for branch in (exact, by_path):
        assert branch["StringEquals"] == {"sts:ExternalId": {"Ref": "ExternalId"}}
    # The engine roles' exact ARNs (EngineRoleArns output) when given; the path only as the fallback.
    assert exact["ArnEquals"] == {"aws:PrincipalArn": {"Ref": "EngineRoleArns"}}
    assert by_path["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"].endswith(":role/sessiongate/*")
    [policy] = role["Policies"]
    statements = {s["Sid"]: s for s in map(unwrap, policy["PolicyDocument"]["Statement"])}
    tagging = statements["SetAndClearSlotTagsOnly"]["Condition"]
    assert set(tagging["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(slots.all_keys(5))
    assert tagging["Null"] == {"aws:TagKeys": "false"}
    assert statements["NeverTagSessionGateItself"]["Effect"] == "Deny"


def test_engine_assumes_only_member_roles_of_listed_accounts() -> None:
    # The request API too: member-account requests look up, and "I'm done" revokes, in that account.
    for function in (
        "GrantAccessFunction",
        "RevokeAccessFunction",
        "ReconcileGrantsFunction",
        "RequestApiFunction",
        # The Change Manager adapter asks a member account whether an instance is a managed node.
        "AdaptChangeRequestFunction",
    ):
        [assume] = [s for s in function_statements(function) if s.get("Sid") == "ActInMemberAccounts"]
        assert assume["Resource"]["Fn::Sub"].endswith(":role/sessiongate/SessionGateMember")
        assert assume["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Ref": "MemberAccounts"}}}


# ---------------------------------------------------------------- notification topic encryption
PUBLISHERS = [
    "GrantAccessFunction",
    "RevokeAccessFunction",
    "AdaptChangeRequestFunction",
    "ReconcileGrantsFunction",
    "RequestApiFunction",
    "PublishEventsFunction",
]


def test_notification_topic_has_a_customer_managed_key_change_manager_may_use() -> None:
    """Change Manager (ssm.amazonaws.com) cannot use the AWS managed SNS key."""
    assert resource("NotificationTopic")["Properties"]["KmsMasterKeyId"] == {"Ref": "NotificationTopicKey"}
    key = resource("NotificationTopicKey")["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = _key_statements("NotificationTopicKey", deployers=False)
    [admin] = [s for s in statements if s["Principal"] == ROOT]
    assert admin["Action"] == "kms:*"
    [ssm] = [s for s in statements if s["Principal"] == {"Service": "ssm.amazonaws.com"}]
    assert ssm["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert ssm["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert len(statements) == 2


def test_notification_topic_policy_lets_change_manager_publish() -> None:
    policy = resource("NotificationTopicPolicy")
    assert policy["Type"] == "AWS::SNS::TopicPolicy"
    assert "Condition" not in policy  # always: it also refuses publishers other than SessionGate
    assert policy["Properties"]["Topics"] == [{"Ref": "NotificationTopic"}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    [ssm] = [s["Fn::If"][1] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "ChangeManagerEnabled"]
    assert ssm["Effect"] == "Allow"
    assert ssm["Principal"] == {"Service": "ssm.amazonaws.com"}
    assert ssm["Action"] == "sns:Publish"
    assert ssm["Resource"] == {"Ref": "NotificationTopic"}
    assert ssm["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    [deny] = [s for s in statements if s.get("Sid") == "OnlySessionGatePublishes"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"


@pytest.mark.parametrize("function", PUBLISHERS)
def test_publishers_may_use_the_topic_key_through_sns_only(function: str) -> None:
    statements = function_statements(function)
    assert any("sns:Publish" in _actions(s) for s in statements)
    [kms] = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    assert kms["Effect"] == "Allow"
    assert sorted(_actions(kms)) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"]["Fn::Sub"].endswith(":key/${NotificationTopicKey}")
    assert kms["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}}
    }


# ---------------------------------------------------------------- reconciler alarm and schedule
def _repairs_alarmed() -> set[str]:
    metrics = resource("ReconcilerRepairsAlarm")["Properties"]["Metrics"]
    kinds = set()
    for metric in metrics:
        if "MetricStat" not in metric:
            continue
        m = metric["MetricStat"]["Metric"]
        assert (m["Namespace"], m["MetricName"]) == ("SessionGate", "ReconcilerRepairs")
        dimensions = {d["Name"]: d["Value"] for d in m["Dimensions"]}
        assert dimensions.pop("service") == "sessiongate"
        kinds.add(dimensions.pop("repair"))
        assert not dimensions
    return kinds


def test_reconciler_repairs_alarm_counts_every_kind_of_repair(stack: Any) -> None:
    """Stuck (abandoned) grants raise the alarm too, not only revocations (a lost schedule) and drift."""
    outcome = stack.engine().reconcile()
    reported = set(outcome.detail["repairs"])
    assert {"revoked", "drift_removed", "abandoned"} <= reported
    assert _repairs_alarmed() == reported
    [total] = [m for m in resource("ReconcilerRepairsAlarm")["Properties"]["Metrics"] if m.get("ReturnData")]
    assert total["Expression"] == "SUM(METRICS())"


@pytest.mark.parametrize(
    ("minutes", "expression"), [(1, "rate(1 minute)"), (5, "rate(5 minutes)"), (60, "rate(60 minutes)")]
)
def test_reconciler_schedule_expression_is_valid_for_every_rate(minutes: int, expression: str) -> None:
    """EventBridge accepts rate(1 minute) but not rate(1 minutes)."""
    from sandbox import cfn

    stack = cfn.load("sessiongate", "123456789012", "us-east-1", {"ReconcilerRateMinutes": minutes})
    rules = {
        r.logical_id: r.properties
        for r in stack.of_type("AWS::Events::Rule")
        if "reconcile-grants" in json.dumps(r.properties.get("Targets", []))
    }
    assert rules["ReconcileGrantsFunctionEvery"]["ScheduleExpression"] == expression
    # The full sweep runs daily whatever the steady rate, told apart by its input.
    assert rules["ReconcileGrantsFunctionSweep"]["ScheduleExpression"] == "rate(1 day)"
    [target] = rules["ReconcileGrantsFunctionSweep"]["Targets"]
    assert json.loads(target["Input"]) == {"sweep": "full"}


def test_schedule_group_name_fits_schedulers_limits_for_any_stack_name() -> None:
    """Stack names may have 128 characters, schedule group names 64 (botocore's ScheduleGroupName)."""
    import re

    import botocore.session

    from sandbox import cfn

    shape = botocore.session.get_session().get_service_model("scheduler").shape_for("ScheduleGroupName")
    pattern, longest = shape.metadata["pattern"], shape.metadata["max"]
    names = set()
    for stack_name in ("s", "a" + "-b2" * 42 + "c"):  # 1 and 128 characters
        assert re.fullmatch(r"[a-zA-Z][-a-zA-Z0-9]{0,127}", stack_name)
        stack = cfn.load(stack_name, "123456789012", "us-east-1")
        group = stack.resources["ScheduleGroup"].physical_id
        assert 1 <= len(group) <= longest, group
        assert re.fullmatch(pattern, group), group
        # The engine and the IAM statements name the same group.
        grant_env = stack.resources["GrantAccessFunction"].properties["Environment"]["Variables"]
        assert grant_env["SESSIONGATE_SCHEDULE_GROUP"] == group
        names.add(group)
    assert len(names) == 2  # one group per stack


def test_change_request_functions_know_the_stacks_approver_and_read_only_its_group() -> None:
    """The engine checks Change Manager approvals against the stack's parameters (the change template
    can be rewritten), reading the members of exactly the approver group, only when it is an IamGroup."""
    for function in ("GrantAccessFunction", "AdaptChangeRequestFunction"):
        variables = resource(function)["Properties"]["Environment"]["Variables"]
        assert variables["SESSIONGATE_APPROVER_NAME"] == {"Ref": "ApproverName"}
        assert variables["SESSIONGATE_APPROVER_TYPE"] == {"Ref": "ApproverType"}
        assert variables["SESSIONGATE_MIN_REQUIRED_APPROVALS"] == {"Ref": "MinRequiredApprovals"}
        statements = resource(function)["Properties"]["Policies"][0]["Statement"]
        [group] = [s for s in statements if "Fn::If" in s and unwrap(s).get("Sid") == "ReadApproverGroup"]
        assert group["Fn::If"][0] == "ApproverIsIamGroup"
        assert group["Fn::If"][2] == {"Ref": "AWS::NoValue"}
        assert unwrap(group)["Action"] == "iam:GetGroup"
        assert [r["Fn::Sub"] for r in unwrap(group)["Resource"]] == [
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:group/${ApproverName}",
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:group/*/${ApproverName}",
        ]
        others = [s for s in function_statements(function) if s.get("Sid") != "ReadApproverGroup"]
        assert not any("iam:GetGroup" in _actions(s) for s in others)
    assert template()["Conditions"]["ApproverIsIamGroup"] == {
        "Fn::Equals": [{"Ref": "ApproverType"}, "IamGroup"]
    }


# ---------------------------------------------------------------- lifecycle notifications (outbox)
def test_both_tables_stream_old_and_new_images() -> None:
    for table in ("GrantsTable", "RequestsTable"):
        spec = resource(table)["Properties"]["StreamSpecification"]
        assert spec == {"StreamViewType": "NEW_AND_OLD_IMAGES"}, table


@pytest.mark.parametrize(
    ("event", "table"), [("LedgerChanges", "GrantsTable"), ("RequestChanges", "RequestsTable")]
)
def test_the_publisher_consumes_each_stream_with_partial_batch_responses_and_bounded_retries(
    event: str, table: str
) -> None:
    props = resource("PublishEventsFunction")["Properties"]["Events"][event]
    assert props["Type"] == "DynamoDB"
    p = props["Properties"]
    assert p["Stream"] == {"Fn::GetAtt": [table, "StreamArn"]}
    assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert p["BisectBatchOnFunctionError"] is True
    # -1 (the default) would retry a poison record until it leaves the stream, blocking its shard.
    assert 0 <= p["MaximumRetryAttempts"] <= 20
    assert 60 <= p["MaximumRecordAgeInSeconds"] <= 86400
    assert p["MaximumBatchingWindowInSeconds"] == 0  # seconds matter: no batching window
    assert p["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["PublishFailuresQueue", "Arn"]},
    }
    # The filter lets every grant or request record through and nothing else.
    [f] = p["FilterCriteria"]["Filters"]
    pattern = EventPattern.load(f["Pattern"])
    record = {"dynamodb": {"NewImage": {"status": {"S": "ACTIVE"}, "pk": {"S": "GRANT#cm-1"}}}}
    assert pattern.matches_event(record)
    assert not pattern.matches_event({"dynamodb": {"NewImage": {"pk": {"S": "SLOT#x#1"}}}})
    assert not pattern.matches_event({"dynamodb": {"OldImage": {"status": {"S": "ACTIVE"}}}})


def test_the_publisher_role_holds_the_streams_the_topic_and_its_queue_only() -> None:
    assert resource("PublishEventsFunction")["Properties"]["Role"] == {
        "Fn::GetAtt": ["PublishEventsFunctionRole", "Arn"]
    }
    role = resource("PublishEventsFunctionRole")["Properties"]
    assert role["Path"] == "/sessiongate/"
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    ]
    [policy] = role["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    assert {sid: sorted(_actions(s)) for sid, s in statements.items()} == {
        "ReadTheTwoStreams": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
        "ListStreams": ["dynamodb:ListStreams"],  # Lambda lists streams; the action takes no resource
        "ReportRecordsItGaveUpOn": ["sqs:SendMessage"],
        "Notify": ["sns:Publish"],
        "NotifyThroughTheTopicKey": ["kms:Decrypt", "kms:GenerateDataKey"],
    }
    assert statements["ReadTheTwoStreams"]["Resource"] == [
        {"Fn::GetAtt": ["GrantsTable", "StreamArn"]},
        {"Fn::GetAtt": ["RequestsTable", "StreamArn"]},
    ]
    assert statements["Notify"]["Resource"] == {"Ref": "NotificationTopic"}
    assert statements["ReportRecordsItGaveUpOn"]["Resource"] == {
        "Fn::GetAtt": ["PublishFailuresQueue", "Arn"]
    }
    assert statements["NotifyThroughTheTopicKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}}
    }
    queue = resource("PublishFailuresQueue")["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    groups = [
        r["Properties"]["LogGroupName"]
        for r in template()["Resources"].values()
        if r["Type"] == "AWS::Logs::LogGroup"
    ]
    assert {"Fn::Sub": "/aws/lambda/${PublishEventsFunction}"} in groups


@pytest.mark.parametrize("where", ["GrantAccessFunction", "member"])
def test_instance_tagging_constrains_keys_and_values(where: str) -> None:
    """Instance binding: one of the offered instance slot keys, its value an aws:userid (an IAM user's
    UserId, or <RoleId>:<session>), on instances only; engine and member stacks alike."""
    statements = _member_statements() if where == "member" else function_statements(where)
    [create] = [s for s in statements if s.get("Sid") == "SetInstanceSlotTagsOnly"]
    assert create["Action"] == "ec2:CreateTags"
    assert create["Resource"]["Fn::Sub"].endswith(":instance/*")
    assert create["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": slots.all_for_keys(5)},
        "Null": {"aws:TagKeys": "false"},
        "StringLikeIfExists": {f"aws:RequestTag/{k}": ["AIDA*", "AROA*:*"] for k in slots.all_for_keys(5)},
    }
    [delete] = [s for s in statements if s.get("Sid") == "ClearInstanceSlotTagsOnly"]
    assert delete["Action"] == "ec2:DeleteTags"
    assert delete["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": slots.all_for_keys(5)},
        "Null": {"aws:TagKeys": "false"},
    }


def test_every_function_is_named_after_the_stack_as_the_mapping_guard_expects() -> None:
    """DenyChangingSessionGateEventSourceMappings names SessionGate's functions as <stack name>-*."""
    [statement] = [
        s
        for s in _guard_statements(resource("SessionGateControlPlaneGuard")["Properties"]["PolicyDocument"])
        if s["Sid"] == "DenyChangingSessionGateEventSourceMappings"
    ]
    [pattern] = statement["Condition"]["ArnLike"]["lambda:FunctionArn"]
    assert pattern["Fn::Sub"].endswith(":function:${AWS::StackName}-*")
    functions = {k: r for k, r in template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert len(functions) >= 8
    for logical_id, function in functions.items():
        assert function["Properties"]["FunctionName"]["Fn::Sub"].startswith("${AWS::StackName}-"), logical_id
