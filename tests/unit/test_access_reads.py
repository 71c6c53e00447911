"""Reads never write the requests table, emit to the bus, notify or revoke: they derive the status."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sessiongate.access_requests.errors import NotAllowed
from tests.unit.access_world import ALICE, BOB, CAROL, caller, create, granted, new_world
from tests.unit.fakes.access import ACCOUNT, World, world


def side_effects(w: World) -> tuple[object, ...]:
    """Every write a read could make: the requests table, the bus, notifications, the grant ledger."""
    grants = {g.grant_id: (g.status, g.revoked_at) for g in w.ledger.grants.values()}
    return len(w.store.writes), len(w.bus.emitted), len(w.notifier.sent), grants, dict(w.ledger.tombstones)


def read_everything(w: World, *request_ids: str) -> list[str]:
    statuses = [w.service.get(caller(ALICE), r)["request"]["status"] for r in request_ids]
    statuses += [r["status"] for r in w.service.list_mine(caller(ALICE), 50)["requests"]]
    w.service.list_to_approve(caller(BOB), 50)
    return statuses


def test_reads_derive_expiry_active_and_revoked_from_the_ledger_without_writing() -> None:
    w = new_world()
    w.instance("i-0123456789abcdef1")
    pending = create(w, instance_id="i-0123456789abcdef1")
    live = granted(w)
    w.clock.advance(timedelta(minutes=10))
    expiry = {"grant_id": f"rq-{live}", "reason": "expired"}
    assert w.engine.on_revoke_schedule(expiry).result == "revoked"
    w.clock.advance(timedelta(minutes=51))  # the pending one's TTL has passed
    before = side_effects(w)
    assert read_everything(w, live, pending) == ["EXPIRED", "EXPIRED", "EXPIRED", "EXPIRED"]
    assert side_effects(w) == before
    assert w.store.get(live).status.value == "APPROVED"  # type: ignore[union-attr]  # the sweep writes it


def test_a_read_of_an_approved_request_shows_the_grant_as_active() -> None:
    w = new_world()
    live = granted(w)
    before = side_effects(w)
    out = w.service.get(caller(BOB), live)["request"]
    assert (out["status"], out["grant"]["status"]) == ("ACTIVE", "ACTIVE")
    assert side_effects(w) == before


def test_approvers_see_what_they_may_approve_now_and_nothing_is_written() -> None:
    w = new_world()
    request_id = create(w)
    before = side_effects(w)
    [listed] = w.service.list_to_approve(caller(BOB), 10)["requests"]
    assert listed["request_id"] == request_id
    assert w.service.list_to_approve(caller(ALICE), 10)["requests"] == []
    assert side_effects(w) == before


PICKER_POLICY: dict[str, object] = {
    "version": 1,
    "rules": [
        {
            "name": "db",
            "instances": {"tags": {"Role": "db"}},
            "requesters": [CAROL],
            "levels": [{"approvers": [BOB]}],
        },
        {
            "name": "web",
            "instances": {"tags": {"Role": "web"}},
            "levels": [{"approvers": [BOB]}],
            "max_duration_minutes": 30,
            "ticket": {"required": True},
            "break_glass": {"enabled": True, "requesters": [ALICE]},
        },
    ],
}


def test_the_picker_lists_what_the_policy_lets_the_caller_request_and_nothing_is_written() -> None:
    w = world(PICKER_POLICY, instance_required_tag=("Team", "ops"))  # denied: SessionGate=deny
    w.instance("i-0000000000000000a", Name="web-1", Role="web", Team="ops", Secret="s3cr3t")
    w.instance("i-0000000000000000b", Name="db-1", Role="db", Team="ops")  # rule db: Carol only
    w.instance("i-0000000000000000c", Role="cache", Team="ops")  # no rule covers it
    w.instance("i-0000000000000000d", Role="web", Team="ops", sessiongate="deny")  # denied, any case
    w.instance("i-0000000000000000e", Role="web", Team="dev")  # outside InstanceRequiredTag
    w.inventory.add("i-0000000000000000f", tags={"Role": "web", "team": "ops"}, state="terminated")
    before = side_effects(w)
    alice = w.service.list_requestable(caller(ALICE))
    assert alice == {
        "account": ACCOUNT,
        "truncated": False,
        "instances": [
            {
                "instance_id": "i-0000000000000000a",
                "name": "web-1",
                "state": "running",
                "rule": "web",
                "max_duration_minutes": 30,
                "ticket_required": True,
                "break_glass": {"max_duration_minutes": 15},
                "scheduled_start": False,
            }
        ],
    }
    carol = w.service.list_requestable(caller(CAROL))["instances"]
    assert [(i["instance_id"], i["break_glass"]) for i in carol] == [
        ("i-0000000000000000a", None),  # break-glass is Alice's only
        ("i-0000000000000000b", None),
    ]
    assert side_effects(w) == before


def test_the_picker_refuses_an_account_outside_sessiongate() -> None:
    w = world(PICKER_POLICY)
    with pytest.raises(NotAllowed) as refused:
        w.service.list_requestable(caller("arn:aws:iam::999999999999:user/alice"))
    assert refused.value.code == "account_not_allowed"
