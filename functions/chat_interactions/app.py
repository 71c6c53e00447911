"""Chat interactions Lambda (API Gateway REST API, no IAM auth: Slack cannot sign with SigV4): Slack's
signed requests -> a one-time link code, or an Approve/Reject click decided through the request API's
own service as the clicker's linked AWS identity. The signature is verified before anything else
(:mod:`sessiongate.chat.interactions`)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.chat.interactions import ChatInteractions

ROLE = "chat"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(
    event: dict[str, Any], context: Any, deps: ChatInteractions | None = None
) -> dict[str, Any]:
    """``deps``: the interactions endpoint to use (tests, sandbox); by default the process-wide one."""
    chat = deps or wiring.chat_interactions()
    headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            body = ""  # (fails the signature check)
    answer = chat.handle(headers, body if isinstance(body, str) else "")
    out: dict[str, Any] = {"statusCode": answer.status, "headers": {"cache-control": "no-store"}, "body": ""}
    if answer.text is not None:
        out["headers"]["content-type"] = "application/json"
        out["body"] = json.dumps({"response_type": "ephemeral", "text": answer.text})
    return out
