"""boto3 clients built lazily, once per process, with the standard retry mode.

Standard retries back off on throttling and on IAM ``ConcurrentModification``-style transient errors
(botocore's retry quota and exponential backoff), so no hand-written retry loops exist in the engine.
"""

from __future__ import annotations

import functools
from typing import Any

RETRY_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 6}}


@functools.cache
def client(service: str, region: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(service, region_name=region, config=Config(**RETRY_CONFIG))


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty string for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class LazyClient:
    """Stands in for a boto3 client and builds it on first attribute access (cold-start friendly)."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self._service), name)
