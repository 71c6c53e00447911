"""HTTP API (payload format 2.0, IAM authorization) -> :class:`NativeService`, answers as JSON.

Routes (every one behind ``AWS_IAM`` in template.yaml; the caller is
``requestContext.authorizer.iam.userArn``, never the body):

    POST /requests                  create     {instance_id, duration_minutes?, reason, ticket?, break_glass?,
                                                account?}
    GET  /requests                  mine             ?limit=
    GET  /approvals                 pending for me   ?limit=
    GET  /requests/{id}             one request
    POST /requests/{id}/approve     {comment?}
    POST /requests/{id}/reject      {comment}
    POST /requests/{id}/cancel      {reason?}
    POST /requests/{id}/revoke      {reason?}        early revoke / "I'm done"
    POST /requests/{id}/extend      {duration_minutes?, reason}

A user mistake or a decision is a 4xx ``{"error": code, "message": ...}``; a transient failure a 503
(retry); never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.access_requests.caller import Caller, caller_from_context
from sessiongate.access_requests.errors import (
    Conflict,
    InvalidInput,
    NotAllowed,
    NotFound,
    Refused,
    Unauthenticated,
    Unavailable,
    invalid,
)
from sessiongate.access_requests.service import NativeService
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger, metrics

MAX_BODY = 16 * 1024
# The one place a refusal becomes an HTTP status.
STATUS: dict[type[Refused], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    NotAllowed: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}


def status_of(refusal: Refused) -> int:
    return next(code for kind, code in STATUS.items() if isinstance(refusal, kind))


Route = Callable[[NativeService, Caller, Mapping[str, str], object, Mapping[str, str]], dict[str, Any]]

ROUTES: dict[str, tuple[int, Route]] = {
    "POST /requests": (201, lambda s, c, p, b, q: s.create(c, b)),
    "GET /requests": (200, lambda s, c, p, b, q: s.list_mine(c, _limit(q))),
    "GET /approvals": (200, lambda s, c, p, b, q: s.list_to_approve(c, _limit(q))),
    "GET /requests/{id}": (200, lambda s, c, p, b, q: s.get(c, p["id"])),
    "POST /requests/{id}/approve": (200, lambda s, c, p, b, q: s.approve(c, p["id"], b)),
    "POST /requests/{id}/reject": (200, lambda s, c, p, b, q: s.reject(c, p["id"], b)),
    "POST /requests/{id}/cancel": (200, lambda s, c, p, b, q: s.cancel(c, p["id"], b)),
    "POST /requests/{id}/revoke": (200, lambda s, c, p, b, q: s.revoke(c, p["id"], b)),
    "POST /requests/{id}/extend": (201, lambda s, c, p, b, q: s.extend(c, p["id"], b)),
}


@dataclass
class RequestApi:
    service: NativeService

    def on_schedule(self, event: object) -> dict[str, Any]:
        """EventBridge's scheduled rule: the sweep (pending expiry, failed hand-overs, settled grants;
        see :meth:`NativeService.expire_pending`)."""
        if not isinstance(event, Mapping) or event.get("detail-type") != "Scheduled Event":
            logger().warning("not a scheduled event: ignored")
            return {"result": "ignored"}
        return self.service.expire_pending()

    def handle(self, event: object) -> dict[str, Any]:
        try:
            if not isinstance(event, Mapping):
                raise invalid("not an API Gateway HTTP API event", "invalid_event")
            route_key = event.get("routeKey")
            if route_key not in ROUTES:
                raise NotFound("no_route", f"no route {str(route_key)[:80]!r}")
            status, call = ROUTES[route_key]
            caller = caller_from_context(event.get("requestContext"))
            bind(caller_arn=caller.arn, route=route_key)
            result = call(
                self.service,
                caller,
                _strings(event.get("pathParameters")),
                _body(event),
                _strings(event.get("queryStringParameters")),
            )
            return _response(status, result)
        except Refused as exc:
            status = status_of(exc)
            logger().info(
                "request refused", extra={"error": exc.code, "status": status, "problem": exc.message}
            )
            metrics().add("ApiRefusals", reason=exc.code)
            return _response(status, exc.body())
        except (TransientError, ClientError, BotoCoreError):
            # Throttling, a lost race, a 5xx: the client retries. Details stay in the logs.
            logger().exception("request failed transiently")
            metrics().add("ApiErrors")
            return _response(
                503,
                {"error": "temporarily_unavailable", "message": "SessionGate could not finish; try again"},
            )


def _response(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": json.dumps(body, sort_keys=True),
    }


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _body(event: Mapping[str, Any]) -> object:
    raw = event.get("body")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise invalid("the request body must be JSON", "invalid_body")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid("the request body is not valid base64 UTF-8", "invalid_body") from None
    if len(raw) > MAX_BODY:
        raise invalid(f"the request body is larger than {MAX_BODY} bytes", "invalid_body")
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid("the request body is not valid JSON", "invalid_body") from None


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit", "25")
    if not raw.isdigit() or not 1 <= int(raw) <= 50:
        raise invalid("limit must be an integer from 1 to 50", "invalid_limit")
    return int(raw)
