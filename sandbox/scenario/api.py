"""The native request API, called as API Gateway would (IAM auth: the caller's identity from its
signature; the API's resource policy admits callers of other accounts of the organization only):
requests, decisions, extensions and cancellations of ``via: api`` requests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sessiongate.clock import to_iso

from ..apigw import admitted, api_event, organization_of, resource_policy
from .schema import ScenarioError, parse_duration

if TYPE_CHECKING:
    from .play import Play


def request(play: Play, index: int, spec: dict[str, Any]) -> None:
    """``POST /requests`` by ``by``, for itself."""
    rid, by = spec["id"], spec["by"]
    if spec.get("for", by) != by:
        raise ScenarioError(f"step {index}: through the API a caller requests access for itself only")
    body: dict[str, Any] = {
        "instance_id": play.instance(spec["instance"], index),
        "reason": str(spec.get("reason", f"shell on {spec['instance']}")),
    }
    if "minutes" in spec:
        body["duration_minutes"] = spec["minutes"]
    if spec.get("break_glass"):
        body["break_glass"] = True
    if "ticket" in spec:
        body["ticket"] = str(spec["ticket"])
    if "documents" in spec:  # Session Manager documents besides the shell (issue 18)
        body["documents"] = [str(d) for d in spec["documents"]]
    if "start_in" in spec:  # a scheduled start (issue 18): start_at, now + start_in
        body["start_at"] = to_iso(play.now() + parse_duration(spec["start_in"]))
    label = f"requests a shell on {spec['instance']} through the API [{rid}]"
    answer = call(play, index, spec, by, "POST /requests", body=body, label=label)
    if answer is not None:
        play.requests[rid] = {"api_id": answer["request_id"], "grant_id": answer["grant_id"], "by": by}


def decide(play: Play, index: int, spec: dict[str, Any], request: dict[str, Any], signal: str) -> None:
    """An approve or reject step on a native request (a rejection always carries a comment)."""
    body = {"comment": str(spec["comment"])} if spec.get("comment") else {}
    verb = "approve" if signal == "Approve" else "reject"
    if verb == "reject" and not body:
        body = {"comment": "rejected in the sandbox"}
    act(play, index, spec, request, verb, body, f"{verb}s [{spec['request']}]")


def extend(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The requester asks for more time on ACTIVE access (a new request, approved like any other)."""
    request = native(play, spec, index, "extend")
    rid = spec["id"]
    body: dict[str, Any] = {"reason": str(spec.get("reason", "need more time"))}
    if "minutes" in spec:
        body["duration_minutes"] = spec["minutes"]
    answer = act(play, index, spec, request, "extend", body, f"asks to extend [{spec['request']}] as [{rid}]")
    if answer is not None:
        play.requests[rid] = {
            "api_id": answer["request_id"],
            "grant_id": answer["grant_id"],
            "by": spec["by"],
        }


def cancel(play: Play, index: int, spec: dict[str, Any]) -> None:
    request = native(play, spec, index, "cancel")
    act(play, index, spec, request, "cancel", {}, f"cancels [{spec['request']}]")


def native(play: Play, spec: dict[str, Any], index: int, step: str) -> dict[str, Any]:
    """The step's request, which must have been made with ``via: api``."""
    request = play.request_of(spec, index)
    if "api_id" not in request:
        raise ScenarioError(f"step {index}: {step} works on requests made with via: api")
    return request


def act(
    play: Play, index: int, spec: dict[str, Any], request: dict[str, Any], verb: str, body: Any, label: str
) -> dict[str, Any] | None:
    """``POST /requests/{id}/<verb>`` on a native request, by the step's ``by``."""
    route = f"POST /requests/{{id}}/{verb}"
    return call(play, index, spec, spec["by"], route, request_id=request["api_id"], body=body, label=label)


def call(
    play: Play,
    index: int,
    spec: dict[str, Any],
    caller: str,
    route: str,
    *,
    request_id: str | None = None,
    body: dict[str, Any] | None = None,
    label: str | None,
) -> dict[str, Any] | None:
    """One API call by ``caller``: its answer, or None on an error, which is a check (what the step's
    ``expect_error`` names, else success) when the step expects one or says what it does (``label``)."""
    arn = play.principal(caller, index)["arn"]
    stack, account = play.world.stack, arn.split(":")[4]
    org = organization_of(stack, account)
    if not admitted(
        resource_policy(stack.resources), api_account=stack.account, caller_account=account, org_id=org
    ):
        # API Gateway refuses before the function: the API's resource policy does not admit the caller.
        status, answer = 403, {"error": "forbidden", "message": f"{arn} may not call the request API"}
    else:
        event = api_event(route, arn, request_id=request_id, body=body, org_id=org)
        invocation = play.world.invoke(
            play.world.function_arn("RequestApiFunction"), event, trigger=f"api {route}", sync=True
        )
        if invocation.error:
            status, answer = 502, {"error": "handler_failed", "message": invocation.error}
        else:
            status, answer = invocation.result["statusCode"], json.loads(invocation.result["body"])
            answer = answer.get("request", answer)  # a request's view, or an error
    play.world.settle()  # AccessApproved on the bus -> grant
    ok = 200 <= status < 300
    if label is not None:
        outcome = answer.get("status", "ok") if ok else f"{status} {answer.get('error')}"
        play.say(caller, f"{label} -> {outcome}")
    if "expect_error" in spec or (label is not None and not ok):
        actual = answer.get("error", "success") if not ok else "success"
        play.check(index, f"API {route} by {caller}", spec.get("expect_error", "success"), actual)
    return answer if ok else None
