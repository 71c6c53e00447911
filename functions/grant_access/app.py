"""Grant Lambda: ``AccessApproved`` on the SessionGate bus -> guardrails, slot tag, revoke schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.core.engine import Engine

ROLE = "grant"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deps: Engine | None = None) -> dict[str, Any]:
    """``deps``: the engine to use (tests, sandbox); by default the process-wide one."""
    return (deps or wiring.engine(ROLE)).on_access_approved(event).as_dict()
