"""The HTTP mapping: each domain refusal becomes its status, with the same body; routes are served."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.apigw import api_event
from sessiongate.access_requests import errors
from sessiongate.access_requests.http import ROUTES, RequestApi
from sessiongate.clock import ManualClock
from sessiongate.core.revoke import PROVISIONING_GRACE
from tests.unit.access_world import ALICE, BOB, new_world, stuck_provisioning


class Raising:
    """A service whose every call raises ``exc`` (or answers ``{"ok": True}``)."""

    def __init__(self, exc: Exception | None = None) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> dict[str, Any]:
            if self.exc is not None:
                raise self.exc
            return {"ok": True}

        return call


def answer(service: Any, route: str, caller: str | None = ALICE, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = RequestApi(service, linking=service).handle(api_event(route, caller, **kwargs))
    assert response["headers"] == {"content-type": "application/json", "cache-control": "no-store"}
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidInput("invalid_x", "bad x"), 400),
        (errors.Unauthenticated("unauthenticated", "no"), 401),
        (errors.NotAllowed("not_allowed", "no"), 403),
        (errors.NotFound("not_found", "no such request"), 404),
        (errors.Conflict("not_pending", "too late"), 409),
        (errors.Unavailable("policy_unavailable", "ask the admins"), 503),
    ],
)
def test_each_refusal_maps_to_its_status_and_body(exc: errors.Refused, status: int) -> None:
    assert answer(Raising(exc), "POST /requests/{id}/approve", request_id="a" * 32) == (status, exc.body())


def test_a_transient_failure_is_a_503_to_retry() -> None:
    failure = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutItem")
    assert answer(Raising(failure), "GET /requests") == (
        503,
        {"error": "temporarily_unavailable", "message": "SessionGate could not finish; try again"},
    )


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_is_served_with_its_status(route: str) -> None:
    status, body = answer(
        Raising(), route, request_id="a" * 32, body={} if route.startswith("POST") else None
    )
    assert (status, body) == (
        201 if route in ("POST /requests", "POST /requests/{id}/extend") else 200,
        {"ok": True},
    )


def test_the_chat_routes_are_404_without_a_chat() -> None:
    for route in ("POST /chat/link", "POST /chat/unlink"):
        response = RequestApi(Raising()).handle(api_event(route, ALICE, body={"code": "X"}))  # type: ignore[arg-type]
        assert (response["statusCode"], json.loads(response["body"])["error"]) == (404, "no_chat")


def test_an_unknown_route_and_an_unsigned_call_and_bad_bodies() -> None:
    assert answer(Raising(), "DELETE /requests") == (
        404,
        {"error": "no_route", "message": "no route 'DELETE /requests'"},
    )
    assert answer(Raising(), "GET /requests", None)[0] == 401
    assert answer(Raising(), "POST /requests", raw_body="{nope")[1]["error"] == "invalid_body"
    assert answer(Raising(), "GET /requests", query={"limit": "99"})[1]["error"] == "invalid_limit"


def test_the_real_service_through_http_refuses_self_approval_with_403() -> None:
    w = new_world()
    api = RequestApi(w.service)
    instance = w.instance()
    created = api.handle(api_event("POST /requests", ALICE, body={"instance_id": instance, "reason": "fix"}))
    request_id = json.loads(created["body"])["request"]["request_id"]
    status, body = answer(w.service, "POST /requests/{id}/approve", ALICE, request_id=request_id)
    assert (status, body["error"]) == (403, "self_approval")
    assert answer(w.service, "POST /requests/{id}/approve", BOB, request_id=request_id)[0] == 200


def test_events_that_are_not_a_signed_route_of_the_api_are_refused_before_the_resolver() -> None:
    """What a direct invocation could send: answered as before the resolver (404 / 401), never a crash."""
    api = RequestApi(Raising())  # type: ignore[arg-type]
    assert api.handle({})["statusCode"] == 404
    assert (
        api.handle({"requestContext": {"httpMethod": "GET", "resourcePath": "/requests"}})["statusCode"]
        == 401
    )
    # An HTTP API (payload 2.0) event names a route but no REST resource: no route.
    assert api.handle({"routeKey": "GET /requests", "rawPath": "/requests"})["statusCode"] == 404
    # API Gateway's route and the path the resolver would dispatch on disagree: no route.
    event = api_event("GET /requests", ALICE)
    event["path"] = "/approvals"
    assert api.handle(event)["statusCode"] == 404
    event = api_event("GET /requests/{id}", ALICE, request_id="a" * 32)
    event["httpMethod"] = "POST"
    assert api.handle(event)["statusCode"] == 404
    event = api_event("GET /requests/{id}", ALICE, request_id="a" * 32)
    event["resource"] = "/approvals"
    assert api.handle(event)["statusCode"] == 404
    # The stage is in requestContext.path only; the resolver dispatches on the path without it.
    event = api_event("GET /requests", ALICE)
    assert (event["path"], event["requestContext"]["path"]) == ("/requests", "/v1/requests")
    assert api.handle(event)["statusCode"] == 200


def test_no_environment_variable_turns_an_unhandled_error_into_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """POWERTOOLS_DEV / POWERTOOLS_EVENT_HANDLER_DEBUG switch Powertools' debug mode on, which answers
    with the traceback; the resolver is built with debug=False, so the error reaches Lambda instead."""
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    monkeypatch.setenv("POWERTOOLS_EVENT_HANDLER_DEBUG", "true")
    with pytest.raises(RuntimeError, match="boom"):
        RequestApi(Raising(RuntimeError("boom"))).handle(api_event("GET /requests", ALICE))  # type: ignore[arg-type]


def test_a_revocation_the_engine_cannot_finish_yet_is_a_409_naming_grant_in_progress() -> None:
    """The real engine refuses to revoke a grant it still sees provisioning (TransientError): through
    http that is a 409 the caller retries, not a 500 or a 503."""
    w = new_world()
    request_id = stuck_provisioning(w)
    w.clock.advance(PROVISIONING_GRACE - timedelta(seconds=1))
    w.service.clock = ManualClock(w.clock.now() + timedelta(seconds=1))  # the API's clock a second ahead
    status, body = answer(w.service, "POST /requests/{id}/revoke", ALICE, request_id=request_id, body={})
    assert (status, body["error"]) == (409, "partly_revoked")
    assert "grant_in_progress" in body["message"]
