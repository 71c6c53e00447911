"""Deciding a pending request: approve, reject, cancel."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sessiongate.access_requests.caller import Caller, same_caller
from sessiongate.access_requests.concurrency import check_max_active
from sessiongate.access_requests.errors import Conflict, NotAllowed
from sessiongate.access_requests.inputs import parse_comment
from sessiongate.access_requests.policy import (
    Rule,
    approver_level,
    check_not_involved,
    current_level,
)
from sessiongate.access_requests.records import (
    LIVE,
    Approval,
    Request,
    RequestStatus,
)
from sessiongate.access_requests.reminders import escalated
from sessiongate.access_requests.status import Status
from sessiongate.clock import to_iso
from sessiongate.observability import bind
from sessiongate.outbox import rule_snapshot


class Deciding(Status):
    def approve(self, caller: Caller, request_id: str, body: object, *, via: str = "api") -> dict[str, Any]:
        """``via``: ``api`` (the signed request API) or ``chat`` (a click of a linked chat user, issue 19,
        refused under a rule with ``approve_in_chat: false``); everything else is the same path."""
        comment = parse_comment(body, required=False)
        rule: Rule | None = None

        def approved(request: Request) -> Request:
            nonlocal rule
            rule = self._approving_rule(request)
            if via == "chat" and not rule.approve_in_chat:
                raise NotAllowed(
                    "chat_approval_forbidden",
                    f"rule {rule.name!r} allows no approval from chat: use the sessiongate CLI",
                )
            return self._with_approval(caller, request, rule, comment)

        self._note_policy()
        updated = self._write(lambda: self._pending(request_id), approved)
        assert rule is not None
        log = bind(
            request_id=request_id, instance_id=updated.instance_id, principal_arn=updated.principal_arn
        )
        if updated.status is RequestStatus.APPROVED:
            log.info("request approved", extra={"approvers": list(updated.approver_arns)})
            updated = self._emit(updated)
        else:
            log.info("approval recorded", extra={"level": updated.approvals[-1].level + 1})
        return self._view(updated, rule)

    def _approving_rule(self, request: Request) -> Rule:
        """The rule covering the instance now, which must be the one the request was made under."""
        rule = self._current_rule(request, required=True)
        assert rule is not None
        rule = escalated(rule, request, self.clock.now())  # escalate_to approves once it is due
        if rule.name != request.rule:
            # The instance's tags (or the policy) changed since the request: approving under the
            # new rule could weaken it (prod -> dev). The requester asks again under the new rule.
            raise Conflict(
                "rule_changed",
                f"request {request.request_id} was made under rule {request.rule!r}, the instance now falls "
                f"under {rule.name!r}: make a new request",
            )
        return rule

    def _with_approval(self, caller: Caller, request: Request, rule: Rule, comment: str) -> Request:
        """The request with the caller's approval added: APPROVED (and signed) once every level is met."""
        level = approver_level(rule, request, caller.arn)
        if request.extends is not None and not any(
            member.status in LIVE
            for member in self._family(request)
            if member.request_id != request.request_id
        ):
            raise Conflict(
                "parent_not_live",
                f"the access this extends (request {request.extends}) has ended: make a new request",
            )
        now = self.clock.now()
        approvals = (*request.approvals, Approval(caller.arn, level, to_iso(now), comment))
        if current_level(rule, approvals) is not None:
            return replace(
                request, approvals=approvals, version=request.version + 1, notice_rule=rule_snapshot(rule)
            )
        check_max_active(self, rule, request)  # the approval that hands it to the engine
        return self._sign(
            request.transition(
                RequestStatus.APPROVED,
                at=now,
                by=caller.arn,
                approvals=approvals,
                approver_arns=tuple(a.approver_arn for a in approvals),
                approved_at=to_iso(now),
                decided_by=caller.arn,
                version=request.version + 1,
                notice_rule=rule_snapshot(rule),
            )
        )

    def reject(self, caller: Caller, request_id: str, body: object, *, via: str = "api") -> dict[str, Any]:
        """``via``: as for :meth:`approve` (a rejection is allowed from chat under every rule)."""
        comment = parse_comment(body, required=True)
        rule: Rule | None = None

        def rejected(request: Request) -> Request:
            nonlocal rule
            rule = self._current_rule(request, required=True)
            assert rule is not None
            rule = escalated(rule, request, self.clock.now())
            check_not_involved(request, caller.arn)
            if not rule.may_review(caller.arn):
                raise NotAllowed("not_an_approver", f"you are not an approver of rule {rule.name!r}")
            return request.transition(
                RequestStatus.REJECTED,
                at=self.clock.now(),
                by=caller.arn,
                decided_by=caller.arn,
                comment=comment,
                version=request.version + 1,
                notice_rule=rule_snapshot(rule),
            )

        self._note_policy()
        updated = self._write(lambda: self._pending(request_id), rejected)
        bind(request_id=request_id, via=via).info("request rejected")
        return self._view(updated, rule)

    def cancel(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        comment = parse_comment(body, required=False, name="reason")

        def cancelled(request: Request) -> Request:
            if not same_caller(caller.arn, request.requester_arn):
                raise NotAllowed("not_requester", "only the requester may cancel a request")
            if request.status is not RequestStatus.PENDING:
                raise Conflict(
                    "not_pending",
                    f"request {request_id} is {request.status.value}: only PENDING can be cancelled",
                )
            return request.transition(
                RequestStatus.CANCELLED,
                at=self.clock.now(),
                by=caller.arn,
                comment=comment,
                version=request.version + 1,
            )

        updated = self._write(lambda: self._load_for_write(request_id), cancelled)
        bind(request_id=request_id).info("request cancelled")
        return self._view(updated, None)
