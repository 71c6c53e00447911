"""The SessionGate event bus: where both front doors hand ``AccessApproved`` to the engine."""

from __future__ import annotations

import json
from typing import Any

from sessiongate.adapters.aws import raises_service_failures
from sessiongate.core.model import ACCESS_APPROVED, EVENT_SOURCE, AccessApproved
from sessiongate.errors import TransientError


@raises_service_failures
class Bus:
    def __init__(self, events: Any, bus_name: str) -> None:
        self._events = events
        self._bus = bus_name

    def emit_approved(self, request: AccessApproved) -> None:
        result = self._events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": ACCESS_APPROVED,
                    "Detail": json.dumps(request.to_detail()),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        if result.get("FailedEntryCount", 0):
            entry = result.get("Entries", [{}])[0]
            raise TransientError(f"PutEvents failed: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}")
