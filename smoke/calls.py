"""Count every AWS call the run makes: a botocore event hook on every client it creates.

The hook is ``before-parameter-build`` (emitted once per API call, each page of a paginator and each
poll of a waiter included, before retries): unlike ``before-call``, every handler of it runs, so a
stub that answers a call in ``before-call`` (the offline tests) cannot hide it from the count.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore.config import Config

RETRIES = Config(retries={"mode": "standard"})


class CallCounter:
    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()

    def _count(self, model: Any, **_: Any) -> None:  # before-parameter-build: params, model, context
        self.by_operation[f"{model.service_model.service_name}:{model.name}"] += 1

    def client(self, session: Any, service: str) -> Any:
        client = session.client(service, config=RETRIES)
        client.meta.events.register("before-parameter-build", self._count)
        return client

    def add(self, name: str) -> None:
        """A call made outside botocore's clients (the request API, signed by the CLI's client)."""
        self.by_operation[name] += 1

    def report(self) -> dict[str, Any]:
        return {
            "total": sum(self.by_operation.values()),
            "by_operation": dict(sorted(self.by_operation.items())),
            "not_counted": "the calls of sam build / sam deploy / sam delete (separate processes)",
        }
