"""Delete everything the state file says the run created; each step independent, each recorded.

Order matters only for success, never for trying: keys and policies go before the user (IAM refuses to
delete a user that still has them: DeleteConflict), the user before the stack (CloudFormation cannot
delete the operator policy while it is attached). The stack's DynamoDB tables have ``DeletionPolicy:
Retain`` (template.yaml): their names are read from the stack before it is deleted and the tables are
deleted once the stack is gone. A step that fails is recorded and the next one is tried anyway;
whatever is left stays in the state file for ``python -m smoke teardown``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from . import state as state_file
from .state import State

ClientFactory = Callable[[str], Any]
Runner = Callable[[list[str]], int]
# Errors meaning "already gone": deleting twice converges.
GONE = frozenset(
    {
        "NoSuchEntity",
        "NotFound",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
    }
)
RETAINED = "AWS::DynamoDB::Table"
STEP_ERRORS = (ClientError, BotoCoreError, OSError, RuntimeError)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _delete_keys(iam: Any, user: str) -> None:
    for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])


def _detach_policies(iam: Any, user: str) -> None:
    for page in iam.get_paginator("list_attached_user_policies").paginate(UserName=user):
        for policy in page["AttachedPolicies"]:
            iam.detach_user_policy(UserName=user, PolicyArn=policy["PolicyArn"])


def _stack_exists(cfn: Any, name: str) -> bool:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError" and "does not exist" in str(exc):
            return False
        raise
    return any(s["StackStatus"] != "DELETE_COMPLETE" for s in stacks)


def _retained(cfn: Any, name: str) -> list[str]:
    tables: list[str] = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name):
        tables += [
            r["PhysicalResourceId"]
            for r in page["StackResourceSummaries"]
            if r["ResourceType"] == RETAINED and r.get("PhysicalResourceId")
        ]
    return tables


def teardown(
    st: State,
    path: Path,
    client: ClientFactory,
    runner: Runner,
    *,
    delete_command: list[str],
    waiter_config: dict[str, int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []

    def step(name: str, action: Callable[[], None], done: Callable[[], None]) -> None:
        started = clock()
        record: dict[str, Any] = {"name": name}
        try:
            action()
        except ClientError as exc:
            if _code(exc) not in GONE:
                record.update(ok=False, error=f"{_code(exc)}: {exc}")
        except STEP_ERRORS as exc:
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        record.setdefault("ok", True)
        record["seconds"] = round(clock() - started, 3)
        if record["ok"]:
            done()
            state_file.forget(path, st)
        steps.append(record)

    def nothing() -> None:
        return None

    if st.user_name:
        iam = client("iam")
        user = st.user_name
        step(f"delete access keys of {user}", lambda: _delete_keys(iam, user), nothing)
        step(f"detach policies from {user}", lambda: _detach_policies(iam, user), nothing)

        def forget_user() -> None:
            st.user_name = None

        step(f"delete user {user}", lambda: iam.delete_user(UserName=user), forget_user)
    if st.subscription_arn:
        sns = client("sns")
        subscription = st.subscription_arn

        def forget_subscription() -> None:
            st.subscription_arn = None

        step(
            "unsubscribe the queue",
            lambda: sns.unsubscribe(SubscriptionArn=subscription),
            forget_subscription,
        )
    if st.queue_url:
        sqs = client("sqs")
        queue = st.queue_url

        def forget_queue() -> None:
            st.queue_url = None

        step(f"delete queue {queue}", lambda: sqs.delete_queue(QueueUrl=queue), forget_queue)
    if st.stack:
        cfn = client("cloudformation")

        def delete_stack() -> None:
            if not _stack_exists(cfn, st.stack_name):
                return
            st.retained_tables = sorted(set(st.retained_tables) | set(_retained(cfn, st.stack_name)))
            state_file.save(path, st)
            code = runner(delete_command)
            if code != 0:
                raise RuntimeError(f"{' '.join(delete_command[1:3])} exited with {code}")
            try:
                cfn.get_waiter("stack_delete_complete").wait(
                    StackName=st.stack_name, WaiterConfig=waiter_config or {"Delay": 10, "MaxAttempts": 90}
                )
            except WaiterError as exc:
                raise RuntimeError(f"stack {st.stack_name} is not deleted: {exc}") from None

        def forget_stack() -> None:
            st.stack = False

        step(f"delete stack {st.stack_name}", delete_stack, forget_stack)
    if st.retained_tables and not st.stack:
        ddb = client("dynamodb")
        for table in list(st.retained_tables):

            def forget_table(table: str = table) -> None:
                st.retained_tables.remove(table)

            step(f"delete retained table {table}", partial(_delete_table, ddb, table), forget_table)
    return steps


def _delete_table(ddb: Any, table: str) -> None:
    ddb.delete_table(TableName=table)
