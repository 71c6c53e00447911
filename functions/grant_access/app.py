"""Grant Lambda: ``AccessApproved`` on the SessionGate bus -> guardrails, slot tag, revoke schedule."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.wiring import engine


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return engine("grant").on_access_approved(event).as_dict()
