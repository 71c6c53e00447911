"""One boto3 Session per process: every client, member-account clients included, is built from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from sessiongate.adapters import aws


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    made: list[Any] = []
    real = boto3.session.Session

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(boto3.session, "Session", counting)
    aws.session.cache_clear()
    aws.client.cache_clear()
    yield made
    aws.session.cache_clear()
    aws.client.cache_clear()


def test_every_client_comes_from_one_session(sessions: list[Any]) -> None:
    iam, ddb = aws.client("iam"), aws.client("dynamodb")
    member = aws.client_with(
        "iam", {"aws_access_key_id": "AKIDMEMBER", "aws_secret_access_key": "s", "aws_session_token": "t"}
    )
    assert len(sessions) == 1
    assert aws.client("iam") is iam
    assert ddb is not iam
    assert member is not iam
    assert member._request_signer._credentials.access_key == "AKIDMEMBER"  # the member's, not the process's
    for made in (iam, ddb, member):
        assert made.meta.config.retries["mode"] == "standard"
    # IAM's ConcurrentModification is retried by botocore's loop, on member clients too.
    assert member.meta.events._emitter._unique_id_handlers.get("sessiongate-needs-retry.iam")


def test_clients_are_built_on_first_use_only(sessions: list[Any]) -> None:
    lazy = aws.LazyClient("scheduler")
    assert sessions == []
    assert aws.client.cache_info().currsize == 0
    assert lazy.meta.service_model.service_name == "scheduler"
    assert aws.client.cache_info().currsize == 1
