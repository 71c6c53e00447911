"""Request API Lambda (HTTP API, IAM auth): the native front door's create/approve/reject/revoke/extend,
and on a schedule the expiry of pending requests nobody decided on."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.wiring import request_api


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("source") == "aws.events":  # the pending-request sweep (a scheduled rule)
        return request_api().on_schedule(event)
    return request_api().handle(event)
