"""Shared setup of the native front door's unit tests (a policy, callers, a world of fakes)."""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.caller import Caller, caller_from_context
from sessiongate.core import slots
from sessiongate.core.model import GrantStatus
from tests.support.people import ALICE, BOB, CAROL, EVE  # noqa: F401 - the tests' callers
from tests.support.people import APPROVERS_ROLE as APPROVERS
from tests.support.people import SECURITY as SAM  # noqa: F401
from tests.unit.fakes.access import ACCOUNT, World, world

POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {
            "name": "prod",
            "instances": {"tags": {"Environment": "prod"}},
            "levels": [
                {
                    "name": "leads",
                    "approvers": [f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"],
                    "min_approvals": 2,
                },
                {"name": "security", "approvers": [f"arn:aws:iam::{ACCOUNT}:role/Security"]},
            ],
            "max_duration_minutes": 30,
            "break_glass": {
                "enabled": True,
                "max_duration_minutes": 15,
                "min_reason_length": 20,
                "max_per_day": 1,
            },
        },
        {
            "name": "default",
            "levels": [{"name": "ops", "approvers": [f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"]}],
        },
    ],
}


def caller(arn: str) -> Caller:
    return caller_from_context({"identity": {"userArn": arn, "accountId": arn.split(":")[4]}})


def new_world() -> World:
    return world(POLICY)


def create(w: World, who: str = ALICE, **body: Any) -> str:
    instance = body.pop("instance_id", None) or w.instance()
    out = w.service.create(caller(who), {"instance_id": instance, "reason": "restart nginx", **body})
    return str(out["request"]["request_id"])


def granted(w: World) -> str:
    """A request of Alice's on the default rule, approved by Bob and granted ACTIVE by the real engine."""
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    outcome = w.grant()
    assert outcome.result == "granted", outcome.detail
    return request_id


def slot_tags(w: World, user: str = "alice") -> dict[str, str]:
    """The user's SessionGate slot tags (what lets them open a session)."""
    tags = w.directory.tags_of("user", user)
    return {k: v for k, v in tags.items() if k.startswith(slots.INSTANCE_KEY) or k.startswith(slots.USER_KEY)}


def stuck_provisioning(w: World) -> str:
    """Alice's approved request whose grant, run by the previous release (records went PROVISIONING
    first), stopped after tagging: a PROVISIONING record holding slot 1, the tag on, no schedule. This
    release opens grants ACTIVE; such records stay in a deployed table and are still handled."""
    request_id = granted(w)
    record = w.ledger.grants[f"rq-{request_id}"]
    record.status, record.activated_at, record.schedule_name = GrantStatus.PROVISIONING, None, None
    w.core.schedules.schedules.clear()
    assert slot_tags(w)  # the tag is on: only the activation is missing
    return request_id
