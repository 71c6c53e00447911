"""The triggers of the Change Manager front door and which of them are acted on.

A ``Change Request Status Update`` event from EventBridge, or SessionGate's own deferred start, becomes a
:class:`ChangeRequestRef`: only a pointer to the change request, re-read from SSM before anything is
decided (the event's status, requester and ids are never trusted alone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sessiongate.errors import InvalidInput

DETAIL_TYPE = "Change Request Status Update"
SOURCE = "aws.ssm"
# SessionGate's deferred start: a one-time schedule at the change's ScheduledTime sends this event.
DUE_SOURCE = "sessiongate.scheduler"
DUE_DETAIL_TYPE = "Change Request Due"
OPS_ITEM_RE = re.compile(r"^oi-[0-9a-f]{12}$")
# ``ops-item-status`` values of a ``Change Request Status Update`` event that the adapter acts on (botocore's
# OpsItemStatus enum). Approved, Scheduled and RunbookInProgress come only after every approval was given;
# InProgress is routed too (it is the status of the published sample event, "Amazon EventBridge event
# examples for Systems Manager") but does not by itself say that the request was approved. Events are
# best effort and may come in any order, so each one re-reads SSM and the grant is idempotent: a late,
# repeated or missing Approved event still grants exactly once.
ROUTED_STATUSES = ("Approved", "Scheduled", "RunbookInProgress", "InProgress")
APPROVAL_IMPLIED = frozenset({"Approved", "Scheduled", "RunbookInProgress"})


@dataclass(frozen=True)
class ChangeRequestRef:
    """What an incoming trigger says about a change request: only a pointer to re-read."""

    ops_item_id: str
    change_request_id: str | None
    status: str
    template_name: str | None
    created_by: str | None

    @classmethod
    def from_event(cls, event: object) -> ChangeRequestRef:
        """Parse a status event or a deferred start; :class:`InvalidInput` when it is neither."""
        if not isinstance(event, Mapping):
            raise InvalidInput("event must be an object")
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise InvalidInput("event has no detail object", field="detail")
        if event.get("source") == DUE_SOURCE:
            # Our own deferred trigger (a ScheduledTime in the future): only the pointer.
            return cls(_ops_item(detail), _opt(detail, "change-request-id"), "Approved", None, None)
        if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
            raise InvalidInput(
                f"unexpected event {event.get('source')!r}/{event.get('detail-type')!r}", field="detail-type"
            )
        status = detail.get("ops-item-status")
        if not isinstance(status, str):
            raise InvalidInput("ops-item-status is missing", field="ops-item-status")
        template = detail.get("change-template-document-name")
        if not isinstance(template, str) or not template:
            raise InvalidInput(
                "change-template-document-name is missing", field="change-template-document-name"
            )
        return cls(
            ops_item_id=_ops_item(detail),
            change_request_id=_opt(detail, "change-request-id"),
            status=status,
            template_name=template,
            created_by=_opt(detail, "ops-item-created-by"),
        )

    @property
    def routed(self) -> bool:
        """The adapter acts on this status (see :data:`ROUTED_STATUSES`)."""
        return self.status in ROUTED_STATUSES

    @property
    def implies_approval(self) -> bool:
        """The trigger says every approval was given (InProgress alone does not)."""
        return self.status in APPROVAL_IMPLIED

    def due_event(self) -> dict[str, Any]:
        """The deferred start's event, sent by a one-time schedule at the change's start time."""
        return {"source": DUE_SOURCE, "detail-type": DUE_DETAIL_TYPE, "detail": self.due_event_detail()}

    def due_event_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"ops-item-id": self.ops_item_id}
        if self.change_request_id:
            detail["change-request-id"] = self.change_request_id
        return detail


def _ops_item(detail: Mapping[str, Any]) -> str:
    value = detail.get("ops-item-id")
    if not isinstance(value, str) or not OPS_ITEM_RE.fullmatch(value):
        raise InvalidInput(f"ops-item-id {str(value)[:40]!r} is not an OpsItem id", field="ops-item-id")
    return value


def _opt(detail: Mapping[str, Any], name: str) -> str | None:
    value = detail.get(name)
    return value if isinstance(value, str) and value else None
