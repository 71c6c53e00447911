"""Reconciler Lambda (EventBridge schedule): revoke overdue grants, re-create lost schedules, remove drift."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.core.engine import Engine

ROLE = "reconcile"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deps: Engine | None = None) -> dict[str, Any]:
    """``deps``: the engine to use (tests, sandbox); by default the process-wide one."""
    return (deps or wiring.engine(ROLE)).reconcile().as_dict()
