"""Change Manager adapter: ``Change Request Status Update`` (Approved) -> re-read SSM -> AccessApproved."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.wiring import change_request_adapter


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = (lambda: remaining_ms() / 1000) if callable(remaining_ms) else None
    return change_request_adapter().on_change_request(event, remaining_seconds=remaining).as_dict()
