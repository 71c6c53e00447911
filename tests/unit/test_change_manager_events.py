"""Change Manager triggers: which events are acted on, and malformed ones are rejected before any read."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest

from sessiongate.change_manager.events import ROUTED_STATUSES, ChangeRequestRef
from tests.unit.fakes.change_manager import EXECUTION_ID, OPS_ITEM, FrontDoor, change_request, load_event

# Every ops-item-status a Change Request Status Update can carry (botocore's OpsItemStatus enum).
OPS_ITEM_STATUSES = botocore.session.get_session().get_service_model("ssm").shape_for("OpsItemStatus").enum
NOT_ROUTED = sorted(set(OPS_ITEM_STATUSES) - set(ROUTED_STATUSES))


def test_routed_statuses_are_ops_item_statuses() -> None:
    assert set(ROUTED_STATUSES) <= set(OPS_ITEM_STATUSES)


@pytest.mark.parametrize("status", NOT_ROUTED)
def test_a_status_that_is_not_routed_is_ignored_without_reading_ssm(status: str) -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    event = load_event("change_request_approved.json")
    event["detail"]["ops-item-status"] = status

    outcome = door.adapter().on_change_request(event)

    assert (outcome.result, outcome.detail) == ("ignored", {"why": f"status {status}"})
    assert door.changes.calls == []
    assert door.recorder.rejected == []


@pytest.mark.parametrize("status", ROUTED_STATUSES)
def test_every_routed_status_reads_ssm_and_emits_the_same_grant(status: str) -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    event = load_event("change_request_approved.json")
    event["detail"]["ops-item-status"] = status

    assert door.adapter().on_change_request(event).result == "emitted"
    assert [r.grant_id for r in door.bus.emitted] == [f"cm-{EXECUTION_ID}"]
    assert door.changes.calls == ["find"]


def test_an_event_of_another_change_template_is_rejected_without_reading_ssm() -> None:
    door = FrontDoor()
    door.changes.add(change_request())
    event = load_event("change_request_approved.json")
    event["detail"]["change-template-document-name"] = "SomebodyElsesTemplate"

    outcome = door.adapter().on_change_request(event)

    assert outcome.result == "rejected"
    [problem] = door.recorder.rejected
    assert problem.field == "template"
    assert door.changes.calls == []
    assert door.bus.emitted == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e["detail"].pop("ops-item-id"), "ops-item-id"),
        (lambda e: e["detail"].update({"ops-item-id": "oi-XYZ"}), "ops-item-id"),
        (lambda e: e["detail"].update({"ops-item-id": [OPS_ITEM]}), "ops-item-id"),
        (lambda e: e["detail"].pop("ops-item-status"), "ops-item-status"),
        (lambda e: e["detail"].update({"ops-item-status": 3}), "ops-item-status"),
        (lambda e: e["detail"].pop("change-template-document-name"), "change-template-document-name"),
        (
            lambda e: e["detail"].update({"change-template-document-name": ""}),
            "change-template-document-name",
        ),
        (lambda e: e.update({"detail": "nope"}), "detail"),
        (lambda e: e.update({"source": "aws.ec2"}), "detail-type"),
        (lambda e: e.update({"detail-type": "Something Else"}), "detail-type"),
    ],
)
def test_malformed_events_are_rejected_before_any_read(mutate: Any, field: str) -> None:
    door = FrontDoor()
    event = load_event("change_request_approved.json")
    mutate(event)

    assert door.adapter().on_change_request(event).result == "rejected"
    assert [p.field for p in door.recorder.rejected] == [field]
    assert door.changes.calls == []


def test_an_event_that_is_not_an_object_is_rejected() -> None:
    door = FrontDoor()
    assert door.adapter().on_change_request(["not", "an", "event"]).result == "rejected"


def test_the_event_is_only_a_pointer() -> None:
    ref = ChangeRequestRef.from_event(load_event("change_request_approved.json"))
    assert ref == ChangeRequestRef(
        ops_item_id=OPS_ITEM,
        change_request_id=EXECUTION_ID,
        status="Approved",
        template_name="AllowSsmSessionStartTemplate",
        created_by="arn:aws:iam::123456789012:user/alice",
    )


def test_the_deferred_start_round_trips_to_the_same_pointer() -> None:
    """SessionGate's own due event (events/change_request_due.json) names the change request only and
    counts as Approved: the adapter re-reads SSM, which decides."""
    ref = ChangeRequestRef.from_event(load_event("change_request_approved.json"))
    assert ref.due_event() == load_event("change_request_due.json")
    due = ChangeRequestRef.from_event(ref.due_event())
    assert (due.ops_item_id, due.change_request_id, due.status) == (OPS_ITEM, EXECUTION_ID, "Approved")
    assert (due.template_name, due.created_by) == (None, None)
