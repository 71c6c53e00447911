"""REST API (Lambda proxy integration, IAM authorization) -> :class:`NativeService`, answers as JSON.

Routes (every one behind ``AWS_IAM`` in template.yaml; the caller is
``requestContext.identity.userArn``, never the body):

    POST /requests                  create     {instance_id, duration_minutes?, reason, ticket?, break_glass?,
                                                account?}
    GET  /requests                  mine             ?limit=
    GET  /approvals                 pending for me   ?limit=
    GET  /instances                 instances I may request (the policy's rules that let me request)
    GET  /requests/{id}             one request
    POST /requests/{id}/approve     {comment?}
    POST /requests/{id}/reject      {comment}
    POST /requests/{id}/cancel      {reason?}
    POST /requests/{id}/revoke      {reason?}        early revoke / "I'm done"
    POST /requests/{id}/extend      {duration_minutes?, reason}
    POST /chat/link                 {code, confirm?} whose code it is; confirm: true links it to the caller
    POST /chat/unlink               [{slack_user, team}] end the caller's chat links (issue 19); a deployer
                                                     names any chat user

Routing is Powertools' ``APIGatewayRestResolver`` on ``httpMethod`` and ``path`` (the path without the
stage: ``requestContext.path`` carries ``/v1/...``; AWS doc "Lambda proxy integrations in API Gateway",
input format). API Gateway's own match is ``requestContext.httpMethod`` and
``requestContext.resourcePath`` (e.g. ``/requests/{id}``): both must name the same route. The body is
decoded here, not by Powertools (which decodes base64 without validating it). This is the one module
that turns a domain refusal (:mod:`.errors`) into an HTTP status (``STATUS``). A user mistake or a
decision is a 4xx ``{"error": code, "message": ...}``; a transient failure a 503 (retry); never a stack
trace.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
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
from sessiongate.chat.links import Linking
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
# The routes served, as template.yaml declares them (``METHOD /path/{id}``).
ROUTES = (
    "POST /requests",
    "GET /requests",
    "GET /approvals",
    "GET /instances",
    "GET /requests/{id}",
    "POST /requests/{id}/approve",
    "POST /requests/{id}/reject",
    "POST /requests/{id}/cancel",
    "POST /requests/{id}/revoke",
    "POST /requests/{id}/extend",
    "POST /chat/link",
    "POST /chat/unlink",
)


def status_of(refusal: Refused) -> int:
    return next(code for kind, code in STATUS.items() if isinstance(refusal, kind))


@dataclass
class RequestApi:
    service: NativeService
    linking: Linking | None = None  # chat identity links (issue 19); None: the chat routes answer 404
    app: APIGatewayRestResolver = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.app = resolver(self.service, self.linking)

    def on_schedule(self, event: object) -> dict[str, Any]:
        """EventBridge's scheduled rule: the sweep (pending expiry, failed hand-overs, settled grants;
        see :meth:`NativeService.sweep`)."""
        if not isinstance(event, Mapping) or event.get("detail-type") != "Scheduled Event":
            logger().warning("not a scheduled event: ignored")
            return {"result": "ignored"}
        return self.service.sweep()

    def handle(self, event: object, context: Any = None) -> dict[str, Any]:
        """API Gateway names the route (``requestContext.httpMethod`` and ``resourcePath``); the resolver
        dispatches on ``httpMethod`` and ``path``: both must say the same route, and the call must be
        signed, before it runs."""
        if not isinstance(event, Mapping):
            return _refused(invalid("not an API Gateway REST API event", "invalid_event"))
        route_key = route_key_of(event)
        no_route = NotFound("no_route", f"no route {str(route_key)[:80]!r}")
        if route_key not in ROUTES:
            return _refused(no_route)
        try:
            caller_from_context(event.get("requestContext"))
        except Refused as exc:
            return _refused(exc)
        if not _same_route(str(route_key), event):
            return _refused(no_route)
        answer: dict[str, Any] = self.app.resolve(event, context)
        # Powertools answers a REST event with ``multiValueHeaders``; every header here has one value, so
        # the answer uses ``headers`` as the refusals before the resolver do (API Gateway takes either:
        # AWS doc "Lambda proxy integrations in API Gateway", output format).
        multi = answer.pop("multiValueHeaders", None) or {}
        answer["headers"] = {**answer.get("headers", {}), **{k: ", ".join(v) for k, v in multi.items()}}
        return answer


def route_key_of(event: Mapping[str, Any]) -> str | None:
    """``METHOD /resource`` as API Gateway matched it (``requestContext``), None when it says nothing."""
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        return None
    method, resource = context.get("httpMethod"), context.get("resourcePath")
    if not isinstance(method, str) or not isinstance(resource, str):
        return None
    return f"{method} {resource}"


def _same_route(route_key: str, event: Mapping[str, Any]) -> bool:
    """Whether the method and ``path`` the resolver dispatches on are ``route_key``'s."""
    method, _, template = route_key.partition(" ")
    if event.get("httpMethod") != method or event.get("resource") != template:
        return False
    pattern = "^" + re.escape(template).replace(re.escape("{id}"), "[^/]+") + "$"
    return isinstance(event.get("path"), str) and re.fullmatch(pattern, event["path"]) is not None


@dataclass
class _Call:
    """The parts of the current call, read from the resolver's event."""

    app: APIGatewayRestResolver

    def caller(self) -> Caller:
        event = self.app.current_event.raw_event
        signed = caller_from_context(event.get("requestContext"))
        bind(caller_arn=signed.arn, route=route_key_of(event))
        return signed

    def request_id(self) -> str:
        # API Gateway's ``pathParameters`` (as the API saw it), not the resolver's match on the path.
        return _strings(self.app.current_event.raw_event.get("pathParameters")).get("id", "")

    def body(self) -> object:
        return _body(self.app.current_event.raw_event)

    def limit(self) -> int:
        return _limit(_strings(self.app.current_event.raw_event.get("queryStringParameters")))

    def not_found(self, _: Exception | None = None) -> Response[str]:
        route_key = route_key_of(self.app.current_event.raw_event)
        return _answer_refused(NotFound("no_route", f"no route {str(route_key)[:80]!r}"))


def resolver(service: NativeService, linking: Linking | None = None) -> APIGatewayRestResolver:
    """The routes, each a plain function of the signed caller and the request's parts."""
    # debug=False whatever POWERTOOLS_DEV says: in debug mode Powertools answers an unhandled error with
    # its traceback and logs every event (with its SigV4 Authorization header); anyone who may change
    # the function's environment must not be able to switch that on.
    app = APIGatewayRestResolver(debug=False)
    call = _Call(app)
    caller, request_id, body, limit = call.caller, call.request_id, call.body, call.limit
    # Registered by call: Powertools' not_found and exception_handler decorators are untyped (mypy strict).
    app.not_found(call.not_found)
    app.exception_handler(Refused)(_answer_refused)
    app.exception_handler([TransientError, ClientError, BotoCoreError])(_answer_transient)

    @app.post("/requests")
    def create() -> Response[str]:
        return _answer(201, service.create(caller(), body()))

    @app.get("/requests")
    def mine() -> Response[str]:
        return _answer(200, service.list_mine(caller(), limit()))

    @app.get("/approvals")
    def to_approve() -> Response[str]:
        return _answer(200, service.list_to_approve(caller(), limit()))

    @app.get("/instances")
    def requestable() -> Response[str]:
        return _answer(200, service.list_requestable(caller()))

    @app.get("/requests/<id>")
    def one(**_: str) -> Response[str]:
        return _answer(200, service.get(caller(), request_id()))

    @app.post("/requests/<id>/approve")
    def approve(**_: str) -> Response[str]:
        return _answer(200, service.approve(caller(), request_id(), body()))

    @app.post("/requests/<id>/reject")
    def reject(**_: str) -> Response[str]:
        return _answer(200, service.reject(caller(), request_id(), body()))

    @app.post("/requests/<id>/cancel")
    def cancel(**_: str) -> Response[str]:
        return _answer(200, service.cancel(caller(), request_id(), body()))

    @app.post("/requests/<id>/revoke")
    def revoke(**_: str) -> Response[str]:
        return _answer(200, service.revoke(caller(), request_id(), body()))

    @app.post("/requests/<id>/extend")
    def extend(**_: str) -> Response[str]:
        return _answer(201, service.extend(caller(), request_id(), body()))

    @app.post("/chat/link")
    def chat_link() -> Response[str]:
        if linking is None:
            raise NotFound("no_chat", "no chat is configured")
        return _answer(200, linking.link(caller(), body()))

    @app.post("/chat/unlink")
    def chat_unlink() -> Response[str]:
        if linking is None:
            raise NotFound("no_chat", "no chat is configured")
        return _answer(200, linking.unlink(caller(), body()))

    return app


HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


def _answer(status: int, body: Mapping[str, Any]) -> Response[str]:
    return Response(status_code=status, body=json.dumps(body, sort_keys=True), headers=HEADERS)


def _log_refusal(exc: Refused) -> int:
    status = status_of(exc)
    logger().info("request refused", extra={"error": exc.code, "status": status, "problem": exc.message})
    metrics().add("ApiRefusals", reason=exc.code)
    return status


def _answer_refused(exc: Refused) -> Response[str]:
    return _answer(_log_refusal(exc), exc.body())


def _answer_transient(_: Exception) -> Response[str]:
    # Throttling, a lost race, a 5xx: the client retries. Details stay in the logs.
    logger().exception("request failed transiently")
    metrics().add("ApiErrors")
    return _answer(
        503, {"error": "temporarily_unavailable", "message": "SessionGate could not finish; try again"}
    )


def _refused(exc: Refused) -> dict[str, Any]:
    return {
        "statusCode": _log_refusal(exc),
        "headers": dict(HEADERS),
        "body": json.dumps(exc.body(), sort_keys=True),
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
