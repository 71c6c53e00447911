"""Change Manager adapter: ``Change Request Status Update`` (Approved) -> re-read SSM -> AccessApproved."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.runtime import engine


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return engine("adapter").on_change_request(event).as_dict()
