"""One place for logs and metrics (Powertools Logger and EMF Metrics), created on first use.

Tracing is not imported here: X-Ray is switched on per function in the template when wanted, and the
X-Ray SDK import cost (~84 ms) is not paid otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sessiongate.coldstart import long_lived

SERVICE = "sessiongate"
NAMESPACE = "SessionGate"


@functools.cache
@long_lived
def logger() -> Any:
    from aws_lambda_powertools import Logger

    return Logger(service=SERVICE)


# Keys the engine binds per operation; cleared before each bind so one operation's keys never leak
# into the next one's log lines in a warm container.
CONTEXT_KEYS = (
    "grant_id",
    "instance_id",
    "principal_name",
    "principal_arn",
    "slot",
    "revoke_reason",
    "ops_item_id",
    "change_request_id",
    "request_id",
    "caller_arn",
    "route",
)


def bind(**keys: Any) -> Any:
    """Start a new operation's log context; returns the logger."""
    log = logger()
    log.remove_keys(list(CONTEXT_KEYS))
    log.append_keys(**keys)
    return log


@functools.cache
@long_lived
def _metrics() -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=NAMESPACE, service=SERVICE)


class _MetricsFacade:
    """Counts with optional dimensions; flushed by the handler's ``log_metrics`` decorator."""

    def add(self, name: str, value: float = 1, unit: str = "Count", **dimensions: str) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        if not dimensions:
            _metrics().add_metric(name=name, unit=MetricUnit(unit), value=value)
            return
        # A dimensioned metric goes out as its own EMF blob so its dimensions never apply to the others
        # (Powertools' EphemeralMetrics: no shared state, flushed now, honours POWERTOOLS_METRICS_DISABLED).
        one = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
        one.add_dimension(name="service", value=SERVICE)
        for key, dim in dimensions.items():
            one.add_dimension(name=key, value=dim)
        one.add_metric(name=name, unit=MetricUnit(unit), value=value)
        one.flush_metrics()

    @property
    def powertools(self) -> Any:
        return _metrics()


@functools.cache
def metrics() -> _MetricsFacade:
    return _MetricsFacade()


Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


def lambda_entry(fn: H) -> H:
    """Wrap a handler with Powertools log context and metric flushing, built on first call. Extra
    keyword arguments (the handler's injected dependencies) are passed through."""

    @functools.wraps(fn)
    def wrapper(event: Any, context: Any, **injected: Any) -> Any:
        return _instrumented(fn)(event, context, **injected)

    return wrapper  # type: ignore[return-value]


@functools.cache
@long_lived
def _instrumented(fn: Handler) -> Handler:
    wrapped = logger().inject_lambda_context(fn, clear_state=True)
    return _metrics().log_metrics(wrapped)  # type: ignore[no-any-return]
