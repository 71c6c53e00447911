"""Change Manager adapter on fakes: re-read SSM (waiting a bounded time for a lagging approval), then
ignore, deny, defer or emit."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import AccessApproved, GrantStatus, Origin
from sessiongate.errors import TransientError
from tests.unit.fakes.change_manager import (
    ALICE,
    APPROVED_AT,
    BOB,
    EXECUTION_ID,
    GRANT_ID,
    INSTANCE,
    OPS_ITEM,
    FrontDoor,
    awaiting,
    change_request,
    load_event,
)


def _approved_event(status: str = "Approved") -> dict[str, Any]:
    event = load_event("change_request_approved.json")
    event["detail"]["ops-item-status"] = status
    return event


# -- emit --------------------------------------------------------------------------------------------
def test_an_approved_change_request_emits_one_normalized_access_approved() -> None:
    door = FrontDoor()
    door.changes.add(change_request())

    outcome = door.adapter().on_change_request(_approved_event())

    assert (outcome.result, outcome.grant_id) == ("emitted", GRANT_ID)
    assert door.bus.emitted == [
        AccessApproved(
            grant_id=GRANT_ID,
            origin=Origin.CHANGE_MANAGER,
            origin_ref=OPS_ITEM,
            account="123456789012",
            instance_id=INSTANCE,
            principal_type=PrincipalType.USER,
            principal_name="alice",
            requester_arn=ALICE,
            approver_arns=(BOB,),
            duration_minutes=10,
            not_before=APPROVED_AT,
            approved_at=APPROVED_AT,
            reason=f"Shell on {INSTANCE} for alice",
        )
    ]
    # The same normalized event as the sample the grant function is tested with.
    assert door.bus.emitted[0].to_detail() == load_event("access_approved.json")["detail"]
    assert door.schedules.created == {}
    assert door.recorder.denied == {}


def test_a_change_request_ssm_cannot_single_out_is_rejected() -> None:
    door = FrontDoor()
    outcome = door.adapter().on_change_request(_approved_event())
    assert outcome.result == "rejected"
    assert [p.field for p in door.recorder.rejected] == ["ops-item-id"]
    assert door.bus.emitted == []


# -- the bounded re-read -----------------------------------------------------------------------------
def _lagging(door: FrontDoor, seconds: float) -> None:
    record = door.changes.add(change_request())
    door.changes.lag(EXECUTION_ID, awaiting(record), seconds)


def test_an_approval_ssm_shows_a_few_seconds_late_is_re_read_and_emitted() -> None:
    door = FrontDoor()
    _lagging(door, 5)

    assert door.adapter().on_change_request(_approved_event()).result == "emitted"

    assert door.clock.now() - APPROVED_AT == timedelta(seconds=7)  # waited 1 s, 2 s, 4 s: then it showed
    assert door.changes.calls == ["find"] * 4
    assert len(door.bus.emitted) == 1
    assert door.recorder.denied == {}


def test_an_approval_ssm_does_not_show_yet_is_transient_never_a_denial() -> None:
    door = FrontDoor()
    _lagging(door, 600)

    with pytest.raises(TransientError, match="not shown as approved yet"):
        door.adapter().on_change_request(_approved_event())

    assert door.clock.now() - APPROVED_AT == timedelta(seconds=15)  # bounded: 1 + 2 + 4 + 8 s
    assert door.changes.calls == ["find"] * 5
    assert (door.bus.emitted, door.recorder.denied, door.recorder.rejected) == ([], {}, [])


@pytest.mark.parametrize(
    ("budget", "waited", "reads"),
    [
        (5.9, 0, 1),  # not even the 1 s wait with its 5 s reserve: no wait at all
        (6, 1, 2),
        (11, 3, 3),  # the 1 s and 2 s waits; then 8 s are left, too few for 4 s + 5 s
        (12, 7, 4),
        (60, 15, 5),  # time for all of them
    ],
)
def test_the_re_read_never_outlives_the_invocation(budget: float, waited: int, reads: int) -> None:
    door = FrontDoor()
    _lagging(door, 600)
    deadline = APPROVED_AT + timedelta(seconds=budget)

    def remaining() -> float:
        return (deadline - door.clock.now()).total_seconds()

    with pytest.raises(TransientError):
        door.adapter().on_change_request(_approved_event(), remaining_seconds=remaining)
    assert door.clock.now() - APPROVED_AT == timedelta(seconds=waited)
    assert door.changes.calls == ["find"] * reads


def test_in_progress_without_approval_in_ssm_waits_for_a_later_event() -> None:
    """InProgress alone does not say the request was approved: no waiting, no retry, no denial."""
    door = FrontDoor()
    _lagging(door, 600)

    outcome = door.adapter().on_change_request(_approved_event("InProgress"))

    assert (outcome.result, outcome.detail) == ("ignored", {"why": "change request not approved yet"})
    assert door.clock.now() == APPROVED_AT
    assert door.changes.calls == ["find"]


def test_a_change_request_gone_during_the_re_read_is_rejected() -> None:
    door = FrontDoor()
    _lagging(door, 600)
    door.clock.sleep = lambda seconds: door.changes.records.clear()  # type: ignore[method-assign]
    assert door.adapter().on_change_request(_approved_event()).result == "rejected"


# -- undecided: nothing to record yet ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("ssm_status", "event_status"),
    [
        # Approved, but the change calendar is closed until someone approves an override.
        ("PendingChangeCalendarOverride", "Approved"),
        ("PendingChangeCalendarOverride", "RunbookInProgress"),
        # Events come in any order: InProgress after a rejection claims no approval.
        ("Rejected", "InProgress"),
        ("Cancelled", "InProgress"),
        ("Failed", "InProgress"),
    ],
)
def test_a_change_request_not_decided_for_this_event_records_nothing(
    ssm_status: str, event_status: str
) -> None:
    door = FrontDoor()
    door.changes.add(change_request(status=ssm_status))

    outcome = door.adapter().on_change_request(_approved_event(event_status))

    assert (outcome.result, outcome.detail) == ("ignored", {"why": f"change request status is {ssm_status}"})
    assert (door.bus.emitted, door.recorder.denied, door.recorder.rejected) == ([], {}, [])


def test_the_later_status_event_grants_once_the_override_is_approved() -> None:
    door = FrontDoor()
    record = door.changes.add(change_request(status="PendingChangeCalendarOverride"))
    adapter = door.adapter()
    assert adapter.on_change_request(_approved_event()).result == "ignored"

    record["AutomationExecutionStatus"] = "RunbookInProgress"
    assert adapter.on_change_request(_approved_event("RunbookInProgress")).result == "emitted"


# -- deny -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["Rejected", "Cancelled", "Failed", "TimedOut", "CompletedWithFailure"])
def test_a_final_status_after_an_event_claiming_approval_is_denied_and_recorded(status: str) -> None:
    door = FrontDoor()
    door.changes.add(change_request(status=status))

    outcome = door.adapter().on_change_request(_approved_event())

    assert (outcome.result, outcome.grant_id) == ("denied", GRANT_ID)
    record, denials = door.recorder.denied[GRANT_ID]
    assert [d.code for d in denials] == ["change_request_not_approved"]
    assert record.status is GrantStatus.DENIED
    assert (record.origin, record.origin_ref, record.account) == ("change-manager", OPS_ITEM, "123456789012")
    assert (record.requester_arn, record.created_at) == (ALICE, "2026-11-24T09:00:00Z")
    assert door.bus.emitted == []


def test_a_repeated_denied_event_is_a_duplicate() -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Rejected"))
    adapter = door.adapter()
    assert [adapter.on_change_request(_approved_event()).result for _ in range(2)] == ["denied", "duplicate"]


def test_a_denial_without_a_usable_execution_id_is_a_rejection() -> None:
    """No grant id to record the denial under: the trigger is rejected (logged, counted, notified)."""
    door = FrontDoor()
    record = change_request(status="Rejected")
    record["AutomationExecutionId"] = "not/an id"
    door.changes.add(record, check=False)

    assert door.adapter().on_change_request(_approved_event()).result == "rejected"
    [problem] = door.recorder.rejected
    assert "change request status is 'Rejected'" in str(problem)
    assert door.recorder.denied == {}


def test_an_automation_that_is_not_a_change_request_is_not_found() -> None:
    door = FrontDoor()
    record = change_request()
    record["AutomationSubtype"] = "AccessRequest"
    door.changes.add(record)
    assert door.adapter().on_change_request(_approved_event()).result == "rejected"


# -- managed node (RequireSsmManagedInstance) --------------------------------------------------------
def _unmanaged(door: FrontDoor) -> None:
    door.targets.inventory.add(INSTANCE, managed=False)


def test_an_instance_that_is_no_managed_node_is_denied_before_anything_is_emitted() -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    _unmanaged(door)

    outcome = door.adapter().on_change_request(_approved_event())

    assert (outcome.result, outcome.grant_id) == ("denied", GRANT_ID)
    record, denials = door.recorder.denied[GRANT_ID]
    assert [d.code for d in denials] == ["instance_not_managed"]
    # Recorded as the grant would have: the request's account, instance and principal.
    assert (record.status, record.account, record.instance_id, record.principal_name) == (
        GrantStatus.DENIED,
        "123456789012",
        INSTANCE,
        "alice",
    )
    assert record.principal_arn == "arn:aws:iam::123456789012:user/alice"
    assert (door.bus.emitted, door.schedules.created) == ([], {})


def test_an_unmanaged_instance_is_denied_before_a_later_start_is_deferred() -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Scheduled", scheduled=LATER))
    _unmanaged(door)

    assert door.adapter().on_change_request(_approved_event()).result == "denied"
    assert (door.bus.emitted, door.schedules.created) == ([], {})


def test_the_managed_node_check_follows_require_ssm_managed_instance() -> None:
    door = FrontDoor(settings=replace(FrontDoor().settings, require_ssm_managed=False))
    door.changes.add(change_request())
    _unmanaged(door)

    assert door.adapter().on_change_request(_approved_event()).result == "emitted"


def test_what_the_adapter_cannot_ask_is_left_to_the_grant() -> None:
    """A missing instance, or an account the engine may not reach: the grant denies it with its codes."""
    door = FrontDoor()
    door.changes.add(change_request())
    door.targets.inventory.instances.clear()
    assert door.adapter().on_change_request(_approved_event()).result == "emitted"
    door.targets.account = "210987654321"
    assert door.adapter().on_change_request(_approved_event()).result == "emitted"


# -- defer ------------------------------------------------------------------------------------------
LATER = APPROVED_AT + timedelta(hours=2)


def test_a_future_scheduled_time_defers_the_grant_until_then() -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Scheduled", scheduled=LATER))
    adapter = door.adapter()

    outcome = adapter.on_change_request(_approved_event())

    assert (outcome.result, outcome.grant_id) == ("deferred", GRANT_ID)
    assert outcome.detail == {"not_before": "2026-11-24T11:00:00Z"}
    assert door.bus.emitted == []
    [(name, (when, target, payload))] = door.schedules.created.items()
    assert (name, when, target) == (f"sg-start-{GRANT_ID}", LATER, door.settings.adapter_target_arn)
    assert payload == load_event("change_request_due.json")

    # At ScheduledTime the schedule fires: the adapter re-reads SSM and now emits.
    door.clock.set(LATER)
    assert adapter.on_change_request(payload).result == "emitted"
    [approved] = door.bus.emitted
    assert approved.not_before == LATER


def test_deferral_is_idempotent() -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Scheduled", scheduled=LATER))
    adapter = door.adapter()
    results = [adapter.on_change_request(_approved_event(s)).result for s in ("Approved", "Scheduled")]
    assert results == ["deferred", "deferred"]
    assert len(door.schedules.created) == 1


@pytest.mark.parametrize(
    ("start", "result"),
    [
        (APPROVED_AT + timedelta(seconds=60), "emitted"),  # within the engine's START_TOLERANCE
        (APPROVED_AT + timedelta(seconds=61), "deferred"),
        (APPROVED_AT - timedelta(hours=1), "emitted"),  # a past start: the approval time counts
    ],
)
def test_only_a_start_beyond_the_tolerance_is_deferred(start: datetime, result: str) -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Scheduled", scheduled=start))
    assert door.adapter().on_change_request(_approved_event()).result == result


def test_a_due_event_for_a_change_request_cancelled_meanwhile_is_denied() -> None:
    door = FrontDoor()
    door.changes.add(change_request(status="Cancelled"))
    assert door.adapter().on_change_request(load_event("change_request_due.json")).result == "denied"
