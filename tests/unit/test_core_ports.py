"""The adapters speak the core's vocabulary: botocore's errors become the core's exceptions (Stubber, no
moto). The core catches ServiceFailure where it used to catch ClientError and BotoCoreError."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from botocore.stub import Stubber

from sessiongate.adapters.directory import Directory
from sessiongate.core.identity import PrincipalType
from sessiongate.core.ports import PrincipalGone, PrincipalUnmodifiable, ServiceFailure, TagLimitExceeded
from sessiongate.errors import TransientError

TAGS = {"SecurityAllowSessionInstance": "i-0123456789abcdef0"}


def _client() -> Any:
    return boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def iam() -> Iterator[tuple[Any, Stubber]]:
    client = _client()
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_an_unrecognised_aws_error_is_a_service_failure(iam: tuple[Any, Stubber]) -> None:
    client, stubber = iam
    stubber.add_client_error("get_user", "AccessDenied", "not allowed", 403)
    with pytest.raises(ServiceFailure) as caught:
        Directory(client).get_principal(PrincipalType.USER, "alice")
    assert caught.value.code == "AccessDenied"
    # Still the ClientError it was for code outside the core (the request API maps it to a 503).
    assert isinstance(caught.value, ClientError)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert str(caught.value) == str(caught.value.__cause__)
    assert not isinstance(caught.value, TransientError)  # not "the grant is still being set up"


def test_a_missing_principal_is_none(iam: tuple[Any, Stubber]) -> None:
    client, stubber = iam
    stubber.add_client_error("get_user", "NoSuchEntity", "no alice", 404)
    assert Directory(client).get_principal(PrincipalType.USER, "alice") is None


@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [
        ("LimitExceeded", 409, TagLimitExceeded),
        ("UnmodifiableEntity", 400, PrincipalUnmodifiable),
        ("NoSuchEntity", 404, PrincipalGone),
    ],
)
def test_iam_refusals_of_a_tag_are_the_cores_exceptions(
    iam: tuple[Any, Stubber], code: str, status: int, raised: type[Exception]
) -> None:
    client, stubber = iam
    stubber.add_client_error("tag_role", code, "refused", status)
    with pytest.raises(raised):
        Directory(client).tag(PrincipalType.ROLE, "ops", TAGS)


def test_a_connection_failure_is_a_service_failure_and_a_botocore_error() -> None:
    client = _client()

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://iam.amazonaws.com/")

    client.meta.events.register("before-call.iam.GetUser", unreachable)
    with pytest.raises(ServiceFailure) as caught:
        Directory(client).get_principal(PrincipalType.USER, "alice")
    assert isinstance(caught.value, BotoCoreError)
    assert "iam.amazonaws.com" in str(caught.value)
