"""Reminders and escalation of pending requests (issue 18, pure): what the scheduled sweep owes a
PENDING request under its rule's ``reminders`` now.

Every ``remind_after_minutes`` since the request was made, the approvers it waits for (its current
level's) are notified again (``AccessRequestReminder``); once ``escalate_after_minutes`` have passed,
``escalate_to`` is notified, once (``AccessRequestEscalated``), and from then on may approve (and reject)
the request at any level, like the level's own approvers (:func:`escalated`). The sweep runs every
``ReconcilerRateMinutes``: a reminder goes out within one period of its time, several missed periods
make one reminder (the count is written, not a list of times). The record's conditional write comes
before the notification, so two sweeps never send the same reminder twice. A request that expires
(pending TTL) first is never reminded again. When a reminder and the escalation fall due in one sweep,
the escalation (which names the awaited approvers too) is the one sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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


def escalation_due(rule: Rule, request: Request, at: datetime) -> bool:
    plan = rule.reminders
    return (
        plan is not None
        and plan.escalate_after_minutes is not None
        and at - parse_iso(request.created_at) >= timedelta(minutes=plan.escalate_after_minutes)
    )


def escalated(rule: Rule, request: Request, at: datetime) -> Rule:
    """``rule`` as it applies to ``request`` at ``at``: once the escalation is due, ``escalate_to`` is
    among the approvers of every level (separation of duties and "one person counts once" still hold).
    The request API decides with it when approving; the native verifier with the approval's time, so
    the escalated approvers' approvals count at grant time too (the approval MAC proves the request API
    accepted them, after the escalation)."""
    plan = rule.reminders
    if plan is None or not plan.escalate_to or not escalation_due(rule, request, at):
        return rule
    levels = tuple(replace(level, approvers=(*level.approvers, *plan.escalate_to)) for level in rule.levels)
    return replace(rule, levels=levels)
