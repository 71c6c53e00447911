"""Revoke Lambda: EventBridge Scheduler target at a grant's expiry -> remove the slot tag."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.wiring import engine


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return engine("revoke").on_revoke_schedule(event).as_dict()
