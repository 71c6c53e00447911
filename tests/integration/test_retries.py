"""Transient AWS errors are retried by botocore's own retry loop (real error responses, not mocks)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from sandbox.faults import CONCURRENT_MODIFICATION, THROTTLING, FaultInjector
from sessiongate.adapters import aws


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aws, "BASE_DELAY", 0.0)
    with mock_aws():
        yield


def _client(service: str) -> object:
    made = boto3.client(service, region_name="us-east-1", config=Config(**aws.RETRY_CONFIG))
    aws.extend_retries(made, service)
    return made


def test_iam_concurrent_modification_is_retried(no_backoff: None) -> None:
    iam = _client("iam")
    faults = FaultInjector()
    faults.attach(iam)
    iam.create_user(UserName="alice")  # type: ignore[attr-defined]
    fault = faults.add("iam:TagUser", CONCURRENT_MODIFICATION, times=3)

    response = iam.tag_user(UserName="alice", Tags=[{"Key": "k", "Value": "v"}])  # type: ignore[attr-defined]

    assert fault.injected == 3
    assert response["ResponseMetadata"]["RetryAttempts"] == 3
    assert iam.list_user_tags(UserName="alice")["Tags"] == [{"Key": "k", "Value": "v"}]  # type: ignore[attr-defined]


def test_retries_are_bounded_then_the_error_surfaces(no_backoff: None) -> None:
    iam = _client("iam")
    faults = FaultInjector()
    faults.attach(iam)
    iam.create_user(UserName="alice")  # type: ignore[attr-defined]
    faults.add("iam:TagUser", CONCURRENT_MODIFICATION, times=50)
    with pytest.raises(ClientError) as err:
        iam.tag_user(UserName="alice", Tags=[{"Key": "k", "Value": "v"}])  # type: ignore[attr-defined]
    assert err.value.response["Error"]["Code"] == CONCURRENT_MODIFICATION
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == aws.MAX_ATTEMPTS - 1


def test_other_iam_errors_are_not_retried(no_backoff: None) -> None:
    iam = _client("iam")
    faults = FaultInjector()
    faults.attach(iam)
    fault = faults.add("iam:GetUser", "NoSuchEntity", times=5, status=404)
    with pytest.raises(ClientError):
        iam.get_user(UserName="ghost")  # type: ignore[attr-defined]
    assert fault.injected == 1


def test_throttling_is_retried_by_standard_mode(no_backoff: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.endpoint

    sleeps: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", sleeps.append)
    ddb = _client("dynamodb")
    faults = FaultInjector()
    faults.attach(ddb)
    fault = faults.add("dynamodb:ListTables", THROTTLING, times=2)
    assert ddb.list_tables()["ResponseMetadata"]["RetryAttempts"] == 2  # type: ignore[attr-defined]
    assert fault.injected == 2
    assert len(sleeps) == 2


def test_runtime_clients_get_the_extension() -> None:
    aws.client.cache_clear()
    try:
        iam = aws.client("iam", "us-east-1")
        handlers = iam.meta.events._emitter._lookup_cache
        assert iam.meta.config.retries["mode"] == "standard"
        del handlers
        with mock_aws():
            faults = FaultInjector()
            faults.attach(iam)
            # The runtime's IAM model has only SessionGate's operations: a full client sets the user up.
            _client("iam").create_user(UserName="alice")
            faults.add("iam:TagUser", CONCURRENT_MODIFICATION, times=1)
            assert (
                iam.tag_user(UserName="alice", Tags=[{"Key": "k", "Value": "v"}])["ResponseMetadata"][
                    "RetryAttempts"
                ]
                == 1
            )
    finally:
        aws.client.cache_clear()
