"""One place for logs and metrics (Powertools Logger and EMF Metrics), created on first use.

Tracing is not imported here: X-Ray is switched on per function in the template when wanted, and the
X-Ray SDK import cost (~84 ms) is not paid otherwise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

SERVICE = "sessiongate"
NAMESPACE = "SessionGate"


@functools.cache
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
def _metrics() -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=NAMESPACE, service=SERVICE)


class _MetricsFacade:
    """Counts with optional dimensions; flushed by the handler's ``log_metrics`` decorator."""

    def add(self, name: str, value: float = 1, unit: str = "Count", **dimensions: str) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        if dimensions:
            if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
                return  # single_metric does not honour Powertools' switch itself
            # Dimensioned metrics go out as their own EMF blob so dimensions never leak into others.
            with single_metric(
                name=name,
                unit=MetricUnit(unit),
                value=value,
                namespace=NAMESPACE,
                default_dimensions={"service": SERVICE},
            ) as metric:
                for key, dim in dimensions.items():
                    metric.add_dimension(name=key, value=dim)
            return
        _metrics().add_metric(name=name, unit=MetricUnit(unit), value=value)

    @property
    def powertools(self) -> Any:
        return _metrics()


@functools.cache
def metrics() -> _MetricsFacade:
    return _MetricsFacade()


Handler = Callable[[Any, Any], Any]


def lambda_entry(fn: Handler) -> Handler:
    """Wrap a handler with Powertools log context and metric flushing, built on first call."""

    @functools.wraps(fn)
    def wrapper(event: Any, context: Any) -> Any:
        return _instrumented(fn)(event, context)

    return wrapper


@functools.cache
def _instrumented(fn: Handler) -> Handler:
    wrapped = logger().inject_lambda_context(fn, clear_state=True)
    return _metrics().log_metrics(wrapped)  # type: ignore[no-any-return]
