"""Request API Lambda (HTTP API, IAM auth): the native front door's create/approve/reject/revoke/extend."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.runtime import request_api


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return request_api().handle(event)
