"""Chat notifier Lambda (subscribed to the lifecycle topic): keeps each request's message in its rule's
Slack channel up to date (:mod:`sessiongate.chat.messages`). A failure is raised: SNS retries the
delivery (and then the function's on-failure destination keeps it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.chat.messages import RequestMessages

ROLE = "chat_notify"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(
    event: dict[str, Any], context: Any, deps: RequestMessages | None = None
) -> dict[str, Any]:
    """``deps``: the notifier to use (tests, sandbox); by default the process-wide one."""
    messages = deps or wiring.chat_messages()
    results = []
    for record in event.get("Records") or []:
        message = json.loads(record["Sns"]["Message"])  # the topic's "lambda" message (core/notifications.py)
        results.append(messages.on_event(message))
    return {"results": results}
