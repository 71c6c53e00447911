"""Notifications and the API's view of a request."""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.deps import (
    ServiceDeps,
)
from sessiongate.access_requests.groups import group_names
from sessiongate.access_requests.policy import (
    Rule,
    current_level,
    progress,
)
from sessiongate.access_requests.records import (
    LIVE,
    Request,
    RequestStatus,
)
from sessiongate.clock import to_iso


class Notices(ServiceDeps):
    def _notify(self, event_type: str, request: Request, *, rule: Rule | None = None) -> None:
        payload: dict[str, Any] = {
            "at": to_iso(self.clock.now()),
            "request_id": request.request_id,
            "grant_id": request.grant_id,
            "status": request.status.value,
            "account": request.account,
            "instance_id": request.instance_id,
            "principal_arn": request.principal_arn,
            "principal_name": request.principal_name,
            "requester_arn": request.requester_arn,
            "approver_arns": [a.approver_arn for a in request.approvals],
            "duration_minutes": request.duration_minutes,
            "reason": request.reason,
            "ticket": request.ticket,
            "break_glass": request.break_glass,
            "origin": "native",
            "origin_ref": request.request_id,
        }
        if request.extends:
            payload["extends"] = request.extends
        if request.comment:
            payload["comment"] = request.comment
        if request.start_at:
            payload["start_at"] = request.start_at
        if request.documents:
            payload["documents"] = list(request.documents)
            if rule is not None and rule.documents:  # hosts and ports are for the approvers to judge
                payload["rule_documents"] = [
                    d.as_dict() for d in rule.documents if d.name in request.documents
                ]
        if request.auto_approval:
            payload["approval_kind"] = "AutoApproved"
            payload["auto_approval"] = request.auto_approval
        if rule is not None:
            payload["rule"] = rule.name
            if request.status is RequestStatus.PENDING:
                payload["approval_progress"] = progress(rule, request.approvals)
            level = current_level(rule, request.approvals)
            if level is not None and request.status is RequestStatus.PENDING:
                next_level = rule.levels[level]
                payload["next_approvers"] = [*next_level.approvers, *group_names(next_level.groups)]
            if event_type == "AccessRequestEscalated" and rule.reminders is not None:
                payload["escalate_to"] = list(rule.reminders.escalate_to)
            if request.break_glass or request.auto_approval:
                arns = sorted({p for lv in rule.levels for p in lv.approvers})
                groups = sorted({g for lv in rule.levels for g in lv.groups})
                payload["notify_approvers"] = [*arns, *group_names(groups)]
        subject = {
            "AccessRequested": f"SessionGate: approve {request.principal_name} on {request.instance_id}?",
            "ApprovalRecorded": f"SessionGate: more approvals needed for request {request.request_id}",
            "AccessApproved": f"SessionGate: request {request.request_id} approved",
            "AccessRejected": f"SessionGate: request {request.request_id} rejected",
            "AccessRequestCancelled": f"SessionGate: request {request.request_id} cancelled",
            "AccessRequestExpired": f"SessionGate: request {request.request_id} expired unapproved",
            "BreakGlassUsed": f"SessionGate: BREAK-GLASS {request.principal_name} on {request.instance_id}",
            "AccessRequestReminder": f"SessionGate: reminder - request {request.request_id} waits for you",
            "AccessRequestEscalated": f"SessionGate: ESCALATED - request {request.request_id} still waits",
            "AutoApproved": f"SessionGate: AUTO-APPROVED {request.principal_name} on {request.instance_id}",
        }.get(event_type, f"SessionGate: {event_type}")
        self.notifier.publish(event_type, payload, subject=subject)

    def _view(self, request: Request, rule: Rule | None) -> dict[str, Any]:
        view = request.view()
        if rule is not None and request.status is RequestStatus.PENDING:
            view["approval_progress"] = progress(rule, request.approvals)
        grant = self.engine.ledger.get_grant(request.grant_id) if request.status in LIVE else None
        if grant is not None:
            view["grant"] = {"status": grant.status.value, "expires_at": grant.expires_at, "slot": grant.slot}
        return {"request": view}
