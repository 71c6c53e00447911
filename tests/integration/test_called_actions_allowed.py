"""Every AWS action a function calls is allowed by that function's role in the template.

The functions run their real code paths in the sandbox (moto + the SSM fake) through scenarios that cover
grant (principal and instance binding), revoke (scheduled and through the request API), the reconciler
(steady run, tag events, sweep) and the request API's routes. Each call is recorded with its parameters
(botocore's ``provide-client-params`` hook, as bench/api_calls.py counts calls) and asked of the IAM
evaluator over the template's policies (principalmapper, as in test_engine_permissions.py), with the
resource and the tag condition keys the call carries. moto does not enforce IAM, so a call the role lacks
(the revoke's BatchGetItem of REVIEW-A F2) passes every other test; here it fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.policy import SessionChecker
from sandbox.scenario import runner as running
from sandbox.scenario.schema import load
from sandbox.world import ACCOUNT, REGION, World

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
# Together: grant in both bindings, scheduled and API revokes, the reconciler's three triggers, the API,
# (session-logging) the preferences read, the usage recorded and the weekly usage report, and
# (slack-approval) the chat interactions endpoint, the chat notifier and the request API's link route.
PLAYED = [
    "walkthrough.yaml",
    "instance-binding.yaml",
    "drift.yaml",
    "native-api.yaml",
    "session-logging.yaml",
    "slack-approval.yaml",
]

Call = tuple[str, str, str, dict[str, Any]]  # (function, "service:Operation", operation, params)
Request = tuple[str, str, dict[str, Any]]  # (action, resource ARN, condition context)


def _recorded_run(name: str) -> tuple[list[Call], World]:
    calls: list[Call] = []
    current: list[str] = []
    original_world = running.Runner._world

    def record(service: str) -> Any:
        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            if current:
                calls.append((current[-1], f"{service}:{model.name}", model.name, dict(params)))

        return hook

    def world_recording(self: Any) -> World:
        world = original_world(self)
        moto_client, invoke, ssm_validate = world._moto_client, world.invoke, world.ssm._validate

        def client(service: str) -> Any:
            c = moto_client(service)
            if not getattr(c, "_fixcore_recorded", False):
                c.meta.events.register("provide-client-params.*.*", record(service))
                c._fixcore_recorded = True
            return c

        def recorded_invoke(function_arn: str, event: Any, **kwargs: Any) -> Any:
            current.append(world.functions[function_arn].logical_id)
            try:
                return invoke(function_arn, event, **kwargs)
            finally:
                current.pop()

        def validate(operation: str, params: dict[str, Any]) -> None:
            if current:
                calls.append((current[-1], f"ssm:{operation}", operation, dict(params)))
            ssm_validate(operation, params)

        for service in list(world._clients):
            client(service)
        world._moto_client = client  # type: ignore[method-assign]
        world.invoke = recorded_invoke  # type: ignore[method-assign]
        world.ssm._validate = validate
        return world

    running.Runner._world = world_recording  # type: ignore[method-assign]
    try:
        runner = running.Runner(load(SCENARIOS / name))
        report = runner.run()
    finally:
        running.Runner._world = original_world  # type: ignore[method-assign]
    # These scenarios are not played again by test_sandbox.test_shipped_scenarios_pass: they must pass here.
    failed = [c.as_dict() for c in report.checks if not c.passed]
    assert report.passed, (name, failed, report.failed_invocations)
    assert report.checks, name
    return calls, runner.world


def _tags(params: dict[str, Any]) -> dict[str, Any]:
    """The tag condition keys of a tagging call (aws:TagKeys, aws:RequestTag/<key>)."""
    tags = params.get("Tags")
    keys = params.get("TagKeys")
    context: dict[str, Any] = {}
    if isinstance(tags, list):
        pairs = {t["Key"]: t.get("Value", "") for t in tags}
        context["aws:TagKeys"] = list(pairs)
        # moto's IAM user ids lack the AIDA prefix real ones have ("IAM identifiers", unique identifiers):
        # give it to them, as the template's value patterns expect the real shape.
        context.update({f"aws:RequestTag/{k}": _real_id(v) for k, v in pairs.items() if v})
    if isinstance(keys, list):
        context["aws:TagKeys"] = list(keys)
    return context


def _real_id(value: str) -> str:
    return value if value.startswith(("AIDA", "AROA", "i-")) else f"AIDA{value.upper()}"


def _requests(world: World, action: str, operation: str, params: dict[str, Any]) -> list[Request]:
    """(action, resource ARN, condition context) as IAM authorizes the call."""
    service = action.split(":")[0]
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            kinds = {
                "ConditionCheck": "ConditionCheckItem",
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
            }
            out: list[Request] = []
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                out.append(
                    (f"dynamodb:{kinds[kind]}", arn.format("dynamodb", f"table/{body['TableName']}"), {})
                )
            return out
        if operation == "BatchGetItem":
            return [(action, arn.format("dynamodb", f"table/{t}"), {}) for t in params["RequestItems"]]
        table = f"table/{params['TableName']}"
        if params.get("IndexName"):
            table += f"/index/{params['IndexName']}"
        # The chat roles may touch only their own items of the chat state table (dynamodb:LeadingKeys:
        # the partition key value of the item the call names).
        item = params.get("Key") or params.get("Item") or {}
        if "ChatStateTable" in params["TableName"] and "pk" in item:
            return [(action, arn.format("dynamodb", table), {"dynamodb:LeadingKeys": [item["pk"]["S"]]})]
        return [(action, arn.format("dynamodb", table), {})]
    if service == "iam":
        if "UserName" in params:
            return [(action, f"arn:aws:iam::{ACCOUNT}:user/{params['UserName']}", _tags(params))]
        if "RoleName" in params:
            return [(action, f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}", _tags(params))]
        if "GroupName" in params:
            return [(action, f"arn:aws:iam::{ACCOUNT}:group/{params['GroupName']}", {})]
        return [(action, "*", {})]
    if service == "ec2":
        if "Resources" in params:
            return [(action, arn.format("ec2", f"instance/{r}"), _tags(params)) for r in params["Resources"]]
        return [(action, "*", {})]
    if service == "scheduler" and "Name" in params:
        group = params.get("GroupName", "default")
        out = [(action, arn.format("scheduler", f"schedule/{group}/{params['Name']}"), {})]
        role = (params.get("Target") or {}).get("RoleArn")
        if role:
            out.append(("iam:PassRole", role, {"iam:PassedToService": "scheduler.amazonaws.com"}))
        return out
    if service == "sns":
        # The notification topic's policy refuses publishers other than SessionGate's roles.
        res = world.stack.resources
        if params["TopicArn"] == res["NotificationTopic"].physical_id:
            topic_policy = res["NotificationTopicPolicy"].properties["PolicyDocument"]
            return [(action, params["TopicArn"], {"__resource_policy__": topic_policy})]
        return [(action, params["TopicArn"], {})]
    if service == "sts":
        return [(action, params["RoleArn"], {})]
    if service == "kms":
        # IAM authorizes a KMS call against the key, also when the caller names it by its alias.
        key = str(params.get("KeyId", "*"))
        if "alias/" in key:
            aliases = world.client("kms").list_aliases()["Aliases"]
            key = next(a["TargetKeyId"] for a in aliases if key.endswith(a["AliasName"]))
        # The keys' own policies name the roles that may use them (template.yaml, ApprovalKey): IAM
        # evaluates the key policy with the role's policies.
        key_id = key.rsplit("/", 1)[-1]
        policy = json.loads(world.client("kms").get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        return [(action, arn.format("kms", f"key/{key_id}"), {"__resource_policy__": policy})]
    if service == "ssm" and operation in ("GetParameter", "PutParameter", "GetParameters"):
        name = params.get("Name") or params["Names"][0]
        return [(action, arn.format("ssm", f"parameter/{name.lstrip('/')}"), {})]
    if service == "ssm" and "SessionId" in params:
        return [(action, arn.format("ssm", f"session/{params['SessionId']}"), {})]
    if service == "ssm" and "AutomationExecutionId" in params:
        return [(action, arn.format("ssm", f"automation-execution/{params['AutomationExecutionId']}"), {})]
    if service == "ssm" and "Name" in params and "Document" in operation:
        return [(action, arn.format("ssm", f"document/{params['Name']}"), {})]
    if service == "sqs" and "QueueUrl" in params:
        return [(action, arn.format("sqs", params["QueueUrl"].rsplit("/", 1)[-1]), {})]
    if service == "s3" and "Bucket" in params:
        # The bucket's policy (template.yaml, HistoryBucketPolicy) binds the call as well, with the TLS
        # and encryption-key condition keys the PutObject carries; the SSE-KMS data key is S3's
        # kms:GenerateDataKey on the caller's behalf (kms:ViaService s3), which the key policy allows.
        res = world.stack.resources
        policy = res["HistoryBucketPolicy"].properties["PolicyDocument"]
        target = f"arn:aws:s3:::{params['Bucket']}" + (f"/{params['Key']}" if "Key" in params else "")
        context: dict[str, Any] = {"aws:SecureTransport": "true", "__resource_policy__": policy}
        out = [(action, target, context)]
        if params.get("SSEKMSKeyId"):
            context["s3:x-amz-server-side-encryption-aws-kms-key-id"] = params["SSEKMSKeyId"]
            key_id = world.client("kms").describe_key(KeyId=params["SSEKMSKeyId"])["KeyMetadata"]["KeyId"]
            key_policy = json.loads(
                world.client("kms").get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
            )
            out.append(
                (
                    "kms:GenerateDataKey",
                    arn.format("kms", f"key/{key_id}"),
                    {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "__resource_policy__": key_policy},
                )
            )
        return out
    if service == "events":
        bus = (
            params.get("EventBusName") or (params.get("Entries") or [{}])[0].get("EventBusName") or "default"
        )
        bus_arn = bus if str(bus).startswith("arn:") else arn.format("events", f"event-bus/{bus}")
        # The bus's own policy (template.yaml, EventBusPutGuard) refuses every role but the emitters:
        # IAM evaluates it with the role's policies (the sandbox's EventBridge does not enforce it).
        res = world.stack.resources
        if bus_arn == res["EventBus"].arn:
            guard = {"Version": "2012-10-17", "Statement": [res["EventBusPutGuard"].properties["Statement"]]}
            return [(action, bus_arn, {"__resource_policy__": guard})]
        return [(action, bus_arn, {})]
    if service == "secretsmanager" and "SecretId" in params:
        # The secret's ARN as the function names it (the template's Ref; the sandbox's partial ARN).
        return [(action, str(params["SecretId"]), {})]
    return [(action, "*", {})]


def _role_name(world: World, function: str) -> str:
    return world.stack.resources[f"{function}Role"].physical_id


def test_the_history_backfill_is_allowed_by_the_export_role() -> None:
    """The backfill (a deployer invokes the export function): it scans the two tables and writes the
    history objects; no scenario runs it, so it is invoked here and its calls checked the same way."""
    calls: list[Call] = []
    current: list[str] = []  # the functions running, innermost last: each call is its maker's
    with World() as world:
        function = world.function("ExportHistoryFunction")

        def record(service: str) -> Any:
            def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
                if current:
                    calls.append((current[-1], f"{service}:{model.name}", model.name, dict(params)))

            return hook

        # The export's writes reach the stream consumers (the publisher, then the chat notifier) while
        # it runs: their calls are theirs, checked against their own roles.
        invoke = world.invoke

        def recorded_invoke(function_arn: str, event: Any, **kwargs: Any) -> Any:
            current.append(world.functions[function_arn].logical_id)
            try:
                return invoke(function_arn, event, **kwargs)
            finally:
                current.pop()

        world.invoke = recorded_invoke  # type: ignore[method-assign]

        # One grant in the ledger (as the engine leaves a revoked one): two records to write.
        table = world.stack.resources["GrantsTable"].physical_id
        item = {
            "pk": {"S": "GRANT#rq-1"},
            "kind": {"S": "grant"},
            "grant_id": {"S": "rq-1"},
            "status": {"S": "REVOKED"},
            "origin": {"S": "native"},
            "origin_ref": {"S": "1"},
            "account": {"S": ACCOUNT},
            "instance_id": {"S": "i-0123456789abcdef0"},
            "principal_type": {"S": "user"},
            "principal_name": {"S": "alice"},
            "principal_arn": {"S": f"arn:aws:iam::{ACCOUNT}:user/alice"},
            "requester_arn": {"S": f"arn:aws:iam::{ACCOUNT}:user/alice"},
            "approver_arns": {"L": [{"S": f"arn:aws:iam::{ACCOUNT}:user/bob"}]},
            "duration_minutes": {"N": "10"},
            "created_at": {"S": "2026-01-05T09:00:00Z"},
            "activated_at": {"S": "2026-01-05T09:00:01Z"},
            "revoked_at": {"S": "2026-01-05T09:10:00Z"},
            "revoke_reason": {"S": "expired"},
        }
        world.client("dynamodb").put_item(TableName=table, Item=item)
        for service in ("s3", "dynamodb"):
            world.client(service).meta.events.register("provide-client-params.*.*", record(service))
        answer = world.invoke(
            function.arn, {"backfill": {"since": "2026-01-01", "until": "2026-01-31"}}, trigger="t", sync=True
        )
        assert answer.error is None, answer.error
        checker = SessionChecker(world.client("iam"), REGION, ACCOUNT)
        checked: dict[str, set[str]] = {}
        for maker, action, operation, params in calls:
            role = _role_name(world, maker)
            for act, resource, context in _requests(world, action, operation, params):
                policy = context.pop("__resource_policy__", None)
                assert checker.authorized("role", role, act, resource, context, resource_policy=policy), (
                    maker,
                    act,
                )
                checked.setdefault(maker, set()).add(act)
    assert checked[function.logical_id] == {"dynamodb:Scan", "s3:PutObject", "kms:GenerateDataKey"}


@pytest.mark.parametrize("name", PLAYED)
def test_every_call_is_allowed_by_the_functions_role(name: str) -> None:
    calls, played_world = _recorded_run(name)
    # The IAM evaluator needs the roles as the template made them with the scenario's parameters: a fresh
    # world (moto's state of the played one is gone with its context).
    with World(parameters=dict(played_world.parameters)) as fresh:
        checker = SessionChecker(fresh.client("iam"), REGION, ACCOUNT)
        denied: set[str] = set()
        checked: dict[str, set[str]] = {}
        seen: set[str] = set()
        for function, action, operation, params in calls:
            for act, resource, context in _requests(fresh, action, operation, params):
                key = json.dumps([function, act, resource, context], sort_keys=True, default=str)
                if key in seen:
                    continue
                seen.add(key)
                checked.setdefault(function, set()).add(act)
                role = _role_name(fresh, function)
                policy = context.pop("__resource_policy__", None)
                if not checker.authorized("role", role, act, resource, context, resource_policy=policy):
                    denied.add(f"{function}: {act} on {resource} {context}")
    assert checked, name
    assert not denied, f"{name}: actions called but not allowed by the role:\n" + "\n".join(sorted(denied))
