"""Request API Lambda (REST API, IAM auth): the native front door's create/approve/reject/revoke/extend,
and on a schedule the expiry of pending requests nobody decided on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.access_requests.http import RequestApi

ROLE = "requests"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deps: RequestApi | None = None) -> dict[str, Any]:
    """``deps``: the request API to use (tests, sandbox); by default the process-wide one."""
    api = deps or wiring.request_api()
    if event.get("source") == "aws.events":  # the pending-request sweep (a scheduled rule)
        return api.on_schedule(event)
    return api.handle(event)
