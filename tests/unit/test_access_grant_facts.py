"""The native grant checks the signed approval the event carries instead of reading the request record,
and its one transaction checks that the record still says APPROVED with that signature (issue 16)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.core.model import AccessApproved, GrantStatus, Origin
from sessiongate.errors import InvalidInput
from tests.unit.access_world import BOB, caller, create, new_world, slot_tags
from tests.unit.fakes.access import World


def _approved(w: World, instance: str = "i-0123456789abcdef0") -> tuple[str, AccessApproved]:
    request_id = create(w, instance_id=w.instance(instance))
    w.service.approve(caller(BOB), request_id, None)
    event = w.bus.emitted[-1]
    assert event.approval is not None
    return request_id, event


def _codes(outcome: Any) -> list[str]:
    return [d["code"] for d in outcome.detail.get("denials", [])]


def _with_facts(event: AccessApproved, **changes: Any) -> AccessApproved:
    assert event.approval is not None
    facts = {**event.approval["facts"], **changes}
    return replace(event, approval={"facts": facts, "mac": event.approval["mac"]})


def test_the_grant_verifies_the_event_facts_without_reading_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = new_world()
    request_id, _ = _approved(w)
    reads: list[str] = []
    real = w.store.get
    monkeypatch.setattr(w.store, "get", lambda wanted: reads.append(wanted) or real(wanted))
    assert w.grant().result == "granted"
    assert reads == []
    assert w.grant_status(request_id) is GrantStatus.ACTIVE


def test_an_event_without_the_facts_is_checked_against_the_record() -> None:
    """An event emitted before this release (or a hand-made one) is verified as before: the record read."""
    w = new_world()
    request_id, event = _approved(w)
    assert w.grant(replace(event, approval=None)).result == "granted"
    record = w.store.get(request_id)
    assert record is not None
    w.store.items[request_id] = replace(record, approval_mac="00")
    other_id, other = _approved(w, "i-0123456789abcdef1")
    w.store.items[other_id] = replace(w.store.items[other_id], approval_mac="00")
    assert _codes(w.grant(replace(other, approval=None))) == ["approval_not_signed"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"rule": "prod"}, "approval_not_signed"),  # a fact changed: the MAC no longer fits
        ({"instance_tags": [["Environment", "prod"]]}, "approval_not_signed"),
        ({"extra": "x"}, "origin_mismatch"),  # a fact outside the signed set
        ({"duration_minutes": "10"}, "origin_mismatch"),  # a fact of another type
        ({"approvals": "nonsense"}, "origin_mismatch"),
    ],
)
def test_changed_facts_are_denied(changes: dict[str, Any], code: str) -> None:
    w = new_world()
    _, event = _approved(w)
    outcome = w.grant(_with_facts(event, **changes))
    assert _codes(outcome) == [code]
    assert slot_tags(w) == {}


def test_the_facts_of_another_request_are_denied() -> None:
    w = new_world()
    _, first = _approved(w)
    _, second = _approved(w, "i-0123456789abcdef1")
    outcome = w.grant(replace(second, approval=first.approval))
    assert _codes(outcome) == ["origin_mismatch"]
    assert slot_tags(w) == {}


@pytest.mark.parametrize(
    ("status", "code"),
    [(RequestStatus.REVOKED, "origin_not_approved"), (None, "origin_not_found")],
)
def test_a_record_changed_after_the_verification_cancels_the_grant(
    status: RequestStatus | None, code: str
) -> None:
    """The race the transaction closes: the request is revoked (or its record goes) after the verifier
    checked the facts and before the grant opens. Nothing is opened, the grant is recorded DENIED."""
    w = new_world()
    request_id, event = _approved(w)
    verifier = w.engine.verifiers[Origin.NATIVE]  # type: ignore[index]
    real_verify = verifier.verify

    def verify_then_change(*args: Any, **kwargs: Any) -> Any:
        found = real_verify(*args, **kwargs)
        record = w.store.items[request_id]
        if status is None:
            del w.store.items[request_id]
        else:
            w.store.items[request_id] = replace(record, status=status)
        return found

    verifier.verify = verify_then_change  # type: ignore[method-assign]
    outcome = w.grant(event)
    assert _codes(outcome) == [code]
    assert w.grant_status(request_id) is GrantStatus.DENIED
    assert slot_tags(w) == {}
    assert w.ledger.slots == {}
    assert w.core.schedules.schedules == {}
    assert "AccessDenied" in w.core.notifier.types()


def test_the_approval_travels_in_the_event_detail_within_a_bound() -> None:
    w = new_world()
    _, event = _approved(w)
    detail = event.to_detail()
    assert AccessApproved.from_detail(json.loads(json.dumps(detail))) == event
    with pytest.raises(InvalidInput, match="approval"):
        AccessApproved.from_detail({**detail, "approval": {"facts": "x" * 20_000, "mac": ""}})
    with pytest.raises(InvalidInput, match="approval"):
        AccessApproved.from_detail({**detail, "approval": ["not", "an", "object"]})


def test_the_facts_carry_what_the_grant_rechecks_of_issue_18() -> None:
    """The ticket (re-checked against the rule), the request's creation (the escalation's clock), a
    scheduled start and an auto-approval survive the trip through the event: the record rebuilt from the
    facts signs the same message, so the grant judges what the request API approved."""
    w = new_world()
    request_id, _ = _approved(w)
    record = w.store.get(request_id)
    assert record is not None
    assert record.approved_at is not None
    later = "2099-01-01T00:00:00Z"
    full = replace(record, ticket="OPS-42", start_at=later, auto_approval="dev in office hours")
    event = full.to_access_approved()
    assert event.approval is not None
    rebuilt = Request.from_approval(event.approval)
    assert rebuilt.approval_message() == full.approval_message()
    assert (rebuilt.ticket, rebuilt.created_at, rebuilt.not_before, rebuilt.auto_approval) == (
        "OPS-42",
        record.created_at,
        later,
        "dev in office hours",
    )
