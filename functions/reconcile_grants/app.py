"""Reconciler Lambda (EventBridge schedule): revoke overdue grants, re-create lost schedules, remove drift."""

from typing import Any

from sessiongate.observability import lambda_entry
from sessiongate.wiring import engine


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return engine("reconcile").reconcile().as_dict()
