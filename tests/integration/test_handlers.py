"""The Lambda handlers end to end on moto: Change Manager event -> adapter -> grant -> revoke.

Also counts the AWS calls of one grant and one revoke (botocore before-call hooks).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.core.model import AccessApproved
from sessiongate.errors import ConfigError, TransientError
from tests.conftest import load_event
from tests.support.stack import Stack, change_request, environment

EXECUTION_ID = "d0585556-80f6-4522-8dad-dada6d45b67d"


@dataclass
class LambdaContext:
    function_name: str = "sessiongate-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sessiongate-test"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"


# The stack of the running test's ``deployed`` fixture: it builds each handler's dependencies.
_DEPLOYED: list[Stack] = []


def handler(name: str) -> Any:
    """``functions/<name>/app.py``'s handler, its dependencies injected by the deployed stack."""
    return _DEPLOYED[-1].handler(name)


@pytest.fixture
def deployed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The handlers as Lambda runs them: configuration from the environment, clients injected."""
    for name, value in environment(stack.settings).items():
        monkeypatch.setenv(name, value)
    stack.deploy(client=stack.client)
    _DEPLOYED.append(stack)
    # The sample change request's approver (bob) is a member of the stack's approver group.
    stack.approvers(*AccessApproved.from_detail(load_event("access_approved.json")["detail"]).approver_arns)
    yield stack
    _DEPLOYED.remove(stack)


def test_the_adapter_handler_waits_only_as_long_as_lambda_lets_it(deployed: Stack) -> None:
    """The handler hands Lambda's remaining time to the bounded re-read: with 4 s left it does not
    wait at all and raises (Lambda retries the event) instead of being killed mid-wait."""
    stack = deployed
    request = AccessApproved.from_detail(load_event("access_approved.json")["detail"])
    execution = change_request(request)
    execution["AutomationExecutionStatus"] = "PendingApproval"
    execution["StepExecutions"][0].update(StepStatus="Waiting", Outputs={})
    stack.ssm.add_execution(execution)

    @dataclass
    class Ending(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return 4000

    start = stack.clock.now()
    with pytest.raises(TransientError, match="not shown as approved yet"):
        handler("adapt_change_request")(load_event("change_request_approved.json"), Ending())
    assert stack.clock.now() == start
    assert stack.bus_events() == []


def test_change_manager_approval_flows_through_all_three_handlers(deployed: Stack) -> None:
    stack = deployed
    stack.user("alice")
    instance = stack.instance()
    request = AccessApproved.from_detail(
        {**load_event("access_approved.json")["detail"], "instance_id": instance}
    )
    stack.ssm.add_execution(change_request(request))

    adapted = handler("adapt_change_request")(load_event("change_request_approved.json"), LambdaContext())
    assert adapted == {"result": "emitted", "grant_id": f"cm-{EXECUTION_ID}"}
    [approved] = stack.bus_events()

    stack.calls.clear()
    stack.ssm.calls.clear()
    granted = handler("grant_access")(approved, LambdaContext())
    grant_calls = {**stack.calls, **Counter(f"ssm:{c}" for c in stack.ssm.calls)}
    assert granted["result"] == "granted"
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": instance}

    stack.clock.advance(timedelta(minutes=10))
    schedule = stack.schedules()[f"sg-revoke-cm-{EXECUTION_ID}"]
    stack.calls.clear()
    revoked = handler("revoke_access")(json.loads(schedule["Target"]["Input"]), LambdaContext())
    revoke_calls = dict(stack.calls)
    assert revoked["result"] == "revoked"
    assert stack.tags("user", "alice") == {}

    # The AWS calls of one grant and one revoke, as recorded here (reported in the README).
    assert grant_calls == {
        "iam:GetUser": 1,
        "ec2:DescribeInstances": 1,
        "ssm:GetAutomationExecution": 1,
        "iam:GetGroup": 1,
        "dynamodb:TransactWriteItems": 1,
        "iam:TagUser": 1,
        "scheduler:CreateSchedule": 1,
    }
    # No sns:Publish: the notifications come from the ledger's stream (functions/publish_events).
    assert revoke_calls == {
        "dynamodb:BatchGetItem": 1,
        "iam:UntagUser": 1,
        "dynamodb:TransactWriteItems": 1,
    }


def test_sample_revoke_event_for_an_unknown_grant_is_ignored(deployed: Stack) -> None:
    result = handler("revoke_access")(load_event("revoke_schedule.json"), LambdaContext())
    assert result == {"result": "ignored", "grant_id": f"cm-{EXECUTION_ID}", "why": "unknown grant"}


def test_sample_access_approved_for_missing_principal_is_denied(deployed: Stack) -> None:
    request = AccessApproved.from_detail(load_event("access_approved.json")["detail"])
    deployed.ssm.add_execution(change_request(request))
    result = handler("grant_access")(load_event("access_approved.json"), LambdaContext())
    assert result["result"] == "denied"
    assert {d["code"] for d in result["denials"]} >= {"principal_not_found", "instance_not_found"}


def test_missing_configuration_fails_at_cold_start(deployed: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONGATE_TABLE")
    monkeypatch.setenv("SESSIONGATE_MAX_VALIDITY_MINUTES", "lots")
    with pytest.raises(ConfigError) as err:
        handler("grant_access")(load_event("access_approved.json"), LambdaContext())
    assert "SESSIONGATE_TABLE is required" in str(err.value)
    assert "SESSIONGATE_MAX_VALIDITY_MINUTES: must be an integer" in str(err.value)


def test_sample_tag_event_repairs_the_principal_and_the_scheduled_run_looks_only_at_overdue_grants(
    deployed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """events/reconcile_schedule.json (the rate() rule) reads only overdue grants: a hand-made slot tag
    stays; events/slot_tag_change.json (CloudTrail's record of that TagUser) removes it."""
    monkeypatch.setenv("SESSIONGATE_OPERATOR_POLICY_ARN", deployed.operator_policy())
    deployed.user("alice", tags={"SecurityAllowSessionInstance2": "i-0123456789abcdef0"})

    steady = handler("reconcile_grants")(load_event("reconcile_schedule.json"), LambdaContext())
    assert steady["result"] == "reconciled"
    assert deployed.tags("user", "alice") == {"SecurityAllowSessionInstance2": "i-0123456789abcdef0"}

    repaired = handler("reconcile_grants")(load_event("slot_tag_change.json"), LambdaContext())
    assert repaired["result"] == "reconciled"
    assert repaired["repairs"]["drift_removed"] == ["arn:aws:iam::123456789012:user/alice#2"]
    assert deployed.tags("user", "alice") == {}


def test_grant_without_the_break_glass_approver_of_record_fails_at_cold_start(
    deployed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The native verifier compares against it: missing, every break-glass grant would be denied."""
    monkeypatch.setenv("SESSIONGATE_REQUESTS_TABLE", "sessiongate-requests")
    monkeypatch.delenv("SESSIONGATE_BREAK_GLASS_APPROVER_ARN", raising=False)
    with pytest.raises(ConfigError, match="SESSIONGATE_BREAK_GLASS_APPROVER_ARN is required"):
        handler("grant_access")(load_event("access_approved.json"), LambdaContext())


@pytest.mark.parametrize(
    ("name", "event", "expected"),
    [
        ("revoke_access", "revoke_schedule.json", "ignored"),
        ("grant_access", "access_approved.json", "denied"),
        ("reconcile_grants", "reconcile_schedule.json", "reconciled"),
    ],
)
def test_each_handler_builds_its_own_dependencies_when_none_are_injected(
    deployed: Stack, name: str, event: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Lambda runs: no ``deps``, so the handler builds the process-wide ones (wiring's cached
    builders, boto3 clients from the one Session; moto answers them here)."""
    import importlib

    from sessiongate import wiring

    monkeypatch.setenv("SESSIONGATE_OPERATOR_POLICY_ARN", deployed.operator_policy())
    for cached in (wiring.engine, wiring.change_request_adapter, wiring.request_api):
        cached.cache_clear()
    module = importlib.import_module(f"functions.{name}.app")
    try:
        result = module.lambda_handler(load_event(event), LambdaContext())
        built = wiring.engine(module.ROLE)
    finally:
        for cached in (wiring.engine, wiring.change_request_adapter, wiring.request_api):
            cached.cache_clear()
    assert result["result"] == expected
    assert built.settings.table_name == deployed.settings.table_name
