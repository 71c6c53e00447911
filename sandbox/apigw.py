"""API Gateway's HTTP API events (payload 2.0, ``AWS_IAM`` authorization) built from events/.

API Gateway verifies the SigV4 signature and puts the signer's identity in
``requestContext.authorizer.iam``; that is the only identity the request API handler believes.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from . import cfn

SAMPLE = cfn.ROOT / "events" / "api_create_request.json"


@functools.cache
def _sample() -> dict[str, Any]:
    sample: dict[str, Any] = json.loads(SAMPLE.read_text())
    return sample


def api_event(
    route: str,
    caller_arn: str | None,
    *,
    request_id: str | None = None,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The event for ``route`` (e.g. ``POST /requests/{id}/approve``) signed by ``caller_arn``.

    ``caller_arn=None`` leaves the authorizer out (a request API Gateway did not authorize).
    """
    event = copy.deepcopy(_sample())
    method, path = route.split(" ", 1)
    raw_path = path.replace("{id}", request_id or "")
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    event["rawPath"] = event["requestContext"]["http"]["path"] = raw_path
    event["requestContext"]["http"]["method"] = method
    event["pathParameters"] = {"id": request_id} if request_id is not None else None
    event["queryStringParameters"] = query
    event["body"] = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    if caller_arn is None:
        del event["requestContext"]["authorizer"]
    else:
        identity = event["requestContext"]["authorizer"]["iam"]
        identity["userArn"] = caller_arn
        identity["accountId"] = caller_arn.split(":")[4] if caller_arn.count(":") >= 5 else ""
    return event
