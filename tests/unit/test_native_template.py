"""template.yaml, native front door section: IAM on every route, access logs, throttling, least privilege."""

from __future__ import annotations

import json
from typing import Any

from sessiongate import slots
from tests.support.native import declared_routes
from tests.support.template import function_statements, resource, template


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_every_route_uses_iam_authorization_and_payload_2() -> None:
    api = resource("RequestApi")["Properties"]
    assert api["Auth"] == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    events = resource("RequestApiFunction")["Properties"]["Events"]
    assert len(events) == len(declared_routes()) == 9
    for event in events.values():
        assert event["Type"] == "HttpApi"
        props = event["Properties"]
        assert props["ApiId"] == {"Ref": "RequestApi"}
        assert props["Auth"] == {"Authorizer": "AWS_IAM"}
        assert props["PayloadFormatVersion"] == "2.0"


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
