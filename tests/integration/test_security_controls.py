"""Control-plane protection (issue 13, SECURITY.md): what template.yaml promises, resolved as deployed.

The policies' effect is evaluated in tests/integration/test_engine_permissions.py; here: who the table
policies name, the dead-man's switch, the CloudTrail-driven SecurityAlert rules against CloudTrail
records of the attacks, code signing and the SCP samples' size.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from moto.events.models import EventPattern

from sandbox import cfn
from sandbox.cfn import Stack

ACCOUNT = "123456789012"
REGION = "us-east-1"
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/deploy-pipeline"
TABLE_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}


@pytest.fixture(scope="module")
def stack() -> Stack:
    return cfn.load("sessiongate", ACCOUNT, REGION, {"DeployerArns": DEPLOYER})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _writers(stack: Stack, table: str) -> set[str]:
    """ARNs of the roles whose own policies allow writing ``table`` (as IAM would match the resource)."""
    import fnmatch

    arn = stack.resources[table].arn
    writers = set()
    for role in stack.of_type("AWS::IAM::Role"):
        for policy in role.properties.get("Policies", []):
            for s in _as_list(policy["PolicyDocument"]["Statement"]):
                if s["Effect"] != "Allow" or not TABLE_WRITES & set(_as_list(s["Action"])):
                    continue
                if any(fnmatch.fnmatchcase(arn, r) for r in _as_list(s["Resource"])):
                    writers.add(role.arn)
    return writers


@pytest.mark.parametrize("table", ["GrantsTable", "RequestsTable"])
def test_table_policy_names_exactly_the_roles_that_write_the_table(stack: Stack, table: str) -> None:
    """Finding 2: everyone but the engine roles that write a table is denied writes by its policy."""
    policy = stack.resources[table].properties["ResourcePolicy"]["PolicyDocument"]
    [writes] = [s for s in policy["Statement"] if set(s["Action"]) == TABLE_WRITES]
    assert (writes["Effect"], writes["Principal"]) == ("Deny", "*")
    exempt = set(writes["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
    assert exempt == _writers(stack, table)
    assert all("*" not in arn for arn in exempt)
    # The statement applies to this table (the roles name it by pattern to avoid a dependency cycle).
    import fnmatch

    assert any(fnmatch.fnmatchcase(stack.resources[table].arn, r) for r in writes["Resource"])


@pytest.mark.parametrize("table", ["GrantsTable", "RequestsTable"])
def test_only_deployers_change_table_settings_and_policies(stack: Stack, table: str) -> None:
    policy = stack.resources[table].properties["ResourcePolicy"]["PolicyDocument"]
    [control] = [s for s in policy["Statement"] if "dynamodb:PutResourcePolicy" in s["Action"]]
    assert {"dynamodb:DeleteResourcePolicy", "dynamodb:UpdateTable", "dynamodb:DeleteTable"} <= set(
        control["Action"]
    )
    assert control["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [DEPLOYER]}}
    # Without deployers nobody is singled out (the stack's own updates must keep working).
    default = cfn.load("sessiongate", ACCOUNT, REGION)
    statements = default.resources[table].properties["ResourcePolicy"]["PolicyDocument"]["Statement"]
    assert [s["Sid"] for s in statements] == [s["Sid"] for s in policy["Statement"]][:1]


@pytest.mark.parametrize("minutes", [1, 5, 60])
def test_reconciler_dead_mans_switch_fires_after_two_silent_periods(minutes: int) -> None:
    """Finding 5: a disabled reconciler rule raises ReconcilerNotRunning after two of its periods."""
    stack = cfn.load("sessiongate", ACCOUNT, REGION, {"ReconcilerRateMinutes": minutes})
    alarm = stack.resources["ReconcilerNotRunningAlarm"].properties
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/Lambda",
        "Invocations",
        "Sum",
    )
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": stack.resources["ReconcileGrantsFunction"].physical_id}
    ]
    assert alarm["TreatMissingData"] == "breaching"  # no invocation = no datapoint = breaching
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    window = alarm["Period"] * int(alarm["EvaluationPeriods"])
    assert window == 2 * minutes * 60
    assert int(alarm["DatapointsToAlarm"]) == int(alarm["EvaluationPeriods"])
    # Each bucket is at most half a period: a running reconciler leaves no window of all-empty buckets.
    assert alarm["Period"] <= minutes * 60 or minutes == 1
    assert alarm["AlarmActions"] == [stack.resources["AlarmTopic"].physical_id]


# ---------------------------------------------------------------- CloudTrail-driven SecurityAlert rules
def _cloudtrail(
    source: str, event_name: str, parameters: dict[str, Any], identity: dict[str, Any]
) -> dict[str, Any]:
    """An "AWS API Call via CloudTrail" event as EventBridge delivers it (CloudTrail record contents)."""
    return {
        "version": "0",
        "id": "1",
        "detail-type": "AWS API Call via CloudTrail",
        "source": f"aws.{source.split('.')[0]}",
        "account": ACCOUNT,
        "time": "2026-11-24T09:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "eventSource": source,
            "eventName": event_name,
            "userIdentity": identity,
            "requestParameters": parameters,
        },
    }


def _assumed(role_arn: str) -> dict[str, Any]:
    name = role_arn.rsplit("/", 1)[-1]
    return {
        "type": "AssumedRole",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/session",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role_arn}},
    }


ADMIN = _assumed(f"arn:aws:iam::{ACCOUNT}:role/LambdaAdmin")
SQUATTER = _assumed(f"arn:aws:iam::{ACCOUNT}:role/sessiongate/squatter")
IAM_USER = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/bob"}
ROOT = {"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root"}
SCHEDULER_SERVICE = {"type": "AWSService", "invokedBy": "scheduler.amazonaws.com"}


def _fields_of_array_elements(node: Any) -> Any:
    """EventBridge matches a pattern field against that field of every object in an event array
    (aws/event-ruler, the matcher behind EventBridge: "Arrays", ArrayMembership); moto's matcher does
    not, so arrays of objects become objects of arrays first (no pattern here relies on array consistency)."""
    if isinstance(node, dict):
        return {k: _fields_of_array_elements(v) for k, v in node.items()}
    if isinstance(node, list) and node and all(isinstance(item, list) for item in node):
        # An array in an array of objects (RunInstances: tagSpecificationSet.items[].tags[]): EventBridge
        # matches the innermost elements as one array.
        return _fields_of_array_elements([item for inner in node for item in inner])
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        keys = {k for item in node for k in item}
        return {
            k: _fields_of_array_elements([_fields_of_array_elements(item[k]) for item in node if k in item])
            for k in keys
        }
    return node


def _matches(stack: Stack, rule: str | list[str], event: dict[str, Any]) -> bool:
    """Whether rule ``rule`` (or any of the rules ``rule``) matches ``event``."""
    for name in [rule] if isinstance(rule, str) else rule:
        pattern = EventPattern.load(json.dumps(stack.resources[name].properties["EventPattern"]))
        if pattern.matches_event(_fields_of_array_elements(event)):
            return True
    return False


# The change alerts, split by what they watch (an event pattern holds 2,048 characters by default:
# "Amazon EventBridge quotas"); an event alerts when any of them matches it.
ENGINE_RULES = ["EngineChangeAlertRule", "EngineRoleChangeAlertRule"]
STATE_RULES = [
    "StateChangeAlertRule",
    "WatcherChangeAlertRule",
    "FrontDoorChangeAlertRule",
    "KeyChangeAlertRule",
    "HistoryChangeAlertRule",
]


def _sts(event_name: str, **parameters: Any) -> dict[str, Any]:
    return _cloudtrail("sts.amazonaws.com", event_name, parameters, ADMIN)


@pytest.mark.parametrize(
    ("event", "alerts"),
    [
        (_sts("AssumeRole", tags=[{"key": "SecurityAllowSessionInstance", "value": "i-0abc"}]), True),
        (
            _sts("AssumeRole", tags=[{"key": "Project", "value": "x"}, {"key": "securityallowsessionuser1"}]),
            True,
        ),
        (
            _sts("GetFederationToken", tags=[{"key": "SECURITYALLOWSESSIONINSTANCE3", "value": "i-0abc"}]),
            True,
        ),
        (_sts("AssumeRole", transitiveTagKeys=["SecurityAllowSessionInstance2"]), True),
        (_sts("AssumeRole", tags=[{"key": "Project", "value": "x"}]), False),
        (_sts("AssumeRole", roleArn="arn:aws:iam::1:role/SecurityAllowSessionInstance"), False),
    ],
)
def test_session_tag_rule_alerts_on_slot_keys_in_any_case(
    stack: Stack, event: dict[str, Any], alerts: bool
) -> None:
    """Finding 3 (detective): a session created with a slot key as a session tag raises a SecurityAlert."""
    assert _matches(stack, "SessionTagAlertRule", event) is alerts


def _iam_tag(call: str, identity: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    return _cloudtrail("iam.amazonaws.com", call, parameters, identity)


def _slot_tag_rule(stack: Stack) -> str:
    [rule] = [
        r.logical_id for r in stack.of_type("AWS::Events::Rule") if r.logical_id.endswith("SlotTagChanges")
    ]
    return rule


@pytest.mark.parametrize(
    ("event", "repairs"),
    [
        (
            _iam_tag(
                "TagUser",
                ADMIN,
                userName="eve",
                tags=[{"key": "SecurityAllowSessionInstance", "value": "i-1"}],
            ),
            True,
        ),
        (
            _iam_tag(
                "TagRole", ADMIN, roleName="ops", tags=[{"key": "x"}, {"key": "securityallowsessionuser3"}]
            ),
            True,
        ),
        (_iam_tag("UntagUser", ADMIN, userName="eve", tagKeys=["SECURITYALLOWSESSIONINSTANCE2"]), True),
        (
            _iam_tag(
                "TagUser",
                {"type": "IAMUser", "arn": "arn:aws:iam::1:user/x"},
                userName="eve",
                tags=[{"key": "SecurityAllowSessionInstance", "value": "i-1"}],
            ),
            True,
        ),
        (_iam_tag("TagUser", ADMIN, userName="eve", tags=[{"key": "Team", "value": "red"}]), False),
        (
            _iam_tag("CreateUser", ADMIN, userName="eve", tags=[{"key": "SecurityAllowSessionInstance"}]),
            True,
        ),
        (_iam_tag("CreateRole", ADMIN, roleName="ops", tags=[{"key": "securityallowsessionuser1"}]), True),
        (_iam_tag("CreateUser", ADMIN, userName="eve", tags=[{"key": "Team", "value": "red"}]), False),
    ],
)
def test_slot_tag_changes_reach_the_reconciler(stack: Stack, event: dict[str, Any], repairs: bool) -> None:
    """Issue 16: IAM tag calls naming a slot key (any case) invoke the reconciler for that principal."""
    assert _matches(stack, _slot_tag_rule(stack), event) is repairs


def test_the_grant_roles_own_tag_calls_invoke_the_reconciler(stack: Stack) -> None:
    """REVIEW-A F1: a TagUser that lands after its grant was revoked (IAM executed it after the client gave
    up) is repaired within a minute; a correct tag's repair is a no-op."""
    event = _iam_tag(
        "TagUser",
        _assumed(stack.resources["GrantAccessFunctionRole"].arn),
        userName="alice",
        tags=[{"key": "SecurityAllowSessionInstance", "value": "i-1"}],
    )
    assert _matches(stack, _slot_tag_rule(stack), event)


@pytest.mark.parametrize(
    "role", ["RevokeAccessFunctionRole", "ReconcileGrantsFunctionRole", "RequestApiFunctionRole"]
)
def test_the_untag_only_roles_calls_do_not_invoke_the_reconciler(stack: Stack, role: str) -> None:
    """Roles whose policies allow only untagging (test_engine_permissions.py): their calls only remove
    access, and repairing after each would re-read what they just did."""
    event = _iam_tag(
        "UntagUser",
        _assumed(stack.resources[role].arn),
        userName="alice",
        tagKeys=["SecurityAllowSessionInstance"],
    )
    assert not _matches(stack, _slot_tag_rule(stack), event)


def test_session_tag_rule_receives_read_only_calls(stack: Stack) -> None:
    # GetFederationToken is a read-only management event: delivered only in this rule state.
    assert (
        stack.resources["SessionTagAlertRule"].properties["State"]
        == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    )


def _engine_events(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    grant_role = stack.resources["GrantAccessFunctionRole"]
    return [
        (
            "lambda.amazonaws.com",
            "UpdateFunctionCode20150331v2",
            {"functionName": "sessiongate-grant-access"},
        ),
        (
            "lambda.amazonaws.com",
            "UpdateFunctionConfiguration20150331v2",
            {"functionName": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sessiongate-reconcile-grants"},
        ),
        ("lambda.amazonaws.com", "PublishLayerVersion20181031", {"layerName": "sessiongate-engine"}),
        # CreateFunction + iam:PassRole of an engine role: foreign code with the engine's rights.
        ("lambda.amazonaws.com", "CreateFunction20150331", {"functionName": "mine", "role": grant_role.arn}),
        ("iam.amazonaws.com", "PutRolePolicy", {"roleName": grant_role.physical_id, "policyName": "x"}),
        ("iam.amazonaws.com", "CreateRole", {"roleName": "mine", "path": "/sessiongate/"}),
        # The stream workers' roles too.
        (
            "iam.amazonaws.com",
            "PutRolePolicy",
            {"roleName": stack.resources["ExportHistoryFunctionRole"].physical_id, "policyName": "x"},
        ),
        (
            "iam.amazonaws.com",
            "AttachRolePolicy",
            {"roleName": stack.resources["PublishEventsFunctionRole"].physical_id, "policyArn": "x"},
        ),
        # The chat functions' roles (the guard keeps them as deployed too).
        (
            "iam.amazonaws.com",
            "PutRolePolicy",
            {"roleName": stack.resources["ChatNotifyFunctionRole"].physical_id, "policyName": "x"},
        ),
        # Every engine role passed to a function of one's own, not only the grant's.
        *(
            (
                "lambda.amazonaws.com",
                "UpdateFunctionConfiguration20150331v2",
                {"functionName": "mine", "role": stack.resources[role].arn},
            )
            for role in (
                "RevokeAccessFunctionRole",
                "ReconcileGrantsFunctionRole",
                "RequestApiFunctionRole",
                "SchedulerRole",
                "PublishEventsFunctionRole",
                "ExportHistoryFunctionRole",
                "ChatInteractionsFunctionRole",
            )
        ),
    ]


def _state_events(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    grants = stack.resources["GrantsTable"]
    reconciler_rule = next(
        r.physical_id
        for r in stack.of_type("AWS::Events::Rule")
        if "reconcile-grants" in json.dumps(r.properties.get("Targets", []))
    )
    group = stack.resources["ScheduleGroup"].physical_id
    api = stack.resources["RequestApi"].physical_id
    return [
        ("dynamodb.amazonaws.com", "UpdateTable", {"tableName": grants.physical_id}),
        ("dynamodb.amazonaws.com", "DeleteResourcePolicy", {"resourceArn": grants.arn}),
        ("events.amazonaws.com", "DisableRule", {"name": reconciler_rule}),
        ("events.amazonaws.com", "RemoveTargets", {"rule": reconciler_rule, "ids": ["x"]}),
        ("scheduler.amazonaws.com", "DeleteSchedule", {"name": "sg-revoke-cm-1", "groupName": group}),
        ("monitoring.amazonaws.com", "DisableAlarmActions", {"alarmNames": ["sessiongate-ReconcilerNot-A"]}),
        # Unsubscribe and SetSubscriptionAttributes name the subscription (<topic ARN>:<id>), not the topic.
        (
            "sns.amazonaws.com",
            "Unsubscribe",
            {"subscriptionArn": stack.resources["AlarmTopic"].arn + ":1a2b"},
        ),
        (
            "sns.amazonaws.com",
            "SetSubscriptionAttributes",
            {"subscriptionArn": stack.resources["AlarmTopic"].arn + ":1a2b", "attributeName": "FilterPolicy"},
        ),
        ("sns.amazonaws.com", "SetTopicAttributes", {"topicArn": stack.resources["AlarmTopic"].arn}),
        # The change template's approvers (an SSM admin could rewrite them).
        ("ssm.amazonaws.com", "UpdateDocument", {"name": "AllowSsmSessionStartTemplate"}),
        ("ssm.amazonaws.com", "UpdateDocumentMetadata", {"name": "AllowSsmSessionStartTemplate"}),
        # The request API (review B, H2): a mapping template can make up the caller identity.
        (
            "apigateway.amazonaws.com",
            "UpdateIntegration",
            {"restApiId": api, "resourceId": "abc", "httpMethod": "POST"},
        ),
        ("apigateway.amazonaws.com", "CreateDeployment", {"restApiId": api}),
        # Chat approvals (issue 19): the links and state tables, the chat API, the Slack secrets.
        (
            "dynamodb.amazonaws.com",
            "UpdateTable",
            {"tableName": stack.resources["ChatLinksTable"].physical_id},
        ),
        (
            "dynamodb.amazonaws.com",
            "DeleteResourcePolicy",
            {"resourceArn": stack.resources["ChatLinksTable"].arn},
        ),
        (
            "dynamodb.amazonaws.com",
            "PutResourcePolicy",
            {"resourceArn": stack.resources["ChatStateTable"].arn},
        ),
        (
            "apigateway.amazonaws.com",
            "CreateDeployment",
            {"restApiId": stack.resources["ChatApi"].physical_id},
        ),
        (
            "secretsmanager.amazonaws.com",
            "PutSecretValue",
            {"secretId": stack.resources["SlackSigningSecret"].physical_id},
        ),
        ("secretsmanager.amazonaws.com", "DeleteResourcePolicy", {"secretId": "sessiongate/slack/bot-token"}),
        (
            "secretsmanager.amazonaws.com",
            "UpdateSecret",
            {
                "secretId": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sessiongate/slack/"
                "signing-secret"
            },
        ),
        ("kms.amazonaws.com", "DisableKey", {"keyId": stack.resources["AlarmTopicKey"].arn}),
        ("kms.amazonaws.com", "ScheduleKeyDeletion", {"keyId": stack.resources["AlarmTopicKey"].physical_id}),
    ]


@pytest.mark.parametrize("who", [ADMIN, SQUATTER, IAM_USER, ROOT])
def test_engine_and_state_changes_by_others_alert(stack: Stack, who: dict[str, Any]) -> None:
    """Findings 4 and 5 (detective): changes to SessionGate's code, roles or state by others alert."""
    for rule, events in (
        (ENGINE_RULES, _engine_events(stack)),
        (STATE_RULES, _state_events(stack)),
    ):
        for source, name, parameters in events:
            assert _matches(stack, rule, _cloudtrail(source, name, parameters, who)), (
                rule,
                name,
                who["type"],
            )


def test_the_engine_and_the_deployers_do_not_alert(stack: Stack) -> None:
    engine_roles = [
        stack.resources[r].arn
        for r in (
            "GrantAccessFunctionRole",
            "RevokeAccessFunctionRole",
            "ReconcileGrantsFunctionRole",
            "RequestApiFunctionRole",
        )
    ]
    for rule, events in (
        (ENGINE_RULES, _engine_events(stack)),
        (STATE_RULES, _state_events(stack)),
    ):
        for source, name, parameters in events:
            for role in [*engine_roles, DEPLOYER]:
                event = _cloudtrail(source, name, parameters, _assumed(role))
                assert not _matches(stack, rule, event), (rule, name, role)
    # Scheduler deletes a fired one-time schedule itself (ActionAfterCompletion=DELETE).
    [schedule] = [e for e in _state_events(stack) if e[1] == "DeleteSchedule"]
    assert not _matches(stack, STATE_RULES, _cloudtrail(*schedule, SCHEDULER_SERVICE))


def test_unrelated_changes_do_not_alert(stack: Stack) -> None:
    for rule, (source, name, parameters) in (
        (
            ENGINE_RULES,
            ("lambda.amazonaws.com", "UpdateFunctionCode20150331v2", {"functionName": "app"}),
        ),
        (ENGINE_RULES, ("iam.amazonaws.com", "PutRolePolicy", {"roleName": "app-role"})),
        (STATE_RULES, ("dynamodb.amazonaws.com", "UpdateTable", {"tableName": "orders"})),
        (STATE_RULES, ("apigateway.amazonaws.com", "CreateDeployment", {"restApiId": "app123"})),
        (STATE_RULES, ("secretsmanager.amazonaws.com", "PutSecretValue", {"secretId": "app/db"})),
        (
            STATE_RULES,
            ("scheduler.amazonaws.com", "DeleteSchedule", {"name": "x", "groupName": "default"}),
        ),
    ):
        assert not _matches(stack, rule, _cloudtrail(source, name, parameters, ADMIN)), (rule, name)


def _mapping_change(event_name: str, function: str, who: dict[str, Any]) -> dict[str, Any]:
    """An event source mapping change as CloudTrail records it: Update and Delete name only the mapping's
    UUID; the response (the mapping's configuration) names the function."""
    event = _cloudtrail("lambda.amazonaws.com", event_name, {"uUID": "fa123456-14a1"}, who)
    event["detail"]["responseElements"] = {
        "uUID": "fa123456-14a1",
        "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}",
        "state": "Disabling",
    }
    return event


@pytest.mark.parametrize(
    "event_name",
    [
        "UpdateEventSourceMapping20150331",
        "DeleteEventSourceMapping20150331",
        "CreateEventSourceMapping20150331",
    ],
)
def test_a_changed_event_source_mapping_of_a_sessiongate_function_alerts(
    stack: Stack, event_name: str
) -> None:
    ours = stack.resources["ExportHistoryFunction"].physical_id
    assert _matches(stack, ENGINE_RULES, _mapping_change(event_name, ours, ADMIN))
    assert not _matches(stack, ENGINE_RULES, _mapping_change(event_name, "app", ADMIN))
    assert not _matches(stack, ENGINE_RULES, _mapping_change(event_name, ours, _assumed(DEPLOYER)))


def test_history_key_and_bucket_configuration_changes_alert(stack: Stack) -> None:
    key = stack.resources["HistoryKey"]
    bucket = stack.resources["HistoryBucket"].physical_id
    for source, name, parameters in (
        ("kms.amazonaws.com", "ScheduleKeyDeletion", {"keyId": key.physical_id}),
        ("kms.amazonaws.com", "DisableKey", {"keyId": key.arn}),
        ("s3.amazonaws.com", "PutBucketPolicy", {"bucketName": bucket}),
        ("s3.amazonaws.com", "PutBucketLifecycle", {"bucketName": bucket}),
        ("s3.amazonaws.com", "PutBucketReplication", {"bucketName": bucket}),
        ("s3.amazonaws.com", "PutObjectLockConfiguration", {"bucketName": bucket}),
        ("s3.amazonaws.com", "DeleteBucketPolicy", {"bucketName": bucket}),
    ):
        assert _matches(stack, STATE_RULES, _cloudtrail(source, name, parameters, ADMIN)), name
        event = _cloudtrail(source, name, parameters, _assumed(DEPLOYER))
        assert not _matches(stack, STATE_RULES, event), name
    # Not another bucket, and not the export's own writes (object-level data events).
    assert not _matches(
        stack,
        STATE_RULES,
        _cloudtrail("s3.amazonaws.com", "PutBucketPolicy", {"bucketName": "app"}, ADMIN),
    )
    export = _assumed(stack.resources["ExportHistoryFunctionRole"].arn)
    put = _cloudtrail("s3.amazonaws.com", "PutObject", {"bucketName": bucket, "key": "history/v1/x"}, export)
    assert not _matches(stack, STATE_RULES, put)


SECURITY_RULES = ["SessionTagAlertRule", *ENGINE_RULES, *STATE_RULES]


@pytest.mark.parametrize("rule", SECURITY_RULES)
def test_security_rules_notify_the_alarm_topic_with_a_dead_letter_queue(stack: Stack, rule: str) -> None:
    [target] = stack.resources[rule].properties["Targets"]
    assert target["Arn"] == stack.resources["AlarmTopic"].physical_id
    assert target["DeadLetterConfig"]["Arn"] == stack.resources["EventDeliveryDeadLetterQueue"].arn
    template = target["InputTransformer"]["InputTemplate"]
    assert json.loads(template.replace("<", "").replace(">", ""))["event"] == "SecurityAlert"
    # EventBridge may publish to the (KMS-encrypted) alarm topic, for these rules only.
    topic_policy = stack.resources["AlarmTopicPolicy"].properties["PolicyDocument"]["Statement"]
    [events] = [s for s in topic_policy if s["Principal"] == {"Service": "events.amazonaws.com"}]
    assert stack.resources[rule].arn in events["Condition"]["ArnEquals"]["aws:SourceArn"]
    key_policy = stack.resources["AlarmTopicKey"].properties["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"Service": "events.amazonaws.com"} for s in key_policy)
    # ... and every SecurityAlert also counts in the alarm.
    alarm = stack.resources["SecurityAlertAlarm"].properties
    rules = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for m in alarm["Metrics"] if "MetricStat" in m
    }
    assert stack.resources[rule].physical_id in rules
    # An alarm on a metric math expression references at most 10 metrics (CloudWatch alarm "Limits").
    assert len(rules) <= 10


@pytest.mark.parametrize("rule", SECURITY_RULES)
def test_security_rule_patterns_fit_eventbridge_limits(rule: str) -> None:
    """An event pattern is at most 2,048 characters by default ("Amazon EventBridge quotas", Event
    pattern size; adjustable to 4,096): a deploy needs no quota increase."""
    deployers = ",".join(
        f"arn:aws:iam::{ACCOUNT}:role/deployer-with-a-long-role-name-{i:02d}" for i in range(4)
    )
    stack = cfn.load("sessiongate-production-eu", ACCOUNT, REGION, {"DeployerArns": deployers})
    pattern = json.dumps(stack.resources[rule].properties["EventPattern"], separators=(",", ":"))
    # Real role names carry CloudFormation's 13-character suffix the sandbox's names lack.
    assert len(pattern) + 13 * pattern.count(":role/sessiongate/") <= 2048


# ---------------------------------------------------------------- code signing
def test_code_signing_is_off_by_default() -> None:
    stack = cfn.load("sessiongate", ACCOUNT, REGION)
    assert "CodeSigningConfig" not in stack.resources
    assert all("CodeSigningConfigArn" not in f.properties for f in stack.of_type("AWS::Lambda::Function"))


def test_code_signing_enforced_on_every_function_when_configured() -> None:
    """Finding 4 (optional): with signing profiles, Lambda refuses code not signed by them."""
    profile = f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/SessionGate/abcdef0123"
    stack = cfn.load("sessiongate", ACCOUNT, REGION, {"CodeSigningProfileVersionArns": profile})
    config = stack.resources["CodeSigningConfig"].properties
    assert config["AllowedPublishers"]["SigningProfileVersionArns"] == [profile]
    assert config["CodeSigningPolicies"]["UntrustedArtifactOnDeployment"] == "Enforce"
    functions = stack.of_type("AWS::Lambda::Function")
    assert len(functions) == len(list((cfn.ROOT / "functions").glob("*/app.py")))  # every one of them
    for function in functions:
        assert function.properties["CodeSigningConfigArn"] == stack.resources["CodeSigningConfig"].physical_id


# ---------------------------------------------------------------- SCP samples
SCP_SAMPLES = sorted(p.name for p in (cfn.ROOT / "docs").glob("scp-*.json"))


def _edited(text: str) -> str:
    """``text`` with every EDIT- placeholder replaced by the longest value it can realistically take:
    a role name by IAM's longest (64 characters), anything else by 64 characters as well (API ids are 10,
    tag keys and parameter names the deployer's own, usually shorter)."""
    return re.sub(r"EDIT-[A-Za-z0-9-]+", "x" * 64, text)


def test_every_scp_sample_is_checked() -> None:
    assert SCP_SAMPLES == [
        "scp-deny-slot-tags.json",
        "scp-protect-front-doors.json",
        "scp-protect-sessiongate-state.json",
        "scp-protect-sessiongate.json",
    ]


@pytest.mark.parametrize("name", SCP_SAMPLES)
def test_scp_samples_fit_the_scp_size_limit(name: str) -> None:
    """An SCP is at most 5,120 characters, spaces and line breaks included when it is saved through the
    API or the CLI ("Quotas and service limits for AWS Organizations"; the console strips them): each
    sample fits as written, once its EDIT- values are filled in, and leaves room compact."""
    text = (cfn.ROOT / "docs" / name).read_text()
    assert "EDIT-" in text  # the values to replace are marked
    assert len(_edited(text)) <= 5120
    assert len(json.dumps(json.loads(text), separators=(",", ":"))) <= 4096


# ---------------------------------------------------------------- dedicated engine account topology
def _member_template() -> dict[str, Any]:
    from tests.support.template import MEMBER_TEMPLATE, template

    return template(MEMBER_TEMPLATE)


def test_member_stack_holds_no_engine_state() -> None:
    """In the recommended topology a workload account holds SessionGate's member role, two policies and a
    rules that only forward session-tag and slot-tag events: its administrators have nothing of the engine
    (functions, tables, schedules, keys, topics) to change."""
    resources = _member_template()["Resources"]
    types = {r["Type"] for r in resources.values()}
    assert types == {
        "AWS::IAM::Role",
        "AWS::IAM::ManagedPolicy",
        "AWS::Events::Rule",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
    }
    rules = [r for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    assert len(rules) == 4  # session tags, IAM slot tags, EC2 instance slot tags (issue 15), launches
    for rule in rules:
        [target] = rule["Properties"]["Targets"]
        assert target["Arn"]["Fn::Sub"].endswith(":${EngineAccountId}:event-bus/default")


def test_member_accounts_forward_slot_tag_changes_to_the_reconciler() -> None:
    """Issue 16: the member rule forwards what the engine's reconciler rule repairs, the member role's own
    tag calls included (REVIEW-A F1)."""
    from tests.support.template import resource

    forward = _member_template()["Resources"]["SlotTagChangeForwardRule"]["Properties"]
    [engine_rule] = [
        r["Properties"]["Pattern"]
        for r in [resource("ReconcileGrantsFunction")["Properties"]["Events"]["SlotTagChanges"]]
    ]
    pattern = forward["EventPattern"]
    assert pattern["detail"] == {k: v for k, v in engine_rule["detail"].items() if k != "userIdentity"}
    # REVIEW-A F1: the member role's own tag calls too (the engine's grants tag through it).
    assert "userIdentity" not in pattern["detail"]
    [target] = forward["Targets"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["SessionTagForwardRole", "Arn"]}


def test_member_accounts_forward_session_tag_events_to_the_engine_alert() -> None:
    """Finding 3 (detective) where operators are: the member rule matches what the engine rule matches,
    forwards it with a role that can only put events on the engine account's default bus, and the
    engine accepts those events from its member accounts only."""
    from tests.support.template import resource

    member = _member_template()["Resources"]
    forward = member["SessionTagForwardRule"]["Properties"]
    engine_rule = resource("SessionTagAlertRule")["Properties"]
    assert forward["EventPattern"] == engine_rule["EventPattern"]
    assert forward["State"] == engine_rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    [target] = forward["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SessionTagForwardDeadLetterQueue", "Arn"]}}
    [policy] = member["SessionTagForwardRole"]["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == ("events:PutEvents", target["Arn"])
    bus_policy = resource("MemberSessionTagEvents")
    assert bus_policy["Condition"] == "HasMemberAccounts"
    assert bus_policy["Properties"]["EventBusName"] == "default"
    assert bus_policy["Properties"]["Statement"]["Principal"] == {"AWS": {"Ref": "MemberAccounts"}}
    assert bus_policy["Properties"]["Statement"]["Action"] == "events:PutEvents"


def _member_trust(parameters: dict[str, Any]) -> dict[str, Any]:
    """The member role's trust policy, resolved for ``parameters`` (as CloudFormation would)."""
    member = _member_template()
    params = {k: v.get("Default") for k, v in member["Parameters"].items()} | parameters
    for key, spec in member["Parameters"].items():
        if spec["Type"] == "CommaDelimitedList" and isinstance(params[key], str):
            params[key] = params[key].split(",")
    stack = Stack(name="sessiongate-member", account="222222222222", region=REGION, parameters=params)
    resolver = cfn._Resolver(stack, member)
    role = member["Resources"]["SessionGateMemberRole"]["Properties"]
    return resolver.resolve(role["AssumeRolePolicyDocument"])  # type: ignore[no-any-return]


@pytest.mark.parametrize("with_engine_role_arns", [True, False])
def test_member_role_trusts_exactly_the_engine_roles(with_engine_role_arns: bool) -> None:
    """Finding 7: with EngineRoleArns, a role someone else creates at /sessiongate/ of the engine account
    cannot act in the member account; without, the path is trusted (documented as weaker)."""
    from sandbox.policy import Policy, local_check_authorization_full, principal_node

    engine, member = "111111111111", "222222222222"
    grant = f"arn:aws:iam::{engine}:role/sessiongate/sessiongate-GrantAccessFunctionRole-ABC"
    squatter = f"arn:aws:iam::{engine}:role/sessiongate/squatter"
    parameters = {"EngineAccountId": engine, "ExternalId": "the-external-id"}
    if with_engine_role_arns:
        parameters["EngineRoleArns"] = f"{grant},arn:aws:iam::{engine}:role/sessiongate/other-engine-role"
    trust = _member_trust(parameters)
    target = f"arn:aws:iam::{member}:role/sessiongate/SessionGateMember"
    may_assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

    def assumes(who: str, external_id: str = "the-external-id") -> bool:
        node = principal_node(who, "AROAEXAMPLE", [Policy(who, "admin", may_assume)], trust={})
        context = {"sts:ExternalId": external_id}
        return bool(
            local_check_authorization_full(
                node, "sts:AssumeRole", target, context, resource_policy=trust, resource_owner=member
            )
        )

    assert assumes(grant)
    assert not assumes(grant, "wrong")
    assert not assumes(f"arn:aws:iam::{member}:role/Admin")  # the workload account's own admins
    assert assumes(squatter) is not with_engine_role_arns


# ---------------------------------------------------------------- instance binding (issue 15)
def _ec2_tag(
    call: str, identity: dict[str, Any], keys: list[str], instance: str = "i-0abc"
) -> dict[str, Any]:
    """A CloudTrail EC2 record (CreateTags/DeleteTags: resourcesSet and tagSet items)."""
    parameters = {
        "resourcesSet": {"items": [{"resourceId": instance}]},
        "tagSet": {"items": [{"key": k, "value": "AIDAMALLORY"} for k in keys]},
    }
    return _cloudtrail("ec2.amazonaws.com", call, parameters, identity)


def _run_instances(keys: list[str]) -> dict[str, Any]:
    parameters = {
        "tagSpecificationSet": {
            "items": [{"resourceType": "instance", "tags": [{"key": k, "value": "x"} for k in keys]}]
        }
    }
    return _cloudtrail("ec2.amazonaws.com", "RunInstances", parameters, ADMIN)


def _instance_tag_rule(stack: Stack) -> str:
    [rule] = [
        r.logical_id
        for r in stack.of_type("AWS::Events::Rule")
        if r.logical_id.endswith("InstanceTagChanges")
    ]
    return rule


@pytest.mark.parametrize(
    ("event", "repairs"),
    [
        (_ec2_tag("CreateTags", ADMIN, ["SecurityAllowSessionFor1"]), True),
        (_ec2_tag("CreateTags", IAM_USER, ["Name", "securityallowsessionfor3"]), True),
        (_ec2_tag("DeleteTags", ROOT, ["SECURITYALLOWSESSIONFOR2"]), True),
        (_run_instances(["Name", "SecurityAllowSessionFor1"]), True),
        (_ec2_tag("CreateTags", ADMIN, ["Name"]), False),
        (_run_instances(["Name"]), False),
    ],
)
def test_instance_slot_tag_changes_reach_the_reconciler(
    stack: Stack, event: dict[str, Any], repairs: bool
) -> None:
    """EC2 tag calls naming a slot key (any case), or an instance launched with one, invoke the
    reconciler for those instances."""
    assert _matches(stack, _instance_tag_rule(stack), event) is repairs


def test_the_grant_roles_own_instance_tag_calls_invoke_the_reconciler(stack: Stack) -> None:
    """REVIEW-A F1: a CreateTags landing after its grant was revoked is repaired within a minute."""
    role = stack.resources["GrantAccessFunctionRole"].arn
    assert _matches(
        stack, _instance_tag_rule(stack), _ec2_tag("CreateTags", _assumed(role), ["SecurityAllowSessionFor1"])
    )


@pytest.mark.parametrize(
    "role", ["RevokeAccessFunctionRole", "ReconcileGrantsFunctionRole", "RequestApiFunctionRole"]
)
def test_the_untag_only_roles_instance_calls_do_not_invoke_the_reconciler(stack: Stack, role: str) -> None:
    event = _ec2_tag("DeleteTags", _assumed(stack.resources[role].arn), ["SecurityAllowSessionFor1"])
    assert not _matches(stack, _instance_tag_rule(stack), event)


def _launch(state: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "launch",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": ACCOUNT,
        "time": "2026-11-30T07:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0abc"],
        "detail": {"instance-id": "i-0abc", "state": state},
    }


@pytest.mark.parametrize(("state", "repairs"), [("pending", True), ("running", True), ("stopped", False)])
def test_every_instance_launch_reaches_the_reconciler(stack: Stack, state: str, repairs: bool) -> None:
    """REVIEW-A F3: whatever launched it (Auto Scaling's service-linked role, a launch template,
    CreateFleet), a launched instance's slot tags are repaired."""
    [rule] = [
        r.logical_id for r in stack.of_type("AWS::Events::Rule") if r.logical_id.endswith("InstanceLaunches")
    ]
    assert _matches(stack, rule, _launch(state)) is repairs
    [target] = stack.resources[rule].properties["Targets"]
    assert target["Arn"] == stack.resources["ReconcileGrantsFunction"].arn


def test_member_accounts_forward_instance_launches_to_the_reconciler() -> None:
    from tests.support.template import resource

    forward = _member_template()["Resources"]["InstanceLaunchForwardRule"]["Properties"]
    engine_rule = resource("ReconcileGrantsFunction")["Properties"]["Events"]["InstanceLaunches"][
        "Properties"
    ]
    assert forward["EventPattern"] == engine_rule["Pattern"]
    [target] = forward["Targets"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["SessionTagForwardRole", "Arn"]}


def test_member_accounts_forward_instance_slot_tag_changes_to_the_reconciler() -> None:
    from tests.support.template import resource

    forward = _member_template()["Resources"]["InstanceTagChangeForwardRule"]["Properties"]
    engine_rule = resource("ReconcileGrantsFunction")["Properties"]["Events"]["InstanceTagChanges"][
        "Properties"
    ]
    pattern = forward["EventPattern"]
    assert pattern["detail"] == {
        k: v for k, v in engine_rule["Pattern"]["detail"].items() if k != "userIdentity"
    }
    assert "userIdentity" not in pattern["detail"]  # the member role's own tag calls too (REVIEW-A F1)
    [target] = forward["Targets"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["SessionTagForwardRole", "Arn"]}
