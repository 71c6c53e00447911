"""template.yaml, native front door section: IAM on every route, access logs, throttling, least privilege."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sessiongate import slots
from tests.support.native import declared_routes
from tests.support.template import TEMPLATE, function_statements, resource, template


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_every_route_uses_iam_authorization_and_payload_2() -> None:
    api = resource("RequestApi")["Properties"]
    assert api["Auth"] == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    events = {
        name: e for name, e in resource("RequestApiFunction")["Properties"]["Events"].items() if name != SWEEP
    }
    assert len(events) == len(declared_routes()) == 9
    for event in events.values():
        assert event["Type"] == "HttpApi"
        props = event["Properties"]
        assert props["ApiId"] == {"Ref": "RequestApi"}
        assert props["Auth"] == {"Authorizer": "AWS_IAM"}
        assert props["PayloadFormatVersion"] == "2.0"


SWEEP = "ExpirePendingRequests"


def test_pending_requests_are_swept_on_the_reconciler_schedule() -> None:
    events = resource("RequestApiFunction")["Properties"]["Events"]
    sweep = events[SWEEP]
    assert sweep["Type"] == "Schedule"
    assert (
        sweep["Properties"]["Schedule"]
        == resource("ReconcileGrantsFunction")["Properties"]["Events"]["Every"]["Properties"]["Schedule"]
    )
    assert sweep["Properties"]["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["EventDeliveryDeadLetterQueue", "Arn"]}
    }


def test_api_has_access_logs_with_retention_and_throttling() -> None:
    api = resource("RequestApi")["Properties"]
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["RequestApiAccessLogGroup", "Arn"]}
    assert "$context.identity.userArn" in api["AccessLogSettings"]["Format"]
    assert api["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    for group in ("RequestApiAccessLogGroup", "RequestApiLogGroup"):
        assert resource(group)["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_request_api_least_privilege() -> None:
    statements = function_statements("RequestApiFunction")
    allowed = {a for s in statements if s["Effect"] == "Allow" for a in _actions(s)}
    assert not any(a.endswith("*") for a in allowed)
    assert not any(a.startswith(("iam:Tag", "iam:PassRole", "scheduler:Create")) for a in allowed)
    for s in statements:
        if any(a.startswith("iam:Untag") for a in _actions(s)) and s["Effect"] == "Allow":
            condition = s["Condition"]
            assert set(condition["ForAllValues:StringEquals"]["aws:TagKeys"]) == set(slots.all_keys(5))
            assert condition["Null"] == {"aws:TagKeys": "false"}
        if "sns:Publish" in _actions(s):
            assert s["Resource"] == {"Ref": "NotificationTopic"}
        if "events:PutEvents" in _actions(s):
            assert s["Resource"] == {"Fn::GetAtt": ["EventBus", "Arn"]}
        if "scheduler:DeleteSchedule" in _actions(s):
            assert "${ScheduleGroup}/sg-revoke-" in s["Resource"]["Fn::Sub"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert denies
    assert all("role/sessiongate/*" in json.dumps(s["Resource"]) for s in denies)


def test_grant_function_reads_request_records_only() -> None:
    env = resource("GrantAccessFunction")["Properties"]["Environment"]["Variables"]
    assert env["SESSIONGATE_REQUESTS_TABLE"] == {"Ref": "RequestsTable"}
    [read] = [s for s in function_statements("GrantAccessFunction") if s.get("Sid") == "ReReadNativeRequests"]
    assert read["Action"] == "dynamodb:GetItem"
    assert read["Resource"] == {"Fn::GetAtt": ["RequestsTable", "Arn"]}


def test_request_api_environment_matches_the_settings_it_requires() -> None:
    from sessiongate.runtime import REQUIRED
    from sessiongate.settings import Settings

    env = set(resource("RequestApiFunction")["Properties"]["Environment"]["Variables"])
    env |= set(template()["Globals"]["Function"]["Environment"]["Variables"])
    assert {Settings.ENV[name] for name in REQUIRED["requests"]} <= env


def test_default_policy_parameter_is_a_valid_policy() -> None:
    from sessiongate.approval_policy import ApprovalPolicy

    value = resource("ApprovalPolicyParameter")["Properties"]["Value"]["Fn::If"]
    fallback = ApprovalPolicy.parse_json(value[2])
    assert fallback.rules[0].levels[0].approvers[0].startswith("arn:aws:iam::000000000000:")
    with_approvers = value[1]["Fn::Sub"][0].replace("${Approvers}", "arn:aws:iam::123456789012:role/A")
    assert ApprovalPolicy.parse_json(with_approvers).rules[0].name == "default"


def _runtime_role(function: str) -> str:
    """The runtime role (sessiongate.runtime.REQUIRED key) the function's handler builds its engine for."""
    code = resource(function)["Properties"]["CodeUri"]
    source = (TEMPLATE.parent / code / "app.py").read_text()
    if "request_api()" in source:
        return "requests"
    [role] = re.findall(r'engine\("(\w+)"\)', source)
    return role


FUNCTIONS = [
    logical_id
    for logical_id, r in template()["Resources"].items()
    if r["Type"] == "AWS::Serverless::Function"
]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_environment_holds_the_settings_its_role_requires(function: str) -> None:
    """Each function sees only its own environment plus Globals: nothing borrowed from another function."""
    from sessiongate.runtime import REQUIRED
    from sessiongate.settings import Settings

    env = set(resource(function)["Properties"].get("Environment", {}).get("Variables", {}))
    env |= set(template()["Globals"]["Function"]["Environment"]["Variables"])
    missing = {Settings.ENV[name] for name in REQUIRED[_runtime_role(function)]} - env
    assert not missing, missing


def test_grant_function_knows_the_break_glass_approver_of_record() -> None:
    """The grant's NativeVerifier compares break-glass records with settings.break_glass_approver_arn."""
    from sessiongate.settings import Settings

    variable = Settings.ENV["break_glass_approver_arn"]
    grant = resource("GrantAccessFunction")["Properties"]["Environment"]["Variables"]
    api = resource("RequestApiFunction")["Properties"]["Environment"]["Variables"]
    assert grant[variable] == api[variable] == {"Fn::GetAtt": ["RequestApiFunctionRole", "Arn"]}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("arn:aws:iam::111122223333:role/A", True),
        ("arn:aws:iam::111122223333:role/A,arn:aws:iam::111122223333:role/team/*", True),
        ("arn:aws:sts::111122223333:assumed-role/Approvers/*", True),
        ("arn:aws:iam::111122223333:role/A, arn:aws:iam::111122223333:role/B", False),
        (" arn:aws:iam::111122223333:role/A", False),
        ("arn:aws:iam::111122223333:role/A,", False),
        ("arn:aws:iam::111122223333:role/A,,arn:aws:iam::111122223333:role/B", False),
        ('arn:aws:iam::111122223333:role/A"]}', False),
    ],
)
def test_native_approver_arns_cannot_carry_spaces(value: str, accepted: bool) -> None:
    """The default policy splits on "," as is: "a, b" would make an approver pattern with a leading space."""
    parameter = template()["Parameters"]["NativeApproverArns"]
    assert parameter["ConstraintDescription"]
    assert bool(re.fullmatch(parameter["AllowedPattern"], value)) is accepted
    if accepted and value:
        from sessiongate.approval_policy import ApprovalPolicy

        text = resource("ApprovalPolicyParameter")["Properties"]["Value"]["Fn::If"][1]["Fn::Sub"][0]
        policy = ApprovalPolicy.parse_json(text.replace("${Approvers}", '", "'.join(value.split(","))))
        assert list(policy.rules[0].levels[0].approvers) == value.split(",")
