"""Change Manager adapter: ``Change Request Status Update`` (Approved) -> re-read SSM -> AccessApproved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.change_manager.adapter import ChangeRequestAdapter

ROLE = "adapter"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(
    event: dict[str, Any], context: Any, deps: ChangeRequestAdapter | None = None
) -> dict[str, Any]:
    """``deps``: the adapter to use (tests, sandbox); by default the process-wide one."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = (lambda: remaining_ms() / 1000) if callable(remaining_ms) else None
    adapter = deps or wiring.change_request_adapter()
    return adapter.on_change_request(event, remaining_seconds=remaining).as_dict()
