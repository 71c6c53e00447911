"""Reminders and escalation of pending requests (issue 18, pure): what the scheduled sweep owes a
PENDING request under its rule's ``reminders`` now.

Every ``remind_after_minutes`` since the request was made, the approvers it waits for (its current
level's) are notified again (``AccessRequestReminder``); once ``escalate_after_minutes`` have passed,
``escalate_to`` is notified, once (``AccessRequestEscalated``). The sweep runs every
``ReconcilerRateMinutes``: a reminder goes out within one period of its time, several missed periods
make one reminder (the count is written, not a list of times). The record's conditional write comes
before the notification, so two sweeps never send the same reminder twice. A request that expires
(pending TTL) first is never reminded again. Escalation notifies; it does not make ``escalate_to``
approvers: to let them approve, list them among the level's approvers too. When a reminder and the
escalation fall due in one sweep, the escalation (which names the awaited approvers too) is the one sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sessiongate.access_requests.policy import Rule
from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.clock import parse_iso


@dataclass(frozen=True)
class Due:
    reminders: int  # the reminder count the record should reach (> reminders_sent: send one)
    escalate: bool  # the escalation is due and was not sent

    @property
    def anything(self) -> bool:
        return self.escalate or self.reminders > 0


def due(rule: Rule | None, request: Request, now: datetime) -> Due:
    """What is owed to ``request`` at ``now`` under ``rule`` (nothing unless it is PENDING)."""
    plan = rule.reminders if rule is not None else None
    if plan is None or request.status is not RequestStatus.PENDING:
        return Due(0, False)
    age = now - parse_iso(request.created_at)
    if now >= parse_iso(request.pending_expires_at):
        return Due(0, False)
    reminders = 0
    if plan.remind_after_minutes is not None:
        count = int(age / timedelta(minutes=plan.remind_after_minutes))
        reminders = count if count > request.reminders_sent else 0
    escalate = (
        plan.escalate_after_minutes is not None
        and request.escalated_at is None
        and age >= timedelta(minutes=plan.escalate_after_minutes)
    )
    return Due(reminders, escalate)
