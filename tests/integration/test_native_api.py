"""Native front door through the Lambda handlers: REST API events -> request API -> bus -> grant -> revoke.

Every handler runs as Lambda runs it (configuration from the environment, clients injected) on
moto; identities come from ``requestContext.identity.userArn`` only.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sandbox.faults import FaultInjector
from sessiongate.access_requests.records import Approval, Request, RequestStatus
from sessiongate.access_requests.verifier import NativeVerifier
from sessiongate.adapters.policy_source import POLICY_CACHE
from sessiongate.adapters.scheduler import Schedules
from sessiongate.clock import to_iso
from sessiongate.core.model import GrantStatus, Origin
from sessiongate.core.revoke import BIND_WINDOW, TAG_CALL_BOUND
from sessiongate.errors import TransientError
from tests.conftest import load_event
from tests.support.native import (
    ALICE,
    APPROVERS_ROLE,
    BOB,
    CAROL,
    CONTEXT,
    DAVE,
    EVE,
    MEMBER,
    POLICY,
    SECURITY,
    api_event,
    declared_routes,
    make_request,
    member_session,
)
from tests.support.stack import ACCOUNT, BREAK_GLASS_APPROVER, Stack, environment

# The stack of the running test's ``deployed`` fixture: it builds each handler's dependencies.
_DEPLOYED: list[Stack] = []


def handler(name: str) -> Any:
    """``functions/<name>/app.py``'s handler, its dependencies injected by the deployed stack."""
    return _DEPLOYED[-1].handler(name)


def request_api() -> Any:
    """The request API the deployed request_api handler is given (its service, its store)."""
    return _DEPLOYED[-1].dependencies("requests")


@pytest.fixture
def deployed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The handlers with the environment template.yaml gives them and the policy in SSM."""
    stack.enable_native()
    for name, value in environment(stack.settings).items():
        monkeypatch.setenv(name, value)
    stack.put_approval_policy(POLICY)
    stack.user("alice")
    stack.deploy(client=stack.native_client)
    _DEPLOYED.append(stack)
    # As after a deploy: the first scheduled sweep has recorded (and notified) the policy in effect.
    handler("request_api")(load_event("reconcile_schedule.json"), CONTEXT)
    assert [n["attributes"]["event_type"] for n in stack.notifications()] == ["PolicyChanged"]
    yield stack
    _DEPLOYED.remove(stack)


def set_policy(stack: Stack, policy: dict[str, Any] | str) -> None:
    """A deployer signs and puts a new policy; the API uses it within a minute (its cache)."""
    stack.put_approval_policy(policy)
    stack.clock.advance(POLICY_CACHE)


def call(route: str, caller: str | None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = handler("request_api")(api_event(route, caller, **kwargs), CONTEXT)
    assert response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert "Traceback" not in response["body"]
    return response["statusCode"], body


def create(stack: Stack, *, tags: dict[str, str] | None = None, caller: str = ALICE, **body: Any) -> str:
    instance = body.pop("instance_id", None) or stack.instance(tags=tags)
    status, out = call(
        "POST /requests", caller, body={"instance_id": instance, "reason": "restart nginx", **body}
    )
    assert status == 201, out
    return str(out["request"]["request_id"])


def approve(request_id: str, caller: str, comment: str = "") -> tuple[int, dict[str, Any]]:
    return call(
        "POST /requests/{id}/approve",
        caller,
        request_id=request_id,
        body={"comment": comment} if comment else None,
    )


def grant_from_bus(stack: Stack) -> list[dict[str, Any]]:
    """Deliver the bus's AccessApproved events to the grant handler, as the EventBridge rule does."""
    return [handler("grant_access")(e, CONTEXT) for e in stack.bus_events()]


def active(stack: Stack) -> str:
    """A 10-minute request of alice's, approved by bob and granted: ACTIVE."""
    request_id = create(stack, duration_minutes=10)
    approve(request_id, BOB)
    grant_from_bus(stack)
    return request_id


def extend(request_id: str, reason: str = "more") -> str:
    """Alice asks to extend ``request_id``; the new request's id."""
    status, out = call("POST /requests/{id}/extend", ALICE, request_id=request_id, body={"reason": reason})
    assert status == 201, out
    return str(out["request"]["request_id"])


def sweep() -> dict[str, Any]:
    """The request API's scheduled run (the reconciler's EventBridge schedule)."""
    result: dict[str, Any] = handler("request_api")(load_event("reconcile_schedule.json"), CONTEXT)
    return result


def event_types(stack: Stack) -> list[str]:
    return [n["attributes"]["event_type"] for n in stack.notifications()]


# ---------------------------------------------------------------------------------------- the full path
def test_request_approve_grant_revoke_through_the_handlers(deployed: Stack) -> None:
    stack = deployed
    instance = stack.instance()
    event = load_event("api_create_request.json")
    event["body"] = json.dumps({**json.loads(event["body"]), "instance_id": instance})

    created = handler("request_api")(event, CONTEXT)
    assert created["statusCode"] == 201
    request = json.loads(created["body"])["request"]
    request_id = request["request_id"]
    assert request["status"] == "PENDING"
    assert request["requester_arn"] == ALICE  # from the signature, not the body
    assert request["principal_arn"] == ALICE
    assert request["approval_progress"] == [{"level": 1, "name": "ops", "approved": 0, "required": 1}]
    assert request["pending_expires_at"] == "2026-11-24T10:00:00Z"
    [requested] = stack.notifications()
    assert requested["attributes"] == {
        "event_type": "AccessRequested",
        "instance_id": instance,
        "principal_arn": ALICE,
        "account": ACCOUNT,
        # Subscribers drop repeats by it (stream delivery is at least once): the request and its version.
        "event_id": f"AccessRequested/{request_id}/0",
    }
    assert requested["message"]["event_id"] == requested["attributes"]["event_id"]
    assert requested["message"]["next_approvers"] == POLICY["rules"][1]["levels"][0]["approvers"]

    sample = load_event("api_approve_request.json")
    sample["pathParameters"]["id"] = request_id
    approved = handler("request_api")(sample, CONTEXT)
    assert approved["statusCode"] == 200, approved
    assert json.loads(approved["body"])["request"]["status"] == "APPROVED"
    assert event_types(stack) == ["AccessApproved"]
    [bus_event] = stack.bus_events()
    detail = bus_event["detail"]
    assert detail["origin"] == "native"
    assert detail["grant_id"] == f"rq-{request_id}"
    assert detail["origin_ref"] == request_id
    assert detail["requester_arn"] == ALICE
    assert detail["approver_arns"] == [BOB]
    assert (detail["principal_type"], detail["principal_name"], detail["duration_minutes"]) == (
        "user",
        "alice",
        15,
    )
    assert detail["reason"] == "restart nginx after the config change (ticket INC-4711)"

    granted = handler("grant_access")(bus_event, CONTEXT)
    assert granted["result"] == "granted", granted
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": instance}
    stack.notifications()

    status, out = call("GET /requests/{id}", ALICE, request_id=request_id)
    assert status == 200
    assert out["request"]["status"] == "ACTIVE"
    assert out["request"]["grant"] == {"status": "ACTIVE", "expires_at": "2026-11-24T09:15:00Z", "slot": 1}

    status, out = call(
        "POST /requests/{id}/revoke", ALICE, request_id=request_id, body={"reason": "done here"}
    )
    assert status == 200, out
    assert out["request"]["status"] == "REVOKED"
    assert stack.tags("user", "alice") == {}
    assert stack.schedules() == {}  # the expiry schedule went with the early revocation
    [revoked] = stack.notifications()
    assert revoked["attributes"]["event_type"] == "AccessRevoked"
    assert revoked["message"]["reason"] == "done"
    assert revoked["message"]["revoked_by"] == ALICE
    grant = stack.engine().ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert grant.status is GrantStatus.REVOKED
    assert [h["status"] for h in out["request"]["history"]] == ["PENDING", "APPROVED", "ACTIVE", "REVOKED"]


def test_every_route_is_declared_and_served() -> None:
    from sessiongate.access_requests.http import ROUTES

    assert sorted(declared_routes()) == sorted(ROUTES)


def test_expiry_moves_an_active_request_to_expired(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack, duration_minutes=10)
    approve(request_id, BOB)
    grant_from_bus(stack)
    stack.clock.advance(timedelta(minutes=10))
    schedule = stack.schedules()[f"sg-revoke-rq-{request_id}"]
    assert handler("revoke_access")(json.loads(schedule["Target"]["Input"]), CONTEXT)["result"] == "revoked"
    status, out = call("GET /requests/{id}", ALICE, request_id=request_id)
    assert (status, out["request"]["status"]) == (200, "EXPIRED")
    status, out = call("POST /requests/{id}/revoke", ALICE, request_id=request_id)
    assert (status, out["error"]) == (409, "not_active")


# ---------------------------------------------------------------------------------------- races
def test_two_approvers_at_once_produce_exactly_one_grant(
    deployed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carol's approval lands between Bob's read and Bob's write: Bob's conditional write fails."""
    stack = deployed
    request_id = create(stack)
    store = request_api().service.store
    original = store.replace
    interleaved: list[tuple[int, dict[str, Any]]] = []
    started: list[bool] = []

    def racing_replace(request: Any, *, expected_version: int) -> bool:
        if not started:
            started.append(True)
            interleaved.append(approve(request_id, CAROL))  # the other click, served meanwhile
        return original(request, expected_version=expected_version)

    monkeypatch.setattr(store, "replace", racing_replace)
    bob = approve(request_id, BOB)
    carol = interleaved[0]

    assert carol[0] == 200
    assert carol[1]["request"]["status"] == "APPROVED"
    assert bob == (
        409,
        {"error": "not_pending", "message": f"request {request_id} is APPROVED, no longer PENDING"},
    )
    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["approver_arns"] == [CAROL]
    assert event_types(stack).count("AccessApproved") == 1


def test_concurrent_approvals_of_a_two_approval_level_both_count(
    deployed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With N=2 the losing writer re-reads and its approval completes the level: one APPROVED, one emit."""
    stack = deployed
    request_id = create(stack, tags={"Environment": "prod"})
    store = request_api().service.store
    original = store.replace
    interleaved: list[tuple[int, dict[str, Any]]] = []
    started: list[bool] = []

    def racing_replace(request: Any, *, expected_version: int) -> bool:
        if not started:
            started.append(True)
            interleaved.append(approve(request_id, CAROL))
        return original(request, expected_version=expected_version)

    monkeypatch.setattr(store, "replace", racing_replace)
    status, out = approve(request_id, BOB)
    assert status == 200
    assert interleaved[0][0] == 200
    approvers = [a["approver_arn"] for a in out["request"]["approvals"]]
    assert approvers == [CAROL, BOB]
    assert out["request"]["status"] == "PENDING"  # level 2 (security) still to come
    assert stack.bus_events() == []


# ---------------------------------------------------------------------------------------- policy levels
def test_n_of_m_and_second_level(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack, tags={"Environment": "prod"}, duration_minutes=20)
    stack.notifications()

    status, out = approve(request_id, BOB)
    assert status == 200
    assert out["request"]["status"] == "PENDING"
    assert out["request"]["approval_progress"][0] == {
        "level": 1,
        "name": "leads",
        "approved": 1,
        "required": 2,
    }
    assert stack.bus_events() == []  # 1 of 2: no grant
    assert event_types(stack) == ["ApprovalRecorded"]

    assert approve(request_id, SECURITY)[1]["error"] == "level_not_reached"
    assert approve(request_id, BOB)[1]["error"] == "already_approved"
    assert call("GET /approvals", SECURITY)[1]["count"] == 0
    assert call("GET /approvals", CAROL)[1]["requests"][0]["request_id"] == request_id

    status, out = approve(request_id, CAROL)
    assert out["request"]["status"] == "PENDING"
    assert out["request"]["approval_progress"][1] == {
        "level": 2,
        "name": "security",
        "approved": 0,
        "required": 1,
    }
    assert stack.bus_events() == []
    assert call("GET /approvals", CAROL)[1]["count"] == 0
    assert call("GET /approvals", SECURITY)[1]["count"] == 1

    status, out = approve(request_id, SECURITY)
    assert (status, out["request"]["status"]) == (200, "APPROVED")
    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["approver_arns"] == [BOB, CAROL, SECURITY]
    [granted] = [handler("grant_access")(bus_event, CONTEXT)]
    assert granted["result"] == "granted"


def test_rule_limits_duration(deployed: Stack) -> None:
    status, out = call(
        "POST /requests",
        ALICE,
        body={
            "instance_id": deployed.instance(tags={"Environment": "prod"}),
            "reason": "x",
            "duration_minutes": 45,
        },
    )
    assert (status, out["error"]) == (400, "invalid_duration")


def test_no_rule_for_the_instance_is_refused(deployed: Stack) -> None:
    set_policy(deployed, {"version": 1, "rules": [POLICY["rules"][0]]})
    status, out = call("POST /requests", ALICE, body={"instance_id": deployed.instance(), "reason": "x"})
    assert (status, out["error"]) == (403, "no_matching_rule")


def test_invalid_policy_fails_closed(deployed: Stack) -> None:
    set_policy(deployed, '{"version": 1, "rules": [{"name": "x", "levels": []}]}')
    status, out = call("POST /requests", ALICE, body={"instance_id": deployed.instance(), "reason": "x"})
    assert (status, out["error"]) == (503, "policy_unavailable")


# ---------------------------------------------------------------------------------------- denials
def test_requester_cannot_approve_their_own_request(deployed: Stack) -> None:
    request_id = create(deployed)
    assert approve(request_id, ALICE) == (
        403,
        {"error": "self_approval", "message": "you cannot approve or reject your own request"},
    )
    assert deployed.bus_events() == []


def test_another_session_of_the_requesting_role_is_the_operator(deployed: Stack) -> None:
    """Bob's role is an approver role, but a grant to the role would give Carol's session access too."""
    deployed.role(APPROVERS_ROLE)
    request_id = create(deployed, caller=BOB)
    status, out = approve(request_id, CAROL)
    assert (status, out["error"]) == (403, "approver_is_operator")
    assert approve(request_id, DAVE)[0] == 200


def test_one_person_cannot_approve_twice_through_two_session_names(deployed: Stack) -> None:
    """Ordinary role sessions are named by whoever assumes the role: they count as one approver."""
    lead = f"arn:aws:iam::{ACCOUNT}:role/TeamLead"
    set_policy(
        deployed,
        {"version": 1, "rules": [{"name": "two", "levels": [{"approvers": [lead], "min_approvals": 2}]}]},
    )
    request_id = create(deployed)
    first = f"arn:aws:sts::{ACCOUNT}:assumed-role/TeamLead/bob"
    assert approve(request_id, first)[0] == 200
    status, out = approve(request_id, f"arn:aws:sts::{ACCOUNT}:assumed-role/TeamLead/bob-again")
    assert (status, out["error"]) == (409, "already_approved")
    assert deployed.bus_events() == []


def test_the_requester_in_another_permission_set_is_still_the_requester(deployed: Stack) -> None:
    ops = "AWSReservedSSO_Ops_fedcba9876543210"
    deployed.role(ops)
    request_id = create(deployed, caller=f"arn:aws:sts::{ACCOUNT}:assumed-role/{ops}/bob@example.com")
    assert approve(request_id, BOB)[1]["error"] == "self_approval"
    assert approve(request_id, CAROL)[0] == 200


def test_the_scheduled_sweep_expires_pending_requests_nobody_looked_at(deployed: Stack) -> None:
    stack = deployed
    old = create(stack)
    stack.clock.advance(timedelta(minutes=59))
    fresh = create(stack)
    stack.notifications()
    stack.clock.advance(timedelta(minutes=2))

    result = sweep()

    assert result == {"result": "swept", "expired": 1, "reemitted": 0, "settled": 0}
    [note] = stack.notifications()
    assert note["attributes"]["event_type"] == "AccessRequestExpired"
    assert note["message"]["request_id"] == old
    statuses = {
        r: call("GET /requests/{id}", ALICE, request_id=r)[1]["request"]["status"] for r in (old, fresh)
    }
    assert statuses == {old: "EXPIRED", fresh: "PENDING"}
    # A second run finds nothing more to do.
    assert sweep()["expired"] == 0


def test_not_an_approver(deployed: Stack) -> None:
    request_id = create(deployed)
    assert approve(request_id, EVE)[1]["error"] == "not_an_approver"
    status, out = call("GET /requests/{id}", EVE, request_id=request_id)
    assert (status, out["error"]) == (403, "not_allowed")


def test_pending_request_expires(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack)
    stack.notifications()
    stack.clock.advance(timedelta(minutes=60))
    status, out = approve(request_id, BOB)
    assert (status, out["error"]) == (409, "request_expired")
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "EXPIRED"
    assert event_types(stack) == ["AccessRequestExpired"]
    assert stack.bus_events() == []
    assert call("GET /approvals", BOB)[1]["count"] == 0


def test_cancel_only_by_the_requester_and_only_pending(deployed: Stack) -> None:
    request_id = create(deployed)
    status, out = call("POST /requests/{id}/cancel", BOB, request_id=request_id)
    assert (status, out["error"]) == (403, "not_requester")
    status, out = call(
        "POST /requests/{id}/cancel", ALICE, request_id=request_id, body={"reason": "fixed it"}
    )
    assert (status, out["request"]["status"]) == (200, "CANCELLED")
    assert approve(request_id, BOB)[1]["error"] == "not_pending"
    assert call("POST /requests/{id}/cancel", ALICE, request_id=request_id)[1]["error"] == "not_pending"


def test_reject_needs_a_comment_and_an_approver(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack)
    stack.notifications()
    route = "POST /requests/{id}/reject"
    assert call(route, BOB, request_id=request_id)[1]["error"] == "missing_comment"
    assert call(route, EVE, request_id=request_id, body={"comment": "no"})[1]["error"] == "not_an_approver"
    assert call(route, ALICE, request_id=request_id, body={"comment": "no"})[1]["error"] == "self_approval"
    status, out = call(route, BOB, request_id=request_id, body={"comment": "use the runbook instead"})
    assert (status, out["request"]["status"], out["request"]["comment"]) == (
        200,
        "REJECTED",
        "use the runbook instead",
    )
    [note] = stack.notifications()
    assert note["attributes"]["event_type"] == "AccessRejected"
    assert note["message"]["comment"] == "use the runbook instead"
    assert approve(request_id, CAROL)[1]["error"] == "not_pending"


def test_revoke_by_an_unrelated_caller_is_refused_and_by_an_approver_allowed(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack)
    approve(request_id, BOB)
    grant_from_bus(stack)
    status, out = call("POST /requests/{id}/revoke", EVE, request_id=request_id)
    assert (status, out["error"]) == (403, "not_allowed")
    assert stack.tags("user", "alice") != {}
    status, out = call("POST /requests/{id}/revoke", CAROL, request_id=request_id)
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    assert stack.tags("user", "alice") == {}


def test_a_session_named_like_an_approver_is_not_that_approver(deployed: Stack) -> None:
    """Seeing a request because one approved it is a permission: the very approver only, not everyone
    who may be the same person (a session of another role named "dave" may be dave, or may not)."""
    request_id = create(deployed)
    assert approve(request_id, DAVE)[0] == 200
    assert call("GET /requests/{id}", DAVE, request_id=request_id)[0] == 200
    status, out = call(
        "GET /requests/{id}", f"arn:aws:sts::{ACCOUNT}:assumed-role/Other/dave", request_id=request_id
    )
    assert (status, out["error"]) == (403, "not_allowed")


def test_revoke_before_the_grant_stops_the_grant(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack)
    approve(request_id, BOB)
    status, out = call("POST /requests/{id}/revoke", ALICE, request_id=request_id)
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    # The grant reads no request record (the event carries the signed approval): its transaction
    # finds the tombstone the revocation left and records the grant REVOKED, untagged.
    [outcome] = grant_from_bus(stack)
    assert outcome["result"] == "revoked"
    assert stack.tags("user", "alice") == {}
    grant = stack.engine().ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert grant.status is GrantStatus.REVOKED


def test_duplicate_open_request_for_the_same_instance_is_refused(deployed: Stack) -> None:
    instance = deployed.instance()
    create(deployed, instance_id=instance)
    status, out = call("POST /requests", ALICE, body={"instance_id": instance, "reason": "again"})
    assert (status, out["error"]) == (409, "duplicate_request")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reason": "x"}, "invalid_instance_id"),
        ({"instance_id": "i-123", "reason": "x"}, "invalid_instance_id"),
        ({"instance_id": "i-0a1b2c3d4e5f60718"}, "missing_reason"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "   "}, "missing_reason"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "ok\u2028APPROVED"}, "invalid_reason"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "\u200b\u200b"}, "invalid_reason"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "duration_minutes": 0}, "invalid_duration"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "duration_minutes": 61}, "invalid_duration"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "duration_minutes": "10"}, "invalid_duration"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "ticket": "a b"}, "invalid_ticket"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "break_glass": "yes"}, "invalid_break_glass"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "requester_arn": BOB}, "identity_in_body"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "principal_name": "bob"}, "identity_in_body"),
        ({"instance_id": "i-0a1b2c3d4e5f60718", "reason": "x", "colour": "red"}, "unknown_field"),
        (["not", "an", "object"], "invalid_body"),
    ],
)
def test_bad_input_is_a_400(deployed: Stack, body: Any, code: str) -> None:
    status, out = call("POST /requests", ALICE, body=body)
    assert (status, out["error"]) == (400, code)
    assert set(out) == {"error", "message"}


def test_malformed_requests(deployed: Stack) -> None:
    assert call("POST /requests", ALICE, raw_body="{not json")[1]["error"] == "invalid_body"
    assert call("POST /requests", None, body={})[0] == 401
    status, out = call("POST /requests", f"arn:aws:iam::{ACCOUNT}:root", body={})
    assert (status, out["error"]) == (403, "unsupported_caller")
    status, out = call("POST /requests", f"arn:aws:sts::{ACCOUNT}:federated-user/x", body={})
    assert (status, out["error"]) == (403, "unsupported_caller")
    assert call("GET /requests/{id}", ALICE, request_id="../../etc")[0] == 404
    assert call("GET /requests/{id}", ALICE, request_id="0" * 32)[0] == 404
    assert call("DELETE /requests", ALICE)[0] == 404
    assert call("GET /requests", ALICE, query={"limit": "500"})[1]["error"] == "invalid_limit"
    status, out = call("POST /requests", ALICE, body={"instance_id": "i-0123456789abcdef0", "reason": "x"})
    assert (status, out["error"]) == (404, "instance_not_found")
    status, out = call(
        "POST /requests",
        f"arn:aws:iam::{ACCOUNT}:user/ghost",
        body={"instance_id": deployed.instance(), "reason": "x"},
    )
    assert (status, out["error"]) == (403, "principal_not_found")
    status, out = call(
        "POST /requests",
        "arn:aws:iam::210987654321:user/alice",
        body={"instance_id": deployed.instance(), "reason": "x"},
    )
    assert (status, out["error"]) == (403, "account_not_allowed")


def test_list_mine_shows_only_my_requests(deployed: Stack) -> None:
    deployed.user("dave")
    mine = create(deployed)
    create(deployed, caller=DAVE)
    status, out = call("GET /requests", ALICE)
    assert status == 200
    assert [r["request_id"] for r in out["requests"]] == [mine]


# ------------------------------------------------------------------------- reads never write, emit or revoke
def stored(request_id: str) -> Request:
    record = request_api().service.store.get(request_id)
    assert record is not None
    return record


def read_everything(request_id: str) -> list[str]:
    """Every read route, as the requester and as an approver; the statuses they report."""
    statuses = [
        call("GET /requests/{id}", who, request_id=request_id)[1]["request"]["status"] for who in (ALICE, BOB)
    ]
    statuses += [
        r["status"] for r in call("GET /requests", ALICE)[1]["requests"] if r["request_id"] == request_id
    ]
    call("GET /approvals", BOB)
    return statuses


def test_a_read_never_hands_a_forged_approval_to_the_engine(deployed: Stack) -> None:
    """Finding 2: with dynamodb:PutItem one writes an APPROVED record naming any approver; reading it
    must not emit it (nor write it), and the sweep hands over only what the request API approved."""
    stack = deployed
    forged = make_request(
        request_id="f" * 32,
        status=RequestStatus.APPROVED,
        instance_id=stack.instance(),
        reason="forged",
        created_at="2026-11-24T08:59:00Z",
        pending_expires_at="2026-11-24T09:59:00Z",
        rule="default",
        approvals=(Approval(BOB, 0, "2026-11-24T08:59:30Z"),),
        approver_arns=(BOB,),
        approved_at="2026-11-24T08:59:30Z",
        decided_by=BOB,
        # Looks like a MAC, but only the request API role can make a valid one (ApprovalKey).
        approval_mac=base64.b64encode(b"\x01" * 32).decode(),
    )
    assert request_api().service.store.create(forged)  # what PutItem on the table does

    assert read_everything(forged.request_id) == ["APPROVED"] * 3
    assert stack.bus_events() == []
    assert stored(forged.request_id) == forged  # not written (version, emitted_at, history unchanged)

    stack.clock.advance(timedelta(minutes=5))
    assert sweep() == {"result": "swept", "expired": 0, "reemitted": 0, "settled": 0}
    assert stack.bus_events() == []
    assert stack.engine().ledger.get_grant(forged.grant_id) is None
    assert stack.tags("user", "alice") == {}


def test_a_failed_hand_over_is_repeated_by_the_sweep_not_by_a_read(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack)
    faults = FaultInjector()
    faults.attach(stack.client("events"))
    faults.add("events:PutEvents", "InternalException", times=10, status=500)
    try:
        status, out = approve(request_id, BOB)
    finally:
        faults.detach()
    assert (status, out["error"]) == (503, "temporarily_unavailable")
    before = stored(request_id)
    assert (before.status, before.emitted_at) == (RequestStatus.APPROVED, None)

    stack.clock.advance(timedelta(minutes=2))
    assert read_everything(request_id) == ["APPROVED"] * 3
    assert stack.bus_events() == []
    assert stored(request_id) == before

    # The sweep hands over again what the request API approved (its approval MAC says so).
    assert before.approval_mac
    assert sweep()["reemitted"] == 1
    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["approver_arns"] == [BOB]
    assert handler("grant_access")(bus_event, CONTEXT)["result"] == "granted"
    handed_over = stored(request_id)
    assert handed_over.emitted_at is not None

    # A read reports what the ledger says, and still writes nothing.
    view = call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]
    assert (view["status"], view["expires_at"]) == ("ACTIVE", "2026-11-24T09:12:00Z")
    assert [h["status"] for h in view["history"]] == ["PENDING", "APPROVED", "ACTIVE"]
    assert stored(request_id) == handed_over
    # The sweep writes it, once; the record then leaves the sweep's list.
    assert sweep() == {"result": "swept", "expired": 0, "reemitted": 0, "settled": 1}
    assert stored(request_id).status is RequestStatus.ACTIVE
    assert sweep()["settled"] == 0
    assert stack.bus_events() == []


def test_a_read_past_the_pending_ttl_reports_expired_and_writes_nothing(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack)
    stack.notifications()
    before = stored(request_id)
    stack.clock.advance(timedelta(minutes=61))

    assert read_everything(request_id) == ["EXPIRED"] * 3
    assert call("GET /approvals", BOB)[1]["count"] == 0
    assert stored(request_id) == before
    assert stack.notifications() == []

    assert sweep()["expired"] == 1
    assert stored(request_id).status is RequestStatus.EXPIRED
    assert event_types(stack) == ["AccessRequestExpired"]


def test_a_read_revokes_nothing(deployed: Stack) -> None:
    """A record marked REVOKED while its grant is ACTIVE (written before revocations left a tombstone):
    reading it must not revoke (the engine's revoke path and the sweep do that)."""
    stack = deployed
    request_id = active(stack)
    stack.notifications()
    record = stored(request_id)
    service = request_api().service
    revoked = record.transition(
        RequestStatus.REVOKED, at=stack.clock.now(), by=ALICE, version=record.version + 1
    )
    assert service.store.replace(revoked, expected_version=record.version)

    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "REVOKED"
    call("GET /requests", ALICE)

    assert stack.tags("user", "alice") != {}
    grant = stack.engine().ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert grant.status is GrantStatus.ACTIVE
    assert stack.notifications() == []
    assert stored(request_id) == revoked


# ----------------------------------------------------------------------- revocation during provisioning
def test_a_revocation_after_the_grants_check_is_honoured(
    deployed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 12: the grant verifies the record APPROVED; then "I'm done" lands, finds no grant yet and
    answers REVOKED; the grant must then not go ACTIVE."""
    stack = deployed
    request_id = create(stack)
    approve(request_id, BOB)
    stack.notifications()
    answers: list[tuple[int, dict[str, Any]]] = []
    verify = NativeVerifier.verify

    def verify_then_revoke(self: NativeVerifier, request: Any, *more: Any) -> Any:
        denials = verify(self, request, *more)
        answers.append(call("POST /requests/{id}/revoke", ALICE, request_id=request_id))
        return denials

    monkeypatch.setattr(NativeVerifier, "verify", verify_then_revoke)
    [outcome] = grant_from_bus(stack)

    [(status, out)] = answers
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    assert outcome["result"] == "revoked", outcome
    assert stack.tags("user", "alice") == {}
    grant = stack.engine().ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by) == (GrantStatus.REVOKED, "done", ALICE)
    assert event_types(stack) == ["AccessRevoked"]
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "REVOKED"


def test_a_revocation_between_the_grants_transaction_and_its_tag_is_honoured(
    deployed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approver revokes after the grant's transaction opened it ACTIVE (slot lock held, revocation
    scheduled) and before it tagged. The revocation waits out the bind window (``core/revoke.py``, on
    the virtual clock), untags while the lock names the grant and ends it REVOKED; the API answers
    REVOKED. The grant, past its window, refuses to tag (TransientError, so Lambda retries) and its
    retry is a duplicate: the tag never exists, the grant is announced granted and revoked, once each."""
    stack = deployed
    request_id = create(stack)
    approve(request_id, BOB)
    stack.notifications()
    answers: list[tuple[int, dict[str, Any]]] = []
    opened_at: list[Any] = []
    create_once = Schedules.create_once

    def schedule_then_revoke(self: Schedules, *args: Any, **kwargs: Any) -> Any:
        result = create_once(self, *args, **kwargs)
        opened_at.append(stack.clock.now())
        answers.append(call("POST /requests/{id}/revoke", CAROL, request_id=request_id))
        return result

    monkeypatch.setattr(Schedules, "create_once", schedule_then_revoke)
    [bus_event] = stack.bus_events()
    with pytest.raises(TransientError, match="bind window"):
        handler("grant_access")(bus_event, CONTEXT)
    monkeypatch.undo()

    [(status, out)] = answers
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    # The revocation waited (virtual time) until the grant could no longer start its tag call.
    assert stack.clock.now() - opened_at[0] >= BIND_WINDOW + TAG_CALL_BOUND
    assert stack.tags("user", "alice") == {}
    grant = stack.engine().ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by) == (GrantStatus.REVOKED, "revoked", CAROL)
    assert stack.engine().ledger.slot_holder(ALICE, 1) is None
    # The transaction made the record ACTIVE (its stream record is AccessGranted, which may precede the
    # tag: README "Order with the tag"); the revocation's write is AccessRevoked.
    assert event_types(stack) == ["AccessGranted", "AccessRevoked"]
    # Lambda's retry of the grant: a duplicate of the REVOKED record; nothing tagged or announced.
    assert handler("grant_access")(bus_event, CONTEXT)["result"] == "duplicate"
    assert stack.tags("user", "alice") == {}
    assert stack.notifications() == []


# ---------------------------------------------------------------------------------------- break-glass
def test_break_glass_self_approval_is_capped_flagged_and_notified(deployed: Stack) -> None:
    stack = deployed
    prod = stack.instance(tags={"Environment": "prod"})
    reason = "prod is down, database failover stuck"
    base = {"instance_id": prod, "break_glass": True}
    short = call("POST /requests", ALICE, body={**base, "reason": "urgent"})
    assert (short[0], short[1]["error"]) == (400, "break_glass_reason_too_short")
    long = call("POST /requests", ALICE, body={**base, "reason": reason, "duration_minutes": 20})
    assert (long[0], long[1]["error"]) == (400, "break_glass_duration_over_cap")
    elsewhere = call(
        "POST /requests", ALICE, body={**base, "instance_id": stack.instance(), "reason": reason}
    )
    assert (elsewhere[0], elsewhere[1]["error"]) == (403, "break_glass_not_allowed")

    status, out = call("POST /requests", ALICE, body={**base, "reason": reason, "duration_minutes": 15})
    assert status == 201, out
    request = out["request"]
    assert (request["status"], request["break_glass"]) == ("APPROVED", True)
    assert request["approvals"][0]["approver_arn"] == ALICE
    [note] = stack.notifications()
    assert note["attributes"]["event_type"] == "BreakGlassUsed"
    assert note["message"]["notify_approvers"] == sorted(
        {p for level in POLICY["rules"][0]["levels"] for p in level["approvers"]}
    )
    assert note["subject"] == f"SessionGate: BREAK-GLASS alice on {prod}"
    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["approver_arns"] == [BREAK_GLASS_APPROVER]
    assert bus_event["detail"]["reason"].startswith("[BREAK-GLASS] ")
    [outcome] = [handler("grant_access")(bus_event, CONTEXT)]
    assert outcome["result"] == "granted", outcome
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": prod}


def test_break_glass_is_limited_per_day(deployed: Stack) -> None:
    """Self-approval is for emergencies: after max_per_day uses in 24 hours, approvers are needed."""
    stack = deployed
    policy = json.loads(json.dumps(POLICY))
    policy["rules"][0]["break_glass"]["max_per_day"] = 2
    set_policy(stack, policy)
    reason = "prod is down, database failover stuck"

    def glass() -> tuple[int, dict[str, Any]]:
        body = {"instance_id": stack.instance(tags={"Environment": "prod"}), "break_glass": True}
        return call("POST /requests", ALICE, body={**body, "reason": reason, "duration_minutes": 10})

    assert glass()[0] == 201
    stack.clock.advance(timedelta(hours=1))
    assert glass()[0] == 201
    status, out = glass()
    assert (status, out["error"]) == (403, "break_glass_quota")
    assert "2 time(s) in the last 24 hours" in out["message"]
    stack.clock.advance(timedelta(hours=23, minutes=1))  # the first use is now older than a day
    assert glass()[0] == 201


# ---------------------------------------------------------------------------------------- extend
def test_extend_is_a_new_approval_then_the_old_grant_is_revoked(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack, duration_minutes=10)
    approve(request_id, BOB)
    grant_from_bus(stack)
    instance = call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["instance_id"]
    stack.clock.advance(timedelta(minutes=8))

    assert call("POST /requests/{id}/extend", BOB, request_id=request_id, body={"reason": "x"})[1][
        "error"
    ] == ("not_requester")
    status, out = call(
        "POST /requests/{id}/extend",
        ALICE,
        request_id=request_id,
        body={"reason": "still digging", "duration_minutes": 20},
    )
    assert status == 201, out
    child_id = out["request"]["request_id"]
    assert child_id == f"{request_id}-x1"
    assert out["request"]["extends"] == request_id
    assert approve(child_id, ALICE)[1]["error"] == "self_approval"
    assert approve(child_id, CAROL)[1]["request"]["status"] == "APPROVED"
    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["grant_id"] == f"rq-{request_id}-x1"
    assert len(bus_event["detail"]["grant_id"]) <= 48
    assert handler("grant_access")(bus_event, CONTEXT)["result"] == "granted"
    # Both grants hold a slot until the sweep sees the new one active (a read retires nothing).
    assert stack.tags("user", "alice") == {
        "SecurityAllowSessionInstance": instance,
        "SecurityAllowSessionInstance2": instance,
    }

    child = call("GET /requests/{id}", ALICE, request_id=child_id)[1]["request"]
    assert child["status"] == "ACTIVE"
    assert child["grant"]["expires_at"] == "2026-11-24T09:28:00Z"
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "ACTIVE"
    assert len(stack.tags("user", "alice")) == 2
    assert sweep()["settled"] == 1  # the extension's record is written ACTIVE, the old grant retired
    parent = call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]
    assert (parent["status"], parent["comment"]) == ("REVOKED", "extended")
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance2": instance}

    # "I'm done" on the original request also ends the extension.
    status, out = call("POST /requests/{id}/revoke", ALICE, request_id=child_id)
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    assert stack.tags("user", "alice") == {}


def test_an_extension_can_be_extended_and_done_ends_the_whole_chain(deployed: Stack) -> None:
    stack = deployed
    request_id = active(stack)
    x1 = extend(request_id)
    approve(x1, CAROL)
    grant_from_bus(stack)
    assert call("GET /requests/{id}", ALICE, request_id=x1)[1]["request"]["status"] == "ACTIVE"

    status, out = call("POST /requests/{id}/extend", ALICE, request_id=x1, body={"reason": "even more"})
    assert status == 201, out
    x2 = out["request"]["request_id"]
    assert (x2, out["request"]["extends"]) == (f"{request_id}-x2", x1)  # numbered on the first request

    # "I'm done" on the live extension also withdraws the pending one: it can never bring access back.
    assert call("POST /requests/{id}/revoke", ALICE, request_id=x1)[1]["request"]["status"] == "REVOKED"
    assert call("GET /requests/{id}", ALICE, request_id=x2)[1]["request"]["status"] == "CANCELLED"
    assert approve(x2, CAROL)[0] == 409
    assert stack.tags("user", "alice") == {}


def test_done_on_the_first_request_ends_the_extension_that_replaced_it(deployed: Stack) -> None:
    """Users keep the first id: "I'm done" on it must end the live extension, not answer not_active."""
    stack = deployed
    request_id = active(stack)
    x1 = extend(request_id)
    approve(x1, CAROL)
    grant_from_bus(stack)
    sweep()  # retires the first request's grant
    assert call("GET /requests/{id}", ALICE, request_id=x1)[1]["request"]["status"] == "ACTIVE"
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "REVOKED"

    status, out = call("POST /requests/{id}/revoke", ALICE, request_id=request_id)

    assert status == 200, out
    assert call("GET /requests/{id}", ALICE, request_id=x1)[1]["request"]["status"] == "REVOKED"
    assert stack.tags("user", "alice") == {}
    status, out = call("POST /requests/{id}/revoke", ALICE, request_id=request_id)
    assert (status, out["error"]) == (409, "not_active")  # nothing of this access is live any more


def test_a_second_pending_extension_stays_approvable_while_the_access_lives(deployed: Stack) -> None:
    stack = deployed
    request_id = active(stack)
    x1, x2 = extend(request_id), extend(request_id, "even more")
    approve(x1, CAROL)
    grant_from_bus(stack)  # x1 replaces the first request, which is now REVOKED (extended)
    status, out = approve(x2, CAROL)
    assert (status, out["request"]["status"]) == (200, "APPROVED")


def test_extend_needs_active_access(deployed: Stack) -> None:
    request_id = create(deployed)
    status, out = call("POST /requests/{id}/extend", ALICE, request_id=request_id, body={"reason": "more"})
    assert (status, out["error"]) == (409, "not_active")


# ---------------------------------------------------------------------------------------- verifier
def test_forged_native_events_are_denied_by_the_verifier(deployed: Stack) -> None:
    stack = deployed
    pending_id = create(stack)
    forged = stack.approved(
        instance_id=stack.instance(),
        principal="alice",
        requester=ALICE,
        approvers=(BOB,),
        grant_id=f"rq-{pending_id}",
        origin=Origin.NATIVE,
    )
    forged = replace(forged, origin_ref=pending_id)
    outcome = handler("grant_access")(stack.event(forged), CONTEXT)
    assert [d["code"] for d in outcome["denials"]] == ["origin_not_approved"]  # 1 of N-of-M is not enough

    unknown = replace(forged, grant_id=f"rq-{'e' * 32}", origin_ref="e" * 32)
    outcome = handler("grant_access")(stack.event(unknown), CONTEXT)
    assert [d["code"] for d in outcome["denials"]] == ["origin_not_found"]

    approved_id = create(stack)
    approve(approved_id, BOB)
    [real] = stack.bus_events()
    tampered = json.loads(json.dumps(real))
    tampered["detail"]["duration_minutes"] = 60
    tampered["detail"]["approver_arns"] = [CAROL]
    outcome = handler("grant_access")(tampered, CONTEXT)
    [denial] = outcome["denials"]
    assert denial["code"] == "origin_mismatch"
    assert "duration_minutes" in denial["message"]
    assert "approver_arns" in denial["message"]
    assert stack.tags("user", "alice") == {}


# ---------------------------------------------------------------------------------------- rule changes
def test_approval_after_the_instance_moved_to_another_rule_is_refused(deployed: Stack) -> None:
    """Re-tagging prod -> dev must not turn a two-level request into a one-level one."""
    stack = deployed
    instance = stack.instance(tags={"Environment": "prod"})
    request_id = create(stack, instance_id=instance, duration_minutes=20)
    stack.client("ec2").create_tags(Resources=[instance], Tags=[{"Key": "Environment", "Value": "dev"}])
    status, out = approve(request_id, BOB)
    assert (status, out["error"]) == (409, "rule_changed")
    assert "'prod'" in out["message"]
    assert "'default'" in out["message"]
    assert call("GET /approvals", BOB)[1]["count"] == 0
    assert stack.bus_events() == []
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "PENDING"


# ---------------------------------------------------------------------------------------- default duration
def test_default_duration_respects_the_rule_and_break_glass_caps(deployed: Stack) -> None:
    stack = deployed
    policy = json.loads(json.dumps(POLICY))
    policy["rules"][0]["max_duration_minutes"] = 8  # below the global default (15)
    policy["rules"][0]["break_glass"]["max_duration_minutes"] = 5
    set_policy(stack, policy)
    prod = stack.instance(tags={"Environment": "prod"})
    status, out = call("POST /requests", ALICE, body={"instance_id": prod, "reason": "look"})
    assert status == 201, out
    assert out["request"]["duration_minutes"] == 8
    assert call("POST /requests/{id}/cancel", ALICE, request_id=out["request"]["request_id"])[0] == 200
    reason = "prod is down, database failover stuck"
    status, out = call(
        "POST /requests", ALICE, body={"instance_id": prod, "reason": reason, "break_glass": True}
    )
    assert status == 201, out
    assert out["request"]["duration_minutes"] == 5
    # Elsewhere the global default still applies.
    status, out = call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "x"})
    assert out["request"]["duration_minutes"] == stack.settings.default_validity_minutes


def test_default_extension_duration_respects_the_rule_cap(deployed: Stack) -> None:
    stack = deployed
    request_id = create(stack, tags={"Environment": "prod"}, duration_minutes=5)
    for approver in (BOB, CAROL, SECURITY):
        approve(request_id, approver)
    grant_from_bus(stack)
    policy = json.loads(json.dumps(POLICY))
    policy["rules"][0]["max_duration_minutes"] = 7
    set_policy(stack, policy)
    stack.clock.advance(timedelta(minutes=1))  # the policy is cached briefly
    status, out = call("POST /requests/{id}/extend", ALICE, request_id=request_id, body={"reason": "more"})
    assert status == 201, out
    assert out["request"]["duration_minutes"] == 7


# ------------------------------------------------------------------------------- revoke vs pending extension
def test_revoke_cancels_a_pending_extension_which_can_then_not_be_approved(deployed: Stack) -> None:
    stack = deployed
    request_id = active(stack)
    child_id = extend(request_id)
    stack.notifications()

    status, out = call("POST /requests/{id}/revoke", ALICE, request_id=request_id, body={"reason": "done"})
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    child = call("GET /requests/{id}", ALICE, request_id=child_id)[1]["request"]
    assert (child["status"], child["comment"]) == ("CANCELLED", "access revoked")
    assert "AccessRequestCancelled" in event_types(stack)
    assert approve(child_id, CAROL)[1]["error"] == "not_pending"
    assert stack.bus_events() == []
    assert stack.tags("user", "alice") == {}


def test_an_extension_of_revoked_access_cannot_be_approved(deployed: Stack) -> None:
    """Even if the cascade missed the extension (e.g. written before this fix), approval refuses it."""
    stack = deployed
    request_id = active(stack)
    child_id = extend(request_id)
    service = request_api().service
    parent = service.store.get(request_id)
    assert parent is not None
    service._revoke(parent, reason="done", by=ALICE, comment="")  # the parent alone, as before the fix
    status, out = approve(child_id, CAROL)
    assert (status, out["error"]) == (409, "parent_not_live")
    assert stack.bus_events() == []
    assert stack.tags("user", "alice") == {}


# ---------------------------------------------------------------------------------------- member accounts
@pytest.fixture
def member(deployed: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A member account with alice and an instance; the handlers act there through the member role."""
    stack = deployed
    stack.settings = replace(stack.settings, member_accounts=(MEMBER,), member_external_id="org-secret-1")
    for name, value in environment(stack.settings).items():
        monkeypatch.setenv(name, value)

    stack.deploy(client=stack.native_client, member_client=stack.member_client)
    session = member_session(stack)
    session.client("iam").create_user(UserName="alice")
    return session


def member_instance(stack: Stack, session: Any, **tags: str) -> str:
    kwargs: dict[str, Any] = {"ImageId": "ami-12c6146b", "MinCount": 1, "MaxCount": 1}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    instance: str = session.client("ec2").run_instances(**kwargs)["Instances"][0]["InstanceId"]
    stack.ssm.managed.add(instance)
    return instance


def member_tags(session: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in session.client("iam").list_user_tags(UserName="alice")["Tags"]}


MEMBER_ALICE = f"arn:aws:iam::{MEMBER}:user/alice"  # alice with her own identity in the member account


def test_a_request_from_a_member_account_is_granted_and_revoked_there(deployed: Stack, member: Any) -> None:
    """alice calls with her member-account identity: the request is for her there, on an instance there."""
    stack = deployed
    instance = member_instance(stack, member, Environment="prod")
    status, out = call(
        "POST /requests", MEMBER_ALICE, body={"instance_id": instance, "reason": "replication"}
    )
    assert status == 201, out
    request = out["request"]
    assert request["account"] == MEMBER
    assert request["rule"] == "prod"  # matched on the member instance's tags
    assert request["principal_arn"] == MEMBER_ALICE
    assert request["requester_arn"] == MEMBER_ALICE
    request_id = request["request_id"]
    for approver in (BOB, CAROL, SECURITY):
        assert approve(request_id, approver)[0] == 200
    [bus_event] = stack.bus_events()
    assert bus_event["detail"]["account"] == MEMBER
    assert handler("grant_access")(bus_event, CONTEXT)["result"] == "granted"
    assert member_tags(member) == {"SecurityAllowSessionInstance": instance}
    assert stack.client("iam").list_user_tags(UserName="alice")["Tags"] == []
    assert call("GET /requests/{id}", MEMBER_ALICE, request_id=request_id)[1]["request"]["status"] == "ACTIVE"
    # The engine account's alice is another person: she neither sees nor ends it.
    assert call("GET /requests", ALICE)[1]["requests"] == []
    assert call("POST /requests/{id}/revoke", ALICE, request_id=request_id)[0] == 403

    status, out = call("POST /requests/{id}/revoke", MEMBER_ALICE, request_id=request_id)
    assert (status, out["request"]["status"]) == (200, "REVOKED")
    assert member_tags(member) == {}


def test_the_request_api_cannot_tag_in_member_accounts(deployed: Stack, member: Any) -> None:
    """The member role may tag (for the grant function); the request API's session there may not."""
    stack = deployed
    seen: list[dict[str, Any]] = []
    stack.client("sts").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: seen.append(dict(params))
    )
    instance = member_instance(stack, member)
    status, out = call(
        "POST /requests", MEMBER_ALICE, body={"instance_id": instance, "reason": "replication"}
    )
    assert status == 201, out
    [assumed] = seen
    assert assumed["RoleArn"] == f"arn:aws:iam::{MEMBER}:role/sessiongate/SessionGateMember"
    assert assumed["RoleSessionName"] == "sessiongate-requests"
    actions = {a for st in json.loads(assumed["Policy"])["Statement"] for a in st["Action"]}
    assert {"iam:GetUser", "iam:UntagUser", "ec2:DescribeInstances"} <= actions
    assert not {a for a in actions if a.split(":")[1].startswith(("Tag", "Create", "Put", "Attach"))}
    # The grant function's own session is not narrowed (it must tag).
    request_id = out["request"]["request_id"]
    for approver in (BOB, CAROL, SECURITY):
        approve(request_id, approver)
    seen.clear()
    assert grant_from_bus(stack)[0]["result"] == "granted"
    assert [("Policy" in a, a["RoleSessionName"]) for a in seen] == [(False, "sessiongate")]


def test_member_account_requests_look_up_instance_and_principal_in_that_account(
    deployed: Stack, member: Any
) -> None:
    stack = deployed
    here = stack.instance()  # exists in the engine account only
    status, out = call("POST /requests", MEMBER_ALICE, body={"instance_id": here, "reason": "x"})
    assert (status, out["error"]) == (404, "instance_not_found")
    stack.user("dave")  # dave exists here, not in the member account
    there = member_instance(stack, member)
    status, out = call(
        "POST /requests", f"arn:aws:iam::{MEMBER}:user/dave", body={"instance_id": there, "reason": "x"}
    )
    assert (status, out["error"]) == (403, "principal_not_found")
    assert MEMBER in out["message"]


def test_a_caller_cannot_ask_for_an_instance_of_another_account(deployed: Stack, member: Any) -> None:
    """The body's ``account`` may only repeat the caller's: engine alice cannot have member alice's access
    granted (nor the other way round), whatever the account list holds."""
    stack = deployed
    here, there = stack.instance(), member_instance(stack, member)
    for who, instance, account in ((ALICE, there, MEMBER), (MEMBER_ALICE, here, ACCOUNT)):
        status, out = call(
            "POST /requests", who, body={"instance_id": instance, "reason": "x", "account": account}
        )
        assert (status, out["error"]) == (403, "cross_account"), out
    for account, expected in [("12345", (400, "invalid_account")), (210987654321, (400, "invalid_account"))]:
        status, out = call(
            "POST /requests", ALICE, body={"instance_id": here, "reason": "x", "account": account}
        )
        assert (status, out["error"]) == expected
    assert stack.bus_events() == []
    assert member_tags(member) == {}
    status, out = call("POST /requests", ALICE, body={"instance_id": here, "reason": "x", "account": ACCOUNT})
    assert (status, out["request"]["account"]) == (201, ACCOUNT)


def test_a_caller_from_an_account_sessiongate_does_not_serve_is_refused(deployed: Stack, member: Any) -> None:
    status, out = call(
        "POST /requests",
        "arn:aws:sts::555555555555:assumed-role/AWSReservedSSO_Ops_0123456789abcdef/alice@example.com",
        body={"instance_id": deployed.instance(), "reason": "x"},
    )
    assert (status, out["error"]) == (403, "account_not_allowed")


def test_member_accounts_are_refused_when_none_are_configured(deployed: Stack) -> None:
    status, out = call(
        "POST /requests", MEMBER_ALICE, body={"instance_id": deployed.instance(), "reason": "x"}
    )
    assert (status, out["error"]) == (403, "account_not_allowed")


def test_a_missing_member_role_is_a_clear_503(deployed: Stack, member: Any) -> None:
    stack = deployed
    instance = member_instance(stack, member)
    faults = FaultInjector()
    faults.attach(stack.client("sts"))
    faults.add("sts:AssumeRole", "AccessDenied", times=1, status=403)
    status, out = call("POST /requests", MEMBER_ALICE, body={"instance_id": instance, "reason": "x"})
    assert (status, out["error"]) == (503, "member_role_unavailable")
    assert MEMBER in out["message"]


def test_an_extension_is_refused_to_whom_the_rule_no_longer_lets_request(deployed: Stack) -> None:
    """The rule's requesters are checked again when extending (the policy or the instance's tags may
    have changed since the first request), as when requesting."""
    stack = deployed
    request_id = active(stack)
    narrowed = copy.deepcopy(POLICY)
    narrowed["rules"][1]["requesters"] = [DAVE]
    set_policy(stack, narrowed)
    status, out = call("POST /requests/{id}/extend", ALICE, request_id=request_id, body={"reason": "more"})
    assert (status, out["error"]) == (403, "not_a_requester")


# ------------------------------------------------------------------- issue 18: approval policy rules
def test_a_rule_requiring_a_ticket_refuses_without_one_with_a_400(deployed: Stack) -> None:
    ticketed = copy.deepcopy(POLICY)
    ticketed["rules"][1]["ticket"] = {"required": True, "pattern": "^OPS-[0-9]+$"}
    set_policy(deployed, ticketed)
    instance = deployed.instance()
    for body, code in (({}, "ticket_required"), ({"ticket": "INC-1"}, "ticket_mismatch")):
        status, out = call("POST /requests", ALICE, body={"instance_id": instance, "reason": "x", **body})
        assert (status, out["error"]) == (400, code)
    request_id = create(deployed, instance_id=instance, ticket="OPS-17")
    approve(request_id, BOB)
    assert [r["result"] for r in grant_from_bus(deployed)] == ["granted"]


def test_a_rules_cap_on_live_grants_per_person_is_a_409_at_request_and_approval(deployed: Stack) -> None:
    capped = copy.deepcopy(POLICY)
    capped["rules"][1]["max_active"] = {"per_person": 1}
    set_policy(deployed, capped)
    one = create(deployed, instance_id=deployed.instance())
    two = create(deployed, instance_id=deployed.instance())
    approve(one, BOB)
    status, out = approve(two, BOB)  # the first is handed over: it counts before the grant lands
    assert (status, out["error"]) == (409, "max_active")
    assert [r["result"] for r in grant_from_bus(deployed)] == ["granted"]
    status, out = call("POST /requests", ALICE, body={"instance_id": deployed.instance(), "reason": "x"})
    assert (status, out["error"]) == (409, "max_active")


def test_an_auto_approved_request_is_granted_and_notified_as_auto_approved(deployed: Stack) -> None:
    auto = copy.deepcopy(POLICY)
    auto["auto_approval"] = [
        {
            "name": "alice on default",
            "effect": "permit",
            "rules": [auto["rules"][1]["name"]],
            "requesters": [ALICE],
        },
        {"name": "never PCI", "effect": "forbid", "instances": {"tags": {"PCI": "*"}}},
    ]
    set_policy(deployed, auto)
    status, out = call("POST /requests", ALICE, body={"instance_id": deployed.instance(), "reason": "x"})
    assert (status, out["request"]["status"], out["request"]["auto_approval"]) == (
        201,
        "APPROVED",
        "alice on default",
    )
    assert out["request"]["approvals"][0]["kind"] == "AutoApproved"
    assert event_types(deployed)[-1] == "AutoApproved"
    [granted] = grant_from_bus(deployed)
    assert granted["result"] == "granted"
    grant = deployed.engine().ledger.get_grant(granted["grant_id"])
    assert grant is not None
    assert grant.approver_arns == [BREAK_GLASS_APPROVER]
    # A forbid wins: a PCI instance waits for people.
    pci = create(deployed, tags={"PCI": "1"})
    assert stored(pci).status is RequestStatus.PENDING


def test_a_scheduled_start_is_granted_by_the_sweep_after_its_start(deployed: Stack) -> None:
    scheduled = copy.deepcopy(POLICY)
    scheduled["rules"][1]["max_lead_minutes"] = 60
    set_policy(deployed, scheduled)
    start = deployed.clock.now() + timedelta(minutes=30)
    status, out = call(
        "POST /requests",
        ALICE,
        body={
            "instance_id": deployed.instance(),
            "reason": "x",
            "start_at": to_iso(start + timedelta(hours=1)),
        },
    )
    assert (status, out["error"]) == (400, "start_at_too_far")
    request_id = create(deployed, start_at=to_iso(start), duration_minutes=10)
    approve(request_id, BOB)
    assert deployed.bus_events() == []  # nothing handed over before the start
    deployed.clock.advance(timedelta(minutes=30))
    assert sweep()["started"] == 1
    [granted] = grant_from_bus(deployed)
    assert granted["result"] == "granted"
    grant = deployed.engine().ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert grant.expires_at == to_iso(start + timedelta(minutes=10))


def test_the_sweep_reminds_and_escalates_a_pending_request(deployed: Stack) -> None:
    reminding = copy.deepcopy(POLICY)
    reminding["rules"][1]["reminders"] = {
        "remind_after_minutes": 15,
        "escalate_after_minutes": 40,
        "escalate_to": [SECURITY],
    }
    set_policy(deployed, reminding)
    request_id = create(deployed)
    for minutes, reminded in ((15, 1), (5, None), (10, 1), (10, 1)):  # 15, 20, 30, 40 min
        deployed.clock.advance(timedelta(minutes=minutes))
        assert sweep().get("reminded") == reminded
    notes = [n for n in deployed.notifications() if n["attributes"]["event_type"].startswith("AccessRequest")]
    assert [n["attributes"]["event_type"] for n in notes] == [
        "AccessRequested",
        "AccessRequestReminder",
        "AccessRequestReminder",
        "AccessRequestEscalated",
    ]
    assert stored(request_id).reminders_sent == 2
    assert stored(request_id).escalated_at is not None
