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


def test_the_grant_tag_calls_cannot_outlast_the_bound_the_revocation_waits(sessions: list[Any]) -> None:
    """core/grant.py: a revocation waits BIND_WINDOW + TAG_CALL_BOUND, assuming a tag call started within
    the window has landed or failed by then. botocore's defaults (60 s timeouts, retries) allow minutes."""
    from sessiongate.core.revoke import TAG_CALL_BOUND

    aws.tag_client.cache_clear()
    bound = TAG_CALL_BOUND.total_seconds()
    assert aws.call_bound_seconds(aws.TAG_CALL_CONFIG) <= bound
    assert aws.call_bound_seconds({"retries": aws.RETRY_CONFIG["retries"]}) > bound  # why a client of its own
    # botocore's backoff with an x-amz-retry-after header: one retry alone may wait up to 1 + 5 s
    assert (
        aws.call_bound_seconds(
            {**aws.TAG_CALL_CONFIG, "retries": {"mode": "standard", "total_max_attempts": 2}}
        )
        == 14.0
    )

    tagger = aws.tag_client("iam")
    member = aws.tag_client_with(
        "iam", {"aws_access_key_id": "AKIDMEMBER", "aws_secret_access_key": "s", "aws_session_token": "t"}
    )
    assert len(sessions) == 1  # the one Session
    assert tagger is not aws.client("iam")  # the other IAM calls keep the defaults
    for made in (tagger, member):
        assert made.meta.config.connect_timeout == 1
        assert made.meta.config.read_timeout == 3
        assert made.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
        assert not made.meta.events._emitter._unique_id_handlers.get("sessiongate-needs-retry.iam")
    aws.tag_client.cache_clear()


def test_the_engine_tags_through_the_bounded_client_in_every_account(sessions: list[Any]) -> None:
    from sessiongate.settings import Settings
    from sessiongate.wiring import build_engine

    settings = Settings(account_id="123456789012", member_accounts=("210987654321",))
    engine = build_engine(settings)
    directory: Any = engine.directory
    assert directory._tagger._build is aws.tag_client
    assert directory._iam._build is aws.client
    assert engine.accounts._tag_make is aws.tag_client_with  # type: ignore[union-attr]
    # Instance binding's CreateTags too (REVIEW-A F1): a retried CreateTags landing after the revocation's
    # wait would leave the tag of a revoked grant.
    inventory: Any = engine.inventory
    assert inventory._tagger._build is aws.tag_client
    assert inventory._tagger._service == "ec2"
    assert inventory._ec2._build is aws.client
    assert sessions == []  # nothing built yet


def test_member_instance_tags_go_through_the_bounded_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member account's CreateTags (instance binding) uses ``tag_client_with``, like its TagUser."""
    from datetime import UTC, datetime

    from sessiongate.adapters.accounts import MemberAccounts

    made: list[tuple[str, str]] = []

    def make(kind: str) -> Any:
        return lambda service, creds=None: made.append((kind, service)) or f"{kind}-{service}"

    class Sts:
        def assume_role(self, **_: Any) -> Any:
            creds = {"AccessKeyId": "A", "SecretAccessKey": "S", "SessionToken": "T"}
            return {"Credentials": {**creds, "Expiration": datetime(2030, 1, 1, tzinfo=UTC)}}

    accounts = MemberAccounts(
        Sts(),
        make("plain"),
        partition="aws",
        role_path="/sessiongate/",
        role_name="SessionGateMember",
        external_id="",
        tag_make=make("bounded"),
    )
    _directory, inventory, _sessions = accounts.adapters("210987654321", datetime(2026, 1, 1, tzinfo=UTC))
    any_inventory: Any = inventory
    assert any_inventory._tagger == "bounded-ec2"
    assert any_inventory._ec2 == "plain-ec2"


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (("ThrottlingException", 400), True),
        (("Throttling", 400), True),  # STS
        (("InternalServerException", 500), True),
        (("ServiceUnavailable", 503), True),
        (("SomethingNew", 429), True),
        (("AccessDeniedException", 400), False),
        (("AccessDenied", 403), False),
        (("ResourceNotFoundException", 400), False),
        (("ValidationException", 400), False),
    ],
)
def test_retryable_is_botocores_standard_retry_condition(error: tuple[str, int], transient: bool) -> None:
    from botocore.exceptions import ClientError

    code, status = error
    exc = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    assert aws.retryable(exc) is transient


def test_connection_failures_are_retryable_and_other_client_errors_not() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    assert aws.retryable(EndpointConnectionError(endpoint_url="https://identitystore.example"))
    assert aws.retryable(ReadTimeoutError(endpoint_url="https://identitystore.example"))
    assert not aws.retryable(NoCredentialsError())
    assert not aws.retryable(ValueError("not an AWS error"))
