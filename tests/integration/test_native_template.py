"""template.yaml, native front door section: a REST API with IAM on every method, the resource policy
(the organization), access logs, throttling, least privilege."""

from __future__ import annotations

import functools
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox import cfn
from sandbox.apigw import STAGE, admitted, resource_policy
from sessiongate.access_requests.http import ROUTES
from sessiongate.core import slots
from tests.support.native import declared_routes
from tests.support.stack import ACCOUNT, REGION
from tests.support.template import function_statements, resource, template


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


ORG = "o-exampleorg1"
MEMBER = "210987654321"


@functools.cache
def deployed(organization: str = "") -> cfn.Stack:
    """template.yaml after the SAM transform, resolved as a stack (with or without an organization)."""
    return cfn.load("sessiongate", ACCOUNT, REGION, {"OrganizationId": organization} if organization else {})


def test_every_route_is_a_rest_api_method_with_iam_authorization() -> None:
    """Each route of the function is an AWS_IAM method of the REST API (no route without it), invoking
    the function through its permission, never with the caller's credentials (SAM's default for AWS_IAM)."""
    api = resource("RequestApi")
    assert api["Type"] == "AWS::Serverless::Api"
    assert api["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    assert api["Properties"]["Auth"]["InvokeRole"] == "NONE"
    events = {
        name: e for name, e in resource("RequestApiFunction")["Properties"]["Events"].items() if name != SWEEP
    }
    assert len(events) == len(declared_routes()) == 12  # (two: chat identity links, issue 19; GET /instances)
    for event in events.values():
        assert event["Type"] == "Api"
        props = event["Properties"]
        assert props["RestApiId"] == {"Ref": "RequestApi"}
        assert props["Auth"] == {"Authorizer": "AWS_IAM", "InvokeRole": "NONE"}
    # As deployed: every method of the OpenAPI body requires SigV4, and nothing else is served.
    body = deployed().resources["RequestApi"].properties["Body"]
    assert body["components"]["securitySchemes"] == {
        "AWS_IAM": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }
    methods = {f"{m.upper()} {path}": op for path, ops in body["paths"].items() for m, op in ops.items()}
    assert sorted(methods) == sorted(ROUTES)
    for route, op in methods.items():
        assert op["security"] == [{"AWS_IAM": []}], route
        integration = op["x-amazon-apigateway-integration"]
        assert (integration["type"], "credentials" in integration) == ("aws_proxy", False), route
    assert not [
        r for r in deployed().resources.values() if r.type == "AWS::ApiGateway::Method"
    ]  # (no method outside the body)


def test_the_resource_policy_admits_the_organization_or_only_this_account() -> None:
    """With OrganizationId, callers of the organization's other accounts may invoke (they still need
    execute-api:Invoke in their own account); nobody outside it may, whatever else allows. Without it,
    only this account (whose callers need RequestApiInvokePolicy: the allow leaves this account out)."""
    alone = resource_policy(deployed().resources)
    assert [s["Effect"] for s in alone["Statement"]] == ["Deny"]
    org = resource_policy(deployed(ORG).resources)
    [allow] = [s for s in org["Statement"] if s["Effect"] == "Allow"]
    assert allow["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": ORG},
        "StringNotEquals": {"aws:PrincipalAccount": ACCOUNT},
    }
    for policy in (alone, org):
        assert {s["Resource"] for s in policy["Statement"]} == {"execute-api:/*"}
        assert {s["Action"] for s in policy["Statement"]} == {"execute-api:Invoke"}
    cases = [
        # (policy, caller account, caller's organization, admitted by the resource policy)
        (alone, ACCOUNT, None, True),
        (alone, MEMBER, ORG, False),
        (org, ACCOUNT, ORG, True),
        (org, MEMBER, ORG, True),
        (org, MEMBER, "o-otherorg111", False),
        (org, "555555555555", None, False),
    ]
    for policy, account, org_id, expected in cases:
        got = admitted(policy, api_account=ACCOUNT, caller_account=account, org_id=org_id)
        assert got is expected, (account, org_id)


def test_the_organization_id_is_checked_by_the_template() -> None:
    pattern = re.compile(template()["Parameters"]["OrganizationId"]["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("o-a1b2c3d4e5")
    for bad in ("o-", "210987654321", "o-exampleorg1,o-other00000", "*"):
        assert not pattern.fullmatch(bad)


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
    stage = deployed().resources[f"RequestApi{STAGE}Stage"].properties
    assert stage["StageName"] == STAGE
    log = stage["AccessLogSetting"]
    assert log["DestinationArn"] == deployed().resources["RequestApiAccessLogGroup"].arn
    fields = json.loads(log["Format"])
    assert set(fields) == {
        "requestId",
        "ip",
        "caller",
        "account",
        "time",
        "routeKey",
        "status",
        "latency",
        "error",
        "integrationError",
    }
    assert (fields["caller"], fields["account"]) == (
        "$context.identity.userArn",
        "$context.identity.accountId",
    )
    assert stage["MethodSettings"] == [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            # (parameter defaults, as CloudFormation passes them: strings)
            "ThrottlingRateLimit": "5",
            "ThrottlingBurstLimit": "20",
            "MetricsEnabled": True,
            "LoggingLevel": "OFF",
            "DataTraceEnabled": False,
        }
    ]
    for group in ("RequestApiAccessLogGroup", "RequestApiLogGroup"):
        assert resource(group)["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # Access logs need the account's API Gateway CloudWatch role, set before the stage (or already set).
    assert resource("ApiGatewayAccount")["Condition"] == "CreateApiGatewayLogRole"
    assert resource("ApiGatewayLogRole")["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    assert {"Key": "sessiongate:log-role", "Value": "sessiongate-ApiGatewayAccount"} in stage["Tags"]


def test_the_account_log_role_and_setting_survive_the_stack() -> None:
    """Review B, M4: the API Gateway CloudWatch role is an account setting every REST API of the region
    uses, and deleting the stack does not reset it: the role and the setting stay (deletion and
    replacement), so the setting never points at a deleted role."""
    for logical_id in ("ApiGatewayLogRole", "ApiGatewayAccount"):
        assert resource(logical_id)["DeletionPolicy"] == "Retain", logical_id
        assert resource(logical_id)["UpdateReplacePolicy"] == "Retain", logical_id


def test_the_endpoint_output_names_the_stage() -> None:
    outputs = template()["Outputs"]
    assert outputs["RequestApiEndpoint"]["Value"]["Fn::Sub"].endswith(f"/{STAGE}")
    assert f"/{STAGE}/*" in outputs["RequestApiExecuteArn"]["Value"]["Fn::Sub"]


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
    # GetItem for an event without the signed facts; ConditionCheckItem for the check in the grant's one
    # transaction that the record is still APPROVED with the event's MAC (no write to it, ever).
    assert sorted(read["Action"]) == ["dynamodb:ConditionCheckItem", "dynamodb:GetItem"]
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
CHAT_ROLE = {"Fn::GetAtt": ["ChatInteractionsFunctionRole", "Arn"]}


def test_only_the_deployers_sign_the_policy_and_sessiongate_only_verifies_it() -> None:
    statements = _key_statements("ApprovalPolicyKey")
    assert all(s["Effect"] == "Allow" and s["Resource"] == "*" for s in statements.values())
    signers = [_who(s, "kms:GenerateMac") for s in statements.values() if _who(s, "kms:GenerateMac")]
    assert signers == [DEPLOYERS_OR_ROOT]
    verifiers = [_who(s, "kms:VerifyMac") for s in statements.values() if _who(s, "kms:VerifyMac")]
    # (the chat interactions function approves through the request API's code: issue 19)
    assert verifiers == [DEPLOYERS_OR_ROOT, [API_ROLE, GRANT_ROLE, CHAT_ROLE]]
    assert statements["SessionGateOnlyVerifies"]["Action"] == "kms:VerifyMac"


def test_only_the_request_api_signs_approvals_and_only_the_grant_verifies_them() -> None:
    statements = _key_statements("ApprovalKey")
    assert [_who(s, "kms:GenerateMac") for s in statements.values() if _who(s, "kms:GenerateMac")] == [
        [API_ROLE, CHAT_ROLE]  # a Slack click approves through the request API's code (issue 19)
    ]
    # ... and the chat function verifies the seal of a chat link (review finding 3), nothing else does.
    assert [_who(s, "kms:VerifyMac") for s in statements.values() if _who(s, "kms:VerifyMac")] == [
        GRANT_ROLE,
        CHAT_ROLE,
    ]
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


def test_chat_links_expire_and_the_request_api_knows_the_deployers() -> None:
    """Review finding 1: links have a maximum age (the table's TTL, and checked on read) and the
    deployers, only they, remove anyone's link through the request API (POST /chat/unlink)."""
    from sessiongate.settings import Settings

    env = resource("RequestApiFunction")["Properties"]["Environment"]["Variables"]
    assert env["SESSIONGATE_CHAT_LINK_MAX_AGE_DAYS"] == {"Ref": "ChatLinkMaxAgeDays"}
    assert env["SESSIONGATE_DEPLOYER_ARNS"] == {"Fn::Join": [",", {"Ref": "DeployerArns"}]}
    assert template()["Parameters"]["ChatLinkMaxAgeDays"]["Default"] == 30
    ttl = resource("ChatLinksTable")["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "ttl", "Enabled": True}
    settings = Settings.from_env(
        {
            "SESSIONGATE_CHAT_LINK_MAX_AGE_DAYS": "7",
            "SESSIONGATE_DEPLOYER_ARNS": "arn:aws:iam::123456789012:role/A,arn:aws:iam::123456789012:role/B",
        }
    )
    assert settings.chat_link_max_age_days == 7
    assert settings.deployer_arns == ("arn:aws:iam::123456789012:role/A", "arn:aws:iam::123456789012:role/B")
    # Review finding 2: the notifier receives ChatUnlinked, to tell a replaced Slack user.
    events = resource("ChatNotifyFunction")["Properties"]["Events"]
    assert "ChatUnlinked" in events["LifecycleEvents"]["Properties"]["FilterPolicy"]["event_type"]
