"""boto3 clients from one Session per process, each built on first use, with the standard retry mode.

One Session serves every client: a Session loads and caches botocore's data files (endpoints,
partitions, retry rules, service models), so a Session per client paid that again for each (six
clients: 498 ms CPU against 189 ms from one Session). Clients, including the member-account clients
built from assumed-role credentials, come from it (``Session.client`` takes explicit credentials).

The Session's botocore data path starts with the layer's ``sessiongate/data`` directory: trimmed service
models (``tools/trim_models.py``: EC2, SSM, IAM and DynamoDB with only the operations SessionGate calls;
EC2's is 44 kB instead of ~5 MB of JSON) that botocore loads instead of its own: building the clients
costs ~170 ms CPU less for EC2 and ~70 ms less for the other three together. botocore finds every other
file (endpoints, rule sets, paginators, other services) further down the path, in its own data.

Standard retries back off on throttling and on IAM ``ConcurrentModification``-style transient errors
(botocore's retry quota and exponential backoff), so no hand-written retry loops exist in the engine.
"""

from __future__ import annotations

import functools
import inspect
import os
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.coldstart import long_lived
from sessiongate.core.ports import ServiceFailure

RETRY_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 6}}
# IAM answers 409 ConcurrentModification when two writes to one principal overlap. It is transient, but
# botocore's standard mode does not retry it (not a throttling, 5xx or modeled-retryable error), so it is
# added to botocore's own retry loop for IAM, with the same capped exponential backoff.
EXTRA_RETRYABLE = {"iam": frozenset({"ConcurrentModification"})}
MAX_ATTEMPTS = 6
BASE_DELAY = 0.2
MAX_DELAY = 5.0
# The grant's tag calls (IAM TagUser/TagRole; EC2 CreateTags for instance binding: ``core/grant.py``)
# must land within TAG_CALL_BOUND of starting, or a revocation that waited BIND_WINDOW + TAG_CALL_BOUND
# could untag before the tag lands.
# botocore's defaults (60 s connect and read timeouts, standard mode's 3 attempts with up to
# min(2 ** i, 20) s backoff, raised to t_i + 5 s by an ``x-amz-retry-after`` header:
# ``botocore/retries/standard.py``, ``ExponentialBackoff.delay_amount``) allow minutes. So the tag calls
# get a client of their own: one attempt (a failed tag raises, the delivery is retried and resumes the
# grant with a new bind window, ``core/grant.py``), 1 s to connect, 3 s to read; no ConcurrentModification
# retry (``extend_retries``) either. Every other IAM call keeps the defaults above (a
# GetAccountAuthorizationDetails page of 1,000 principals may take longer than 3 s).
# Not bounded by this: name resolution (DNS) before the connection, a connect tried once per address
# the endpoint resolves to, and above all a request IAM executes after the client gave up on it (the
# read timeout ends the client's wait, not the server's work). The backstop for a tag landing late is
# the reconciler: the CloudTrail tag event has it remove the tag of a slot no live grant holds, or of a
# held slot whose value is not its grant's (``core/reconcile.py``, ``_repair_held``), within a minute.
TAG_CALL_CONFIG: dict[str, Any] = {
    "connect_timeout": 1,
    "read_timeout": 3,
    "retries": {"mode": "standard", "total_max_attempts": 1},
}
# botocore's standard retry mode (``botocore/retries/standard.py``): backoff before retry i (0-based) is
# at most min(2 ** i, 20) s (throttling scale 1 s), plus up to 5 s more for ``x-amz-retry-after``.
_STANDARD_MAX_BACKOFF = 20.0
_RETRY_AFTER_MAX_ADDITIONAL = 5.0


def call_bound_seconds(config: dict[str, Any]) -> float:
    """The longest a client with ``config`` (standard retry mode) waits for one call, in seconds: every
    attempt's connect and read timeouts plus the longest backoff before each retry."""
    retries = config.get("retries", {})
    assert retries.get("mode") == "standard", "only botocore's standard retry mode is modelled"
    attempts = int(retries.get("total_max_attempts", retries.get("max_attempts", 2) + 1))
    per_attempt = float(config.get("connect_timeout", 60)) + float(config.get("read_timeout", 60))
    backoff = sum(
        min(2.0**i, _STANDARD_MAX_BACKOFF) + _RETRY_AFTER_MAX_ADDITIONAL for i in range(attempts - 1)
    )
    return attempts * per_attempt + backoff


# Searched before botocore's own data (botocore.loaders, "The Search Path"); see tools/trim_models.py.
DATA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


@functools.cache
@long_lived
def session() -> Any:
    """The process's one boto3 Session, built on first use (Lambda handlers run one event at a time:
    boto3 Sessions are not meant to build clients from several threads at once)."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    # The process's AWS_DATA_PATH, if any, still applies, after the shipped models.
    configured = core.get_config_variable("data_path")
    core.set_config_variable("data_path", os.pathsep.join(p for p in (DATA_PATH, configured) if p))
    # botocore's endpoints and service lists read for less (botocore_data.py: ~0.5x `import boto3`).
    from sessiongate.adapters import botocore_data

    botocore_data.install(core, DATA_PATH)
    return boto3.session.Session(botocore_session=core)


@functools.cache
def _config() -> Any:
    from botocore.config import Config

    return Config(**RETRY_CONFIG)


@functools.cache
@long_lived
def client(service: str, region: str | None = None) -> Any:
    """The process's client for ``service`` (built on first use, then shared)."""
    made = session().client(service, region_name=region, config=_config())
    extend_retries(made, service)
    return made


@functools.cache
def _tag_config() -> Any:
    from botocore.config import Config

    return Config(**TAG_CALL_CONFIG)


@functools.cache
@long_lived
def tag_client(service: str = "iam") -> Any:
    """The process's IAM or EC2 client for the grant's tag calls (``TAG_CALL_CONFIG``), from the one
    Session."""
    return session().client(service, config=_tag_config())


def tag_client_with(service: str, credentials: dict[str, str] | None = None) -> Any:
    """``tag_client`` for another account's credentials (not cached: credentials expire)."""
    if credentials is None:
        return tag_client(service)
    return session().client(service, config=_tag_config(), **credentials)


def extend_retries(made: Any, service: str) -> None:
    """Teach botocore's retry loop the service's extra transient error codes (no-op for others)."""
    codes = EXTRA_RETRYABLE.get(service)
    if codes:
        event = f"needs-retry.{made.meta.service_model.service_id.hyphenize()}"
        made.meta.events.register(
            event, functools.partial(_retry_delay, codes), unique_id=f"sessiongate-{event}"
        )


def _retry_delay(
    codes: frozenset[str], response: Any = None, attempts: int = 1, caught_exception: Any = None, **_: Any
) -> float | None:
    """botocore ``needs-retry`` handler: a delay in seconds to retry after, or ``None`` to not retry."""
    if response is None or attempts >= MAX_ATTEMPTS:
        return None
    code = response[1].get("Error", {}).get("Code") if isinstance(response[1], dict) else None
    if code not in codes:
        return None
    return float(min(MAX_DELAY, BASE_DELAY * 2 ** (attempts - 1)) * (0.5 + random.random() / 2))  # noqa: S311


# Assumed-role credentials are renewed this long before they expire (member accounts, the identity store).
REFRESH_BEFORE = timedelta(minutes=5)


def assumed_credentials(credentials: Mapping[str, Any], now: datetime) -> tuple[dict[str, str], datetime]:
    """An AssumeRole answer's ``Credentials`` as client keyword arguments, and when they expire (an hour
    from ``now``, AssumeRole's default duration, if the answer carries no time)."""
    creds = {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
    }
    expires = credentials.get("Expiration")
    if not isinstance(expires, datetime):
        expires = now + timedelta(hours=1)
    return creds, expires


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty string for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def retryable(exc: BaseException) -> bool:
    """Whether botocore's standard retry mode counts ``exc`` (the error left after the client's own
    retries) as transient or throttling: a connection error or timeout, HTTP 500/502/503/504, 429, or a
    throttling error code (``botocore/retries/standard.py``: ``TransientRetryableChecker``,
    ``ThrottledRetryableChecker``, ``ThrottlingStatusCodeChecker``). Anything else (access denied, not
    found, validation) is an answer that a later try would repeat."""
    from botocore.retries import standard

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        context = standard.RetryContext(
            attempt_number=1, parsed_response=exc.response, http_response=_Status(status)
        )
    elif isinstance(exc, BotoCoreError):
        context = standard.RetryContext(attempt_number=1, caught_exception=exc)
    else:
        return False
    checkers = standard.OrRetryChecker(
        [
            standard.TransientRetryableChecker(),
            standard.ThrottledRetryableChecker(),
            standard.ThrottlingStatusCodeChecker(),
        ]
    )
    return bool(checkers.is_retryable(context))


class _Status:
    """The one attribute of an HTTP response botocore's retry checkers read."""

    def __init__(self, status_code: object) -> None:
        self.status_code = status_code if isinstance(status_code, int) else None


P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)


class ServiceCallFailed(ServiceFailure, ClientError):  # type: ignore[misc]  # botocore is untyped
    """A ``ClientError`` the adapter did not recognise, as the core's ``ServiceFailure``: still a
    ``ClientError`` (same response, same message) for the code outside the core."""

    def __init__(self, original: ClientError) -> None:
        ClientError.__init__(self, original.response, original.operation_name)
        self.code = error_code(original)
        self.retryable = retryable(original)

    def __reduce__(self) -> Any:
        return ClientError, (self.response, self.operation_name)


class ServiceUnreachable(ServiceFailure, BotoCoreError):  # type: ignore[misc]
    """A ``BotoCoreError`` (connection, timeout, credentials...) as the core's ``ServiceFailure``."""

    fmt = "{message}"

    def __init__(self, original: BotoCoreError) -> None:
        BotoCoreError.__init__(self, message=str(original))
        self.code = ""
        self.retryable = retryable(original)


def raises_service_failures(cls: C) -> C:
    """Class decorator: botocore's errors leave every public method as the core's ``ServiceFailure``
    (same message and type for everyone else, see above). The core reacts to its own vocabulary only;
    the errors an adapter recognises (NotFound, conditional checks...) are handled inside it first."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _service_failures(member))
    return cls


def _service_failures(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ServiceFailure:
            raise
        except ClientError as exc:
            raise ServiceCallFailed(exc) from exc
        except BotoCoreError as exc:
            raise ServiceUnreachable(exc) from exc

    return call


def client_with(service: str, credentials: dict[str, str] | None = None) -> Any:
    """A client for another account's credentials (not cached: credentials expire)."""
    if credentials is None:
        return client(service)
    # The shared Session's data, the other account's credentials (aws_access_key_id, ...).
    made = session().client(service, config=_config(), **credentials)
    extend_retries(made, service)
    return made


class LazyClient:
    """Stands in for a boto3 client and builds it on first attribute access (cold-start friendly)."""

    def __init__(self, service: str, build: Callable[[str], Any] | None = None) -> None:
        self._service = service
        self._build = build or client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._build(self._service), name)
