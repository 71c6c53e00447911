"""Opt-in: the real-service behaviours issues 17 (audit evidence) and 19 (Slack) rely on, which moto and
the sandbox do not model: the Session Manager preferences as GetDocument answers them, S3 bucket
policies, SNS topic policies, Secrets Manager resource policies, EventBridge bus policies, Athena
running the shipped named queries, and the chat API refusing an unsigned click.

    SESSIONGATE_AWS_TESTS=1 AWS_PROFILE=... .venv/bin/pytest -m aws tests/aws/test_audit_and_chat.py
    # the stack's tests, as a principal that is NOT one of its DeployerArns (an account admin without
    # IAM rights is the insider these controls are for):
    SESSIONGATE_AWS_TESTS=1 SESSIONGATE_AWS_STACK=sessiongate AWS_PROFILE=... \
        .venv/bin/pytest -m aws tests/aws/test_audit_and_chat.py
    # the Athena queries need the auditor policy (stack output HistoryAuditorPolicyArn) on the caller:
    SESSIONGATE_AWS_AUDITOR=1 ...

Nothing here writes anything that stays: every write is expected to be refused.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(
        os.environ.get("SESSIONGATE_AWS_TESTS") != "1", reason="real-AWS test: set SESSIONGATE_AWS_TESTS=1"
    ),
]


@pytest.fixture(scope="module")
def session() -> Any:
    import boto3

    return boto3.session.Session()


@pytest.fixture(scope="module")
def stack(session: Any) -> dict[str, str]:
    name = os.environ.get("SESSIONGATE_AWS_STACK")
    if not name:
        pytest.skip("set SESSIONGATE_AWS_STACK to a deployed SessionGate stack")
    [described] = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def test_session_manager_preferences_read_as_the_grant_reads_them(session: Any) -> None:
    """RequireSessionLogging (issue 17): GetDocument of SSM-SessionManagerRunShell answers JSON content
    the check parses, or InvalidDocument where the account never saved preferences (the fake's two
    answers)."""
    from sessiongate.adapters.sessions import Sessions
    from sessiongate.core.session_logging import PreferencesUnreadable

    problem = ""
    try:
        preferences = Sessions(session.client("ssm")).preferences()
    except PreferencesUnreadable as exc:
        problem = str(exc)
    if problem:
        assert "SSM-SessionManagerRunShell" in problem
        return
    # A readable document parses; its destination is None or names where logs go.
    destination = preferences.destination()
    assert destination is None or {"s3_bucket", "log_group"} & set(destination)


def test_describe_sessions_owner_is_an_arn_of_the_caller_form(session: Any) -> None:
    """Usage (issue 17) matches a session's Owner with the grant's principal as an ARN: every Owner the
    account's history shows is an IAM or STS ARN."""
    history = session.client("ssm").describe_sessions(State="History", MaxResults=20)["Sessions"]
    if not history:
        pytest.skip("no Session Manager history in this account and Region")
    for item in history:
        assert item["Owner"].startswith(("arn:aws:iam::", "arn:aws:sts::", "arn:aws-")), item["Owner"]


def test_nobody_but_the_export_writes_or_deletes_history(session: Any, stack: dict[str, str]) -> None:
    """The history bucket's policy (issue 17): an admin's PutObject and DeleteObject are refused."""
    from botocore.exceptions import ClientError

    s3 = session.client("s3")
    key = "history/v1/dt=2026-01-01/sessiongate-probe.jsonl"
    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=stack["HistoryBucketName"], Key=key, Body=b"{}\n")
    assert _code(put.value) == "AccessDenied"
    with pytest.raises(ClientError) as delete:
        s3.delete_object(Bucket=stack["HistoryBucketName"], Key=key)
    assert _code(delete.value) == "AccessDenied"


def test_nobody_but_sessiongate_publishes_lifecycle_events(session: Any, stack: dict[str, str]) -> None:
    """The notification topic's policy (review of issue 19): a forged AccessRequested is refused."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        session.client("sns").publish(
            TopicArn=stack["NotificationTopicArn"],
            Message=json.dumps({"event_type": "AccessRequested", "request_id": "sessiongate-probe"}),
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": "AccessRequested"}},
        )
    assert _code(raised.value) in {"AuthorizationError", "AccessDenied", "AccessDeniedException"}


def test_nobody_but_the_chat_function_reads_the_signing_secret(session: Any, stack: dict[str, str]) -> None:
    """The Slack signing secret's resource policy (issue 19): an admin's GetSecretValue is refused."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raised:
        session.client("secretsmanager").get_secret_value(SecretId=stack["SlackSigningSecretArn"])
    assert _code(raised.value) == "AccessDeniedException"


def test_an_unsigned_click_is_refused_with_401(stack: dict[str, str]) -> None:
    """The chat API (issue 19) answers a request without Slack's signature 401, before reading it."""
    request = urllib.request.Request(  # noqa: S310 (the stack's own https endpoint)
        stack["ChatInteractionsUrl"],
        data=b"payload=%7B%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert raised.value.code == 401


@pytest.mark.skipif(
    os.environ.get("SESSIONGATE_AWS_AUDITOR") != "1",
    reason="needs the auditor policy: SESSIONGATE_AWS_AUDITOR=1",
)
def test_the_shipped_named_queries_run_in_the_audit_workgroup(session: Any, stack: dict[str, str]) -> None:
    """Athena (issue 17): each named query of the workgroup runs on the Glue table (partition
    projection, JSON SerDe) without error; moto does not execute SQL."""
    athena = session.client("athena")
    workgroup = stack["AuditWorkGroupName"]
    ids = athena.list_named_queries(WorkGroup=workgroup)["NamedQueryIds"]
    queries = athena.batch_get_named_query(NamedQueryIds=ids)["NamedQueries"]
    assert {q["Name"] for q in queries} >= {
        "sessiongate-who-had-access",
        "sessiongate-approved-by-whom",
        "sessiongate-grants-per-person",
    }
    for query in queries:
        started = athena.start_query_execution(
            QueryString=query["QueryString"],
            QueryExecutionContext={"Database": query["Database"]},
            WorkGroup=workgroup,
        )
        state = "QUEUED"
        for _ in range(60):
            execution = athena.get_query_execution(QueryExecutionId=started["QueryExecutionId"])
            state = execution["QueryExecution"]["Status"]["State"]
            if state in {"SUCCEEDED", "FAILED", "CANCELLED"}:
                break
            time.sleep(2)
        assert state == "SUCCEEDED", (query["Name"], execution["QueryExecution"]["Status"])
