"""Cold start of each handler: init + first invocation vs ``import boto3``, in fresh processes.

A Lambda cold start pays the handler module's import (init) and then, on the first invocation,
everything deferred to it: boto3, Powertools, settings, the boto3 Session and clients. Each sample is
one fresh process (``bench/cold_start_child.py``) that imports the handler and invokes it once with a
realistic event and the function's environment (template.yaml's Globals + the function's variables,
intrinsics resolved to plausible values); AWS calls are answered in-process by a botocore
``before-send`` handler with canned HTTP responses (no network, no moto), e.g. the grant handler
completes a whole grant; the chat notifier's Slack Web API calls (slack-sdk over ``urllib``, not
botocore) by a stand-in for ``urllib.request.urlopen`` (``cold_start_child.SlackCanned``). A call with
no canned answer, or a first invocation that fails (HTTP >= 400, batch item failures), fails the run.
Measured: wall and CPU time from the start of the measured code to the end of
the first invocation (``init ms``: the handler module's import alone, the old ``bench.cold_import``
figure), peak RSS, the AWS calls made, and in the same run ``import boto3`` alone.

Against the noise of a shared machine: every handler sample runs next to an ``import boto3`` one (boto3
first, then the handler first, by turns), the handlers take turns round after round so each one's
samples spread over the whole run, and a handler's ratio is the median of its samples' ratios to their
neighbours; the table prints their interquartile range next to it. The goal is checked on the medians,
wall and CPU; on a loaded machine the CPU ratio is the steadier one (waiting for a core is not in it).

Bytecode as Lambda has it: Lambda runs code from read-only directories and never writes ``.pyc``, so
what a deployment ships without bytecode is compiled again on every cold start. boto3 (the runtime's,
precompiled) and, by default, the engine layer (``layers/sessiongate/Makefile`` compiles it at build)
load from bytecode; the functions' own ``app.py`` and, with ``--layer-bytecode source``, the layer
(``sessiongate`` and its pinned dependencies, as a layer built without bytecode ships them) are
compiled from source in every sample.

    python -m bench.cold_start [--runs 9] [--repo PATH] [--handler NAME] [--layer-bytecode compiled|source]

``--repo`` measures another checkout (same ``functions/<name>/app.py`` entry points), e.g. an older
commit, with this benchmark's scenarios. Goals (issue 16): <= 2.5x ``import boto3``, <= 80 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "cold_start_child.py"
HANDLERS = {
    "grant_access": "GrantAccessFunction",
    "revoke_access": "RevokeAccessFunction",
    "adapt_change_request": "AdaptChangeRequestFunction",
    "reconcile_grants": "ReconcileGrantsFunction",
    "request_api": "RequestApiFunction",
    "publish_events": "PublishEventsFunction",
    "chat_interactions": "ChatInteractionsFunction",
    "chat_notify": "ChatNotifyFunction",
    "export_history": "ExportHistoryFunction",
}
GOAL_RATIO = 2.5
# The engine layer's third-party packages (layers/sessiongate/requirements.txt and what it pulls in).
LAYER_PACKAGES = ("aws_lambda_powertools", "typing_extensions", "jmespath")
GOAL_RSS_MIB = 80.0
ACCOUNT, REGION, STACK = "123456789012", "us-east-1", "sessiongate"
# Parameters whose template default is empty but which a deployment of the native front door sets.
PLAUSIBLE = {"NativeApproverArns": f"arn:aws:iam::{ACCOUNT}:user/carol"}
EXECUTION = "d0585556-80f6-4522-8dad-dada6d45b67d"
INSTANCE = "i-0a1b2c3d4e5f60718"
ALICE, BOB = f"arn:aws:iam::{ACCOUNT}:user/alice", f"arn:aws:iam::{ACCOUNT}:user/bob"
REQUEST_ID = "req-01JDCOLDSTART0000000000000"
SLACK_TEAM, SLACK_SIGNING = "T0COLDSTART", "cold-start-signing-secret"  # offline only


# -- the function's environment from template.yaml ------------------------------------------------
def _load_template(path: Path) -> dict[str, Any]:
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        pass

    def tag(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", tag)
    with path.open() as f:
        loaded: dict[str, Any] = yaml.load(f, Loader)  # noqa: S506 - SafeLoader subclass
        return loaded


def _physical(template: dict[str, Any], logical: str) -> str:
    resource = template["Resources"].get(logical, {})
    props = resource.get("Properties", {})
    for key in ("TableName", "TopicName", "Name", "ManagedPolicyName", "RoleName", "QueueName"):
        if isinstance(props.get(key), str):
            return str(props[key])
    return f"{STACK}-{logical}"


def _arn(template: dict[str, Any], logical: str) -> str:
    kind = template["Resources"].get(logical, {}).get("Type", "AWS::IAM::Role")
    name = _physical(template, logical)
    return {
        "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/sessiongate/{name}",
        "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{abs(hash(name)) % 10**12:012d}-cold-start",
        "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
        "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT}:policy/{name}",
        "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
    }.get(kind, f"arn:aws:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{name}")


def _resolve(template: dict[str, Any], value: Any) -> str:
    pseudo = {
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": REGION,
        "AWS::Partition": "aws",
        "AWS::StackName": STACK,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if not isinstance(value, dict):
        return str(value)
    if "Ref" in value:
        ref = value["Ref"]
        if ref in pseudo:
            return pseudo[ref]
        if ref in template.get("Parameters", {}):
            default = template["Parameters"][ref].get("Default", "")
            return PLAUSIBLE.get(ref, str(default)) if default in ("", None) else str(default)
        kind = template["Resources"].get(ref, {}).get("Type", "")
        return (
            _arn(template, ref)
            if kind in ("AWS::SNS::Topic", "AWS::IAM::ManagedPolicy", "AWS::SecretsManager::Secret")
            else _physical(template, ref)
        )
    if "Fn::GetAtt" in value:
        return _arn(template, value["Fn::GetAtt"][0])
    if "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        import re

        return re.sub(r"\$\{([^}]+)\}", lambda m: _resolve(template, {"Ref": m.group(1)}), text)
    if "Fn::Join" in value:
        sep: str = value["Fn::Join"][0]
        parts = value["Fn::Join"][1]
        resolved = [_resolve(template, p) for p in (parts if isinstance(parts, list) else [parts])]
        return sep.join(p for p in resolved if p)
    if "Fn::If" in value:
        return _resolve(template, value["Fn::If"][1])
    raise ValueError(f"cold_start: unsupported intrinsic {value}")


def environment(repo: Path, logical: str) -> dict[str, str]:
    template = _load_template(repo / "template.yaml")
    variables = dict(
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    props = template["Resources"][logical]["Properties"]
    variables.update(props.get("Environment", {}).get("Variables", {}))
    env = {k: _resolve(template, v) for k, v in variables.items()}
    # What Lambda's runtime sets (credentials are the execution role's; any value works offline).
    env.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="ASIACOLDSTART",
        AWS_SECRET_ACCESS_KEY="cold-start",  # noqa: S106 - offline, never sent anywhere
        AWS_SESSION_TOKEN="cold-start",  # noqa: S106
        AWS_LAMBDA_FUNCTION_NAME=f"{STACK}-{logical}",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


# -- canned AWS answers ---------------------------------------------------------------------------
def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _xml(operation: str, namespace: str, result: str = "") -> dict[str, str]:
    body = f"<{operation}Result>{result}</{operation}Result>" if result else ""
    return {
        "xml": f'<{operation}Response xmlns="{namespace}">{body}'
        f"<ResponseMetadata><RequestId>cold-start</RequestId></ResponseMetadata></{operation}Response>"
    }


IAM_NS, SNS_NS = "https://iam.amazonaws.com/doc/2010-05-08/", "http://sns.amazonaws.com/doc/2010-03-31/"


def _user(name: str, tags: dict[str, str] | None = None) -> str:
    tag_xml = "".join(f"<member><Key>{k}</Key><Value>{v}</Value></member>" for k, v in (tags or {}).items())
    return (
        f"<Path>/</Path><UserName>{name}</UserName><UserId>AIDA{name.upper():0<17}</UserId>"
        f"<Arn>arn:aws:iam::{ACCOUNT}:user/{name}</Arn><CreateDate>2026-01-05T10:00:00Z</CreateDate>"
        + (f"<Tags>{tag_xml}</Tags>" if tag_xml else "")
    )


def _common(now: datetime) -> dict[str, Any]:
    instance = (
        '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>cold-start'
        "</requestId><reservationSet><item><reservationId>r-0123456789abcdef0</reservationId><ownerId>"
        f"{ACCOUNT}</ownerId><instancesSet><item><instanceId>{INSTANCE}</instanceId><imageId>ami-12c6146b"
        "</imageId><instanceState><code>16</code><name>running</name></instanceState><instanceType>t3.micro"
        "</instanceType><tagSet><item><key>Name</key><value>web-1</value></item></tagSet></item>"
        "</instancesSet></item></reservationSet></DescribeInstancesResponse>"
    )
    return {
        "iam:GetUser": _xml("GetUser", IAM_NS, f"<User>{_user('alice')}</User>"),
        "iam:GetGroup": _xml(
            "GetGroup",
            IAM_NS,
            "<Group><Path>/</Path><GroupName>SessionGateApprovers</GroupName><GroupId>AGPACOLDSTART0000000"
            f"</GroupId><Arn>arn:aws:iam::{ACCOUNT}:group/SessionGateApprovers</Arn><CreateDate>"
            f"2026-01-05T10:00:00Z</CreateDate></Group><Users><member>{_user('bob')}</member></Users>"
            "<IsTruncated>false</IsTruncated>",
        ),
        "iam:TagUser": _xml("TagUser", IAM_NS),
        "iam:UntagUser": _xml("UntagUser", IAM_NS),
        "ec2:DescribeInstances": {"xml": instance},
        "ssm:DescribeInstanceInformation": {
            "json": {"InstanceInformationList": [{"InstanceId": INSTANCE, "PingStatus": "Online"}]}
        },
        "ssm:GetAutomationExecution": {"json": {"AutomationExecution": _execution(now)}},
        "ssm:DescribeAutomationExecutions": {
            "json": {
                "AutomationExecutionMetadataList": [
                    {
                        "AutomationExecutionId": EXECUTION,
                        "AutomationSubtype": "ChangeRequest",
                        "OpsItemId": "oi-0123456789ab",
                        "AutomationExecutionStatus": "Success",
                    }
                ]
            }
        },
        "ssm:GetParameter": {
            "status": 400,
            "json": {"__type": "ParameterNotFound", "message": "parameter not found"},
        },
        "scheduler:CreateSchedule": {
            "json": {"ScheduleArn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/sessiongate/sg-revoke"}
        },
        "scheduler:GetSchedule": {"json": _schedule(now)},
        "dynamodb:UpdateItem": {"json": {}},
        "dynamodb:Query": {"json": {"Items": [], "Count": 0, "ScannedCount": 0}},
        "dynamodb:TransactWriteItems": {"json": {}},
        "dynamodb:DeleteItem": {"json": {}},
        "sns:Publish": _xml("Publish", SNS_NS, "<MessageId>5b3a1c2e-0000-4000-8000-000000000001</MessageId>"),
        "eventbridge:PutEvents": {
            "json": {"FailedEntryCount": 0, "Entries": [{"EventId": "11710aed-b79e-4468-a20b-bb3c0c3b4860"}]}
        },
        "kms:GenerateMac": {
            "json": {"Mac": "Y29sZC1zdGFydA==", "MacAlgorithm": "HMAC_SHA_256", "KeyId": "k"}
        },
        "kms:VerifyMac": {"json": {"MacValid": True, "MacAlgorithm": "HMAC_SHA_256", "KeyId": "k"}},
    }


def _execution(now: datetime) -> dict[str, Any]:
    approved = now - timedelta(seconds=30)
    decision = {
        "Approver": BOB,
        "Decision": "Approve",
        "ApprovalDecisionTime": _iso(approved),
        "Comment": "ok",
    }
    return {
        "AutomationExecutionId": EXECUTION,
        "DocumentName": "AllowSsmSessionStartTemplate",
        "DocumentVersion": "1",
        "AutomationExecutionStatus": "Success",
        "AutomationSubtype": "ChangeRequest",
        "ExecutedBy": ALICE,
        "OpsItemId": "oi-0123456789ab",
        "ChangeRequestName": f"Shell on {INSTANCE} for alice",
        "ExecutionStartTime": (approved - timedelta(minutes=5)).timestamp(),
        "StepExecutions": [
            {
                "StepName": "ApproveSessionAccess",
                "Action": "aws:approve",
                "StepStatus": "Success",
                "ExecutionStartTime": (approved - timedelta(minutes=5)).timestamp(),
                "ExecutionEndTime": approved.timestamp(),
                "Outputs": {"ApprovalStatus": ["Approved"], "ApproverDecisions": [json.dumps(decision)]},
            }
        ],
        "Runbooks": [
            {
                "DocumentName": "AllowSsmSessionStartRunbook",
                "DocumentVersion": "$DEFAULT",
                "Parameters": {
                    "InstanceId": [INSTANCE],
                    "PrincipalType": ["User"],
                    "PrincipalName": ["alice"],
                    "ValidityMinutes": ["10"],
                },
            }
        ],
    }


def _schedule(now: datetime) -> dict[str, Any]:
    due = now + timedelta(minutes=9)
    return {
        "Name": f"sg-revoke-cm-{EXECUTION}",
        "GroupName": "sessiongate",
        "State": "ENABLED",
        "ScheduleExpression": f"at({due.strftime('%Y-%m-%dT%H:%M:%S')})",
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-revoke-access",
            "RoleArn": "r",
        },
    }


def _active_grant(now: datetime, table: str) -> dict[str, Any]:
    """The grant record (and its slot lock) a grant leaves behind: ACTIVE, slot 1, expiring in 9 min."""
    grant_id = f"cm-{EXECUTION}"
    expires = _iso(now + timedelta(minutes=9))
    record = {
        "pk": {"S": f"GRANT#{grant_id}"},
        "grant_id": {"S": grant_id},
        "status": {"S": "ACTIVE"},
        "origin": {"S": "change-manager"},
        "origin_ref": {"S": "oi-0123456789ab"},
        "account": {"S": ACCOUNT},
        "instance_id": {"S": INSTANCE},
        "principal_type": {"S": "user"},
        "principal_name": {"S": "alice"},
        "principal_arn": {"S": ALICE},
        "requester_arn": {"S": ALICE},
        "approver_arns": {"L": [{"S": BOB}]},
        "duration_minutes": {"N": "10"},
        "created_at": {"S": _iso(now - timedelta(minutes=1))},
        "expires_at": {"S": expires},
        "slot": {"N": "1"},
        "schedule_name": {"S": f"sg-revoke-{grant_id}"},
        "bound_user_id": {"S": "AIDAALICE000000000000"},
        "reason": {"S": f"Shell on {INSTANCE} for alice"},
        "denials": {"L": []},
        "live": {"S": "LIVE"},
    }
    return {
        f"{table}|GRANT#{grant_id}": record,
        f"{table}|SLOT#{ALICE}#1": {"pk": {"S": f"SLOT#{ALICE}#1"}, "grant_id": {"S": grant_id}},
    }


def _secret(arn: str) -> dict[str, Any]:
    """GetSecretValue's answer: the Slack signing secret or bot token (offline values)."""
    value = SLACK_SIGNING if "Signing" in arn else "xoxb-cold-start"
    return {
        "json": {
            "ARN": arn,
            "Name": arn.rsplit(":", 1)[-1],
            "VersionId": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            "SecretString": value,
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": 1767225600.0,
        }
    }


def _slack_signed(body: str, timestamp: int) -> dict[str, str]:
    """The headers Slack sends with ``body`` ("Verifying requests from Slack", as sandbox/fake_slack.py)."""
    digest = hmac.new(SLACK_SIGNING.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


def _pending_request(now: datetime) -> dict[str, Any]:
    """A PENDING request's item in the requests table (adapters/request_store.py's ``to_item``) whose
    rule snapshot names a Slack channel."""
    return {
        "request_id": {"S": REQUEST_ID},
        "status": {"S": "PENDING"},
        "pending": {"S": "PENDING"},
        "account": {"S": ACCOUNT},
        "instance_id": {"S": INSTANCE},
        "principal_type": {"S": "user"},
        "principal_name": {"S": "alice"},
        "principal_arn": {"S": ALICE},
        "requester_arn": {"S": ALICE},
        "duration_minutes": {"N": "30"},
        "reason": {"S": "INC-1234 disk full on web-1"},
        "created_at": {"S": _iso(now - timedelta(seconds=2))},
        "pending_expires_at": {"S": _iso(now + timedelta(hours=1))},
        "rule": {"S": "web"},
        "ticket": {"S": "INC-1234"},
        "break_glass": {"BOOL": False},
        "extension_count": {"N": "0"},
        "version": {"N": "1"},
        "reminders_sent": {"N": "0"},
        "instance_tags": {"M": {"Name": {"S": "web-1"}}},
        "history": {"L": [{"M": {"at": {"S": _iso(now)}, "what": {"S": "requested"}}}]},
        "notice_rule": {"M": {"name": {"S": "web"}, "slack_channel": {"S": "#approvals"}}},
    }


def scenario(repo: Path, handler: str) -> dict[str, Any]:
    """Environment, event and canned answers of ``handler``'s first invocation (times relative to now)."""
    now = datetime.now(UTC).replace(microsecond=0)
    env = environment(repo, HANDLERS[handler])
    responses, items = _common(now), {}
    slack: dict[str, Any] = {}  # Slack Web API method -> its JSON answer (cold_start_child.SlackCanned)
    table = env["SESSIONGATE_TABLE"]
    detail = {
        "schema_version": "1",
        "grant_id": f"cm-{EXECUTION}",
        "origin": "change-manager",
        "origin_ref": "oi-0123456789ab",
        "account": ACCOUNT,
        "instance_id": INSTANCE,
        "principal_type": "user",
        "principal_name": "alice",
        "requester_arn": ALICE,
        "approver_arns": [BOB],
        "duration_minutes": 10,
        "not_before": _iso(now - timedelta(seconds=30)),
        "approved_at": _iso(now - timedelta(seconds=30)),
        "reason": f"Shell on {INSTANCE} for alice",
    }
    events = json.loads((ROOT / "events" / "change_request_approved.json").read_text())
    event: dict[str, Any]
    if handler == "grant_access":
        event = {
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "AccessApproved",
            "source": "sessiongate",
            "account": ACCOUNT,
            "time": _iso(now),
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
    elif handler == "revoke_access":
        event = {"grant_id": f"cm-{EXECUTION}", "reason": "expired"}
        items = _active_grant(now, table)
    elif handler == "adapt_change_request":
        event = {**events, "time": _iso(now)}
    elif handler == "reconcile_grants":
        event = {**json.loads((ROOT / "events" / "reconcile_schedule.json").read_text()), "time": _iso(now)}
        items = _active_grant(now, table)
        record = items[f"{table}|GRANT#cm-{EXECUTION}"]
        responses["dynamodb:Query"] = {"json": {"Items": [record], "Count": 1, "ScannedCount": 1}}
        responses["iam:ListEntitiesForPolicy"] = _xml(
            "ListEntitiesForPolicy",
            IAM_NS,
            "<PolicyGroups/><PolicyUsers><member><UserName>alice</UserName><UserId>AIDAALICE000000000000"
            "</UserId></member></PolicyUsers><PolicyRoles/><IsTruncated>false</IsTruncated>",
        )
        responses["iam:GetUser"] = _xml(
            "GetUser", IAM_NS, f"<User>{_user('alice', {'SecurityAllowSessionInstance': INSTANCE})}</User>"
        )
    elif handler in ("publish_events", "export_history"):
        # The ledger's stream record of a grant going ACTIVE: one AccessGranted published, or (export)
        # one JSON Lines object written to the history bucket.
        record = _active_grant(now, table)[f"{table}|GRANT#cm-{EXECUTION}"]
        stream = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/2026-01-01T00:00:00.000"
        change = {"Keys": {"pk": record["pk"]}, "NewImage": record, "SequenceNumber": "100", "SizeBytes": 1}
        event = {
            "Records": [
                {
                    "eventID": "1",
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": REGION,
                    "eventSourceARN": stream,
                    "dynamodb": {**change, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                }
            ]
        }
    elif handler == "request_api":
        event = json.loads((ROOT / "events" / "api_create_request.json").read_text())
        event["requestContext"] = {**event["requestContext"], "requestTimeEpoch": int(now.timestamp() * 1000)}
    elif handler == "chat_interactions":
        # A signed ``/sessiongate link`` slash command: secret read, replay check, a one-time code.
        responses["secrets-manager:GetSecretValue"] = _secret(env["SESSIONGATE_SLACK_SIGNING_SECRET"])
        body = urlencode(
            {
                "team_id": SLACK_TEAM,
                "team_domain": "example",
                "channel_id": "D0COLDSTART",
                "user_id": "U0ALICE",
                "user_name": "alice",
                "command": "/sessiongate",
                "text": "link",
                "api_app_id": "A0COLDSTART",
                "response_url": f"https://hooks.slack.com/commands/{SLACK_TEAM}/1/cold-start",
                "trigger_id": "1.2.cold-start",
            }
        )
        event = {
            "resource": "/slack/interactions",
            "path": "/slack/interactions",
            "httpMethod": "POST",
            "headers": _slack_signed(body, int(now.timestamp())),
            "body": body,
            "isBase64Encoded": False,
            "requestContext": {"requestTimeEpoch": int(now.timestamp() * 1000), "stage": "prod"},
        }
    elif handler == "chat_notify":
        # AccessRequested of a request whose rule names a channel: the record read, the instance's
        # tags, the bot token, chat.postMessage (answered in the child, not over the network), saved.
        responses["secrets-manager:GetSecretValue"] = _secret(env["SESSIONGATE_SLACK_BOT_TOKEN"])
        request = _pending_request(now)
        items = {f"{env['SESSIONGATE_REQUESTS_TABLE']}|{REQUEST_ID}": request}
        slack["chat.postMessage"] = {"ok": True, "channel": "C0APPROVALS", "ts": "1767225600.000100"}
        message = {
            "event_type": "AccessRequested",
            "request_id": REQUEST_ID,
            "event_id": f"AccessRequested/{REQUEST_ID}",
            "at": _iso(now),
            "requester_arn": ALICE,
            "instance_id": INSTANCE,
        }
        topic = env.get("SESSIONGATE_TOPIC_ARN") or f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-lifecycle"
        event = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": f"{topic}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
                    "Sns": {
                        "Type": "Notification",
                        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                        "TopicArn": topic,
                        "Subject": None,
                        "Message": json.dumps(message),
                        "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                        "MessageAttributes": {},
                    },
                }
            ]
        }
    if handler == "export_history":
        responses["s3:PutObject"] = {"xml": ""}  # (PutObject's answer is its headers; the body is empty)
    template = _load_template(repo / "template.yaml")
    keys = {
        _physical(template, logical): [k["AttributeName"] for k in r["Properties"]["KeySchema"]]
        for logical, r in template["Resources"].items()
        if r["Type"] == "AWS::DynamoDB::Table"
    }
    return {
        "environment": env,
        "event": event,
        "responses": responses,
        "items": items,
        "keys": keys,
        "slack": slack,
    }


# -- measurement ----------------------------------------------------------------------------------
def uncached(repo: Path, layer_bytecode: str) -> list[str]:
    """The paths whose modules a Lambda cold start compiles from source (see the module's docstring)."""
    import importlib.util

    paths = [str(repo / "functions")]
    if layer_bytecode == "source":
        paths.append(str(repo / "layers"))
        for name in LAYER_PACKAGES:
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.origin:
                paths.append(spec.origin.removesuffix("__init__.py"))
    return paths


def run_child(repo: Path, what: str, scenario_file: str, layer_bytecode: str = "compiled") -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONGATE_", "POWERTOOLS_", "AWS_"))}
    env["PYTHONPATH"] = f"{repo / 'layers' / 'sessiongate'}{os.pathsep}{repo}"
    env["COLD_START_UNCACHED"] = os.pathsep.join(uncached(repo, layer_bytecode)) if what != "boto3" else ""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, str(CHILD), what, scenario_file],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    marker = [line for line in out.stdout.splitlines() if line.startswith("COLD_START ")]
    if out.returncode != 0 or not marker:
        raise RuntimeError(f"cold start of {what} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    sample = dict(json.loads(marker[-1].removeprefix("COLD_START ")))
    result = sample.get("result")
    if isinstance(result, dict) and (result.get("batchItemFailures") or result.get("statusCode", 200) >= 400):
        # A first invocation that failed measures a shorter path than the real one: refused.
        raise RuntimeError(f"cold start of {what} did not succeed: {json.dumps(result)[:600]}")
    return sample


def _summary(samples: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    """One handler's figures: medians of its samples, and its ratios to ``import boto3`` as the median
    (and quartiles) of each sample's ratio to the ``import boto3`` sample run next to it."""

    def ratios(key: str) -> list[float]:
        return sorted(s[key] / b[key] for s, b in zip(samples, floors, strict=True))

    def quartiles(values: list[float]) -> tuple[float, float]:
        if len(values) < 2:
            return values[0], values[0]
        q = statistics.quantiles(values, n=4, method="inclusive")
        return q[0], q[2]

    wall, cpu = ratios("wall"), ratios("cpu")
    first = samples[0]
    result = first["result"]
    return {
        "wall_ratio": statistics.median(wall),
        "wall_quartiles": quartiles(wall),
        "cpu_ratio": statistics.median(cpu),
        "cpu_quartiles": quartiles(cpu),
        "init_ms": statistics.median(s["init"] for s in samples) * 1000,
        "wall_ms": statistics.median(s["wall"] for s in samples) * 1000,
        "cpu_ms": statistics.median(s["cpu"] for s in samples) * 1000,
        "rss_mib": statistics.median(s["rss_mib"] for s in samples),
        "calls": len(first["calls"]),
        "call_names": first["calls"],
        "raw_result": result,
        "result": result.get("result") if isinstance(result, dict) else result,
        "status": result.get("statusCode") if isinstance(result, dict) else None,
    }


def measure_all(
    repo: Path, names: list[str], runs: int, layer_bytecode: str = "compiled"
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Every handler in ``names``, ``runs`` samples each, interleaved: round after round, each handler
    once next to one ``import boto3`` sample (boto3 first in even rounds, the handler first in odd
    ones; the handlers' order rotates each round). On a shared machine the load changes from one
    second to the next: a ratio of neighbours, over samples spread across the whole run, is steadier
    than a ratio of two medians taken minutes apart. Returns ``import boto3``'s figures (medians of
    all its samples) and each handler's (``_summary``)."""
    files: dict[str, str] = {}
    try:
        for name in names:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(scenario(repo, name), f)
            files[name] = f.name
        # Warm the bytecode cache of what Lambda loads from bytecode, so every run compares like with like.
        for name in names:
            run_child(repo, name, files[name], layer_bytecode)
        floor_samples = [run_child(repo, "boto3", "")]
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        floors: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_ in range(runs):
            shift = round_ % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                if round_ % 2 == 0:
                    floors[name].append(run_child(repo, "boto3", ""))
                    samples[name].append(run_child(repo, name, files[name], layer_bytecode))
                else:
                    samples[name].append(run_child(repo, name, files[name], layer_bytecode))
                    floors[name].append(run_child(repo, "boto3", ""))
                floor_samples.append(floors[name][-1])
    finally:
        for path in files.values():
            os.unlink(path)
    floor = {
        "wall_ms": statistics.median(s["wall"] for s in floor_samples) * 1000,
        "cpu_ms": statistics.median(s["cpu"] for s in floor_samples) * 1000,
        "rss_mib": statistics.median(s["rss_mib"] for s in floor_samples),
        "samples": len(floor_samples),
    }
    return floor, {name: _summary(samples[name], floors[name]) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="samples per handler (default 9)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout to measure (default: this one)")
    parser.add_argument("--handler", action="append", choices=sorted(HANDLERS), help="only these handlers")
    parser.add_argument("--verbose", action="store_true", help="print each handler's AWS calls and result")
    parser.add_argument(
        "--layer-bytecode",
        choices=("compiled", "source"),
        default="compiled",
        help="the engine layer as built with .pyc (layers/sessiongate/Makefile, default) or without",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    repo = args.repo.resolve()
    started = time.perf_counter()
    load = os.getloadavg()[0]
    names = args.handler or list(HANDLERS)
    floor, results = measure_all(repo, names, args.runs, args.layer_bytecode)
    print(
        f"{'handler':<22}{'init ms':>8}{'wall ms':>8}{'x boto3':>8}{'(IQR)':>11}{'cpu ms':>8}{'x boto3':>8}"
        f"{'(IQR)':>11}{'RSS MiB':>8}{'calls':>6}  result"
    )
    print(
        f"{'import boto3':<22}{'':>8}{floor['wall_ms']:>8.0f}{1:>8.2f}{'':>11}{floor['cpu_ms']:>8.0f}"
        f"{1:>8.2f}{'':>11}{floor['rss_mib']:>8.1f}"
    )
    worst_ratio, worst_cpu, worst_rss, worst_q3 = 0.0, 0.0, 0.0, 0.0
    for name in names:
        m = results[name]
        ratio, cpu_ratio = m["wall_ratio"], m["cpu_ratio"]
        worst_ratio, worst_rss = max(worst_ratio, ratio), max(worst_rss, m["rss_mib"])
        worst_cpu = max(worst_cpu, cpu_ratio)
        worst_q3 = max(worst_q3, m["wall_quartiles"][1], m["cpu_quartiles"][1])
        outcome = m["result"] if m["status"] is None else f"HTTP {m['status']}"
        wall_iqr = "{:.2f}-{:.2f}".format(*m["wall_quartiles"])
        cpu_iqr = "{:.2f}-{:.2f}".format(*m["cpu_quartiles"])
        print(
            f"{name:<22}{m['init_ms']:>8.0f}{m['wall_ms']:>8.0f}{ratio:>8.2f}{wall_iqr:>11}{m['cpu_ms']:>8.0f}"
            f"{cpu_ratio:>8.2f}{cpu_iqr:>11}{m['rss_mib']:>8.1f}{m['calls']:>6}  {outcome}"
        )
        if args.verbose:
            print(f"    calls: {' '.join(m['call_names'])}\n    result: {json.dumps(m['raw_result'])[:600]}")
    ok = max(worst_ratio, worst_cpu) <= GOAL_RATIO and worst_rss <= GOAL_RSS_MIB  # wall and CPU
    print(
        f"cold start (init + first invocation) of {repo.name}: worst {worst_ratio:.2f}x import boto3 "
        f"({floor['wall_ms']:.0f} ms; CPU {worst_cpu:.2f}x; worst upper quartile {worst_q3:.2f}x) and "
        f"{worst_rss:.0f} MiB (goals <= {GOAL_RATIO}x, <= {GOAL_RSS_MIB:.0f} MiB), "
        f"{args.runs} fresh processes per handler each next to an import boto3 one (median of the "
        f"ratios), layer bytecode {args.layer_bytecode}, load average {load:.1f} at the start, "
        f"{time.perf_counter() - started:.0f} s -> {'OK' if ok else 'GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
