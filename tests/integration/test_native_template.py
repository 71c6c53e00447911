"""template.yaml, native front door section: IAM on every route, access logs, throttling, least privilege."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from sessiongate.core import slots
from tests.support.native import declared_routes
from tests.support.template import function_statements, resource, template


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
    # By the name CloudFormation gives the table (a GetAtt would be circular: the table's resource
    # policy names the roles).
    table = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${AWS::StackName}"
    assert read["Resource"] == {"Fn::Sub": table + "-RequestsTable-*"}


def test_request_api_environment_matches_the_settings_it_requires() -> None:
    from sessiongate.settings import Settings
    from sessiongate.wiring import REQUIRED

    env = set(resource("RequestApiFunction")["Properties"]["Environment"]["Variables"])
    env |= set(template()["Globals"]["Function"]["Environment"]["Variables"])
    assert {Settings.ENV[name] for name in REQUIRED["requests"]} <= env


def test_the_default_policy_ships_in_the_stack_and_a_custom_one_must_be_signed() -> None:
    """No SSM parameter holds the default policy (anyone with ssm:PutParameter could rewrite it): the
    functions build it from NativeApproverArns; a named parameter is verified with ApprovalPolicyKey."""
    from sessiongate.access_requests.policy import NOBODY, ApprovalPolicy, default_document

    assert not [r for r in template()["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"]
    for function in ("RequestApiFunction", "GrantAccessFunction"):
        env = resource(function)["Properties"]["Environment"]["Variables"]
        assert env["SESSIONGATE_DEFAULT_APPROVERS"] == {"Ref": "NativeApproverArns"}
        assert env["SESSIONGATE_APPROVAL_POLICY_PARAMETER"] == {"Ref": "ApprovalPolicyParameterName"}
        assert env["SESSIONGATE_APPROVAL_POLICY_KEY"] == {"Fn::GetAtt": ["ApprovalPolicyKey", "Arn"]}
        assert env["SESSIONGATE_APPROVAL_KEY"] == {"Fn::GetAtt": ["ApprovalKey", "Arn"]}
    fallback = ApprovalPolicy.parse(default_document(()))
    assert fallback.rules[0].levels[0].approvers == (NOBODY,)
    assert (
        ApprovalPolicy.parse(default_document(("arn:aws:iam::123456789012:role/A",))).rules[0].name
        == "default"
    )


def _key_statements(logical_id: str) -> dict[str, dict[str, Any]]:
    key = resource(logical_id)["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("HMAC_256", "GENERATE_VERIFY_MAC")
    return {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}


def _who(statement: dict[str, Any], action: str) -> Any:
    actions = _actions(statement)
    return statement["Principal"]["AWS"] if action in actions else None


DEPLOYERS_OR_ROOT = {
    "Fn::If": [
        "HasDeployers",
        {"Ref": "DeployerArns"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
    ]
}
API_ROLE = {"Fn::GetAtt": ["RequestApiFunctionRole", "Arn"]}
GRANT_ROLE = {"Fn::GetAtt": ["GrantAccessFunctionRole", "Arn"]}


def test_only_the_deployers_sign_the_policy_and_sessiongate_only_verifies_it() -> None:
    statements = _key_statements("ApprovalPolicyKey")
    assert all(s["Effect"] == "Allow" and s["Resource"] == "*" for s in statements.values())
    signers = [_who(s, "kms:GenerateMac") for s in statements.values() if _who(s, "kms:GenerateMac")]
    assert signers == [DEPLOYERS_OR_ROOT]
    verifiers = [_who(s, "kms:VerifyMac") for s in statements.values() if _who(s, "kms:VerifyMac")]
    assert verifiers == [DEPLOYERS_OR_ROOT, [API_ROLE, GRANT_ROLE]]
    assert statements["SessionGateOnlyVerifies"]["Action"] == "kms:VerifyMac"


def test_only_the_request_api_signs_approvals_and_only_the_grant_verifies_them() -> None:
    statements = _key_statements("ApprovalKey")
    assert [_who(s, "kms:GenerateMac") for s in statements.values() if _who(s, "kms:GenerateMac")] == [
        API_ROLE
    ]
    assert [_who(s, "kms:VerifyMac") for s in statements.values() if _who(s, "kms:VerifyMac")] == [GRANT_ROLE]
    admin = statements["DeployersAdminister"]
    assert admin["Principal"]["AWS"] == DEPLOYERS_OR_ROOT
    assert not any(a in ("kms:*", "kms:GenerateMac", "kms:VerifyMac") for a in _actions(admin))


def test_no_iam_policy_of_sessiongate_names_its_mac_keys() -> None:
    """Use of the MAC keys comes from their key policies only (no IAM grant to widen or copy)."""
    for function in FUNCTIONS:
        for statement in function_statements(function):
            assert not any(a in ("kms:GenerateMac", "kms:VerifyMac", "kms:*") for a in _actions(statement))


def _runtime_role(function: str) -> str:
    """The wiring role (sessiongate.wiring.REQUIRED key) the function's handler declares."""
    code = resource(function)["Properties"]["CodeUri"]
    return str(importlib.import_module(f"functions.{Path(code).name}.app").ROLE)


FUNCTIONS = [
    logical_id
    for logical_id, r in template()["Resources"].items()
    if r["Type"] == "AWS::Serverless::Function"
]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_environment_holds_the_settings_its_role_requires(function: str) -> None:
    """Each function sees only its own environment plus Globals: nothing borrowed from another function."""
    from sessiongate.settings import Settings
    from sessiongate.wiring import REQUIRED

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
        from sessiongate.access_requests.policy import ApprovalPolicy, default_document
        from sessiongate.settings import Settings

        settings = Settings.from_env({"SESSIONGATE_DEFAULT_APPROVERS": value})
        policy = ApprovalPolicy.parse(default_document(settings.default_approvers))
        assert list(policy.rules[0].levels[0].approvers) == value.split(",")
