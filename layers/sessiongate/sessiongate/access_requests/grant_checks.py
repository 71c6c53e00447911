"""What the native verifier re-checks of a record under the rule that covers its instance at grant time
(pure): the approvals (:func:`.policy.approvals_satisfy`, or for an auto-approved request
:func:`.auto_approval.auto_approval_holds`), and the rule's ticket (issue 18)."""

from __future__ import annotations

from sessiongate.access_requests.auto_approval import auto_approval_holds
from sessiongate.access_requests.policy import ApprovalPolicy, Rule, approvals_satisfy
from sessiongate.access_requests.records import Request
from sessiongate.access_requests.reminders import escalated
from sessiongate.clock import parse_iso
from sessiongate.core.model import Denial


def grant_time_denials(policy: ApprovalPolicy, rule: Rule, record: Request, *, api_role: str) -> list[Denial]:
    """Why ``record`` may not be granted under ``rule`` of ``policy`` (empty: it may).

    ``api_role`` is the request API's role, the approver of record of break-glass requests."""
    if rule.ticket is not None:
        problem = rule.ticket.problem(record.ticket)
        if problem is not None:
            return [Denial("ticket_invalid", f"rule {rule.name!r}: {problem[1]}")]
    if record.auto_approval:
        why = auto_approval_holds(policy, rule, record, api_role=api_role)
    else:
        at = parse_iso(record.approved_at) if record.approved_at else None
        effective = escalated(rule, record, at) if at is not None else rule
        why = approvals_satisfy(effective, record, break_glass_approver=api_role)
    if why:
        return [Denial("approval_insufficient", why)]
    return []
