"""Creating a request (and a break-glass self-approval)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sessiongate.access_requests.auto_approval import Decision, decide, facts_of
from sessiongate.access_requests.caller import Caller
from sessiongate.access_requests.concurrency import check_max_active, take_auto_places
from sessiongate.access_requests.deps import (
    DAY,
    MAX_LIST,
)
from sessiongate.access_requests.errors import Conflict, NotAllowed
from sessiongate.access_requests.inputs import CreateInput, parse_create
from sessiongate.access_requests.policy import (
    Rule,
    check_break_glass,
    check_duration,
    default_duration,
)
from sessiongate.access_requests.records import (
    AUTO_LEVEL,
    OPEN,
    Approval,
    Request,
    RequestStatus,
    pending_deadline,
)
from sessiongate.access_requests.rule_limits import check_documents, check_start, check_ticket
from sessiongate.access_requests.status import Status
from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.identity import parse_identity, person_key
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger, metrics
from sessiongate.outbox import rule_snapshot


class Creating(Status):
    def create(self, caller: Caller, body: object) -> dict[str, Any]:
        data = parse_create(
            body,
            default_minutes=self.settings.default_validity_minutes,
            max_minutes=self.settings.max_validity_minutes,
        )
        # The access is for the caller's own user or role, on an instance of the caller's own account
        # (SessionGate's or a member's): identities and accounts never come from the body.
        account = self._check_account(caller, data.account)
        self._note_policy()
        directory, inventory = self._adapters(account)
        rule, tags = self._rule_for(data.instance_id, account, inventory, creating=True)
        duration = self._allowed_duration(caller, rule, data)
        principal = directory.get_principal(caller.principal_type, caller.principal_name)
        if principal is None:
            raise NotAllowed(
                "principal_not_found",
                f"IAM {caller.principal_type.value} {caller.principal_name} not found in account {account}",
            )
        self._check_no_duplicate(caller, account, data.instance_id)
        now = self.clock.now()
        request = self._new_request(caller, data, account, principal.arn, duration, rule, tags, now)
        check_max_active(self, rule, request)
        # From here every log line of this call (a quota refusal too) names the request.
        log = bind(
            request_id=request.request_id, instance_id=request.instance_id, principal_arn=principal.arn
        )
        why = ""
        if data.break_glass:
            self._take_break_glass_quota(caller, rule, now)
            request = self._self_approved(caller, request, data.reason, now)
        else:
            # Judged when the access starts (office hours at a scheduled start, not at the request's time).
            starts = max(now, parse_iso(request.start_at)) if request.start_at else now
            decision = decide(self._policy(), facts_of(request, rule, starts))
            auto = decision.auto_approved and bool(self.settings.break_glass_approver_arn)  # (no API role)
            # max_active, atomically for auto-approvals (no person approves: the requester alone could
            # race N requests past check_max_active); no place left: the rule's approvers decide.
            if auto and not take_auto_places(self, rule, request, now):
                decision = Decision(
                    False, decision.permit, why="max_active: no place left for an auto-approval"
                )
                auto = False
            why = decision.why
            if auto:
                request = self._auto_approved(request, decision, now)
        # One write: its stream record is the AccessRequested (or BreakGlassUsed, AutoApproved)
        # notification.
        if not self.store.create(request):
            raise TransientError(f"request id {request.request_id} collided")
        metrics().add("NativeRequests")
        if data.break_glass:
            logger().warning("break-glass access self-approved", extra={"rule": rule.name})
            metrics().add("BreakGlass")
            return self._view(self._emit(request), rule)
        if request.auto_approval:
            logger().info("access auto-approved", extra={"rule": rule.name, "permit": request.auto_approval})
            metrics().add("AutoApproved")
            return self._view(self._emit(request), rule)
        log.info("access requested", extra={"rule": rule.name, "auto_approval": why})
        return self._view(request, rule)

    def _allowed_duration(self, caller: Caller, rule: Rule, data: CreateInput) -> int:
        """The rule lets the caller request, for this long (and break-glass, if asked for)."""
        if not rule.may_request(caller.arn):
            raise NotAllowed("not_a_requester", f"rule {rule.name!r} does not let you request access")
        duration = data.duration_minutes
        if data.default_duration:
            duration = default_duration(
                rule, self.settings.default_validity_minutes, break_glass=data.break_glass
            )
        check_duration(rule, duration)
        check_ticket(rule.name, rule.ticket, data.ticket)
        check_documents(rule.name, rule.documents, data.documents)
        if data.start_at is not None:
            check_start(
                rule.name, rule.max_lead_minutes, data.start_at, self.clock.now(), glass=data.break_glass
            )
        if data.break_glass:
            check_break_glass(rule, caller.arn, duration, data.reason)
        return duration

    def _check_no_duplicate(self, caller: Caller, account: str, instance_id: str) -> None:
        """One open request per requester and instance (extensions aside)."""
        for mine in self.store.by_requester(caller.arn, limit=MAX_LIST):
            mine = self._write_derived(mine)
            if (
                mine.instance_id == instance_id
                and mine.account == account
                and mine.status in OPEN
                and mine.extends is None
            ):
                raise Conflict(
                    "duplicate_request",
                    f"you have request {mine.request_id} ({mine.status.value}) for {instance_id}",
                )

    def _new_request(
        self,
        caller: Caller,
        data: CreateInput,
        account: str,
        principal_arn: str,
        duration: int,
        rule: Rule,
        tags: dict[str, str],
        now: datetime,
    ) -> Request:
        return Request(
            request_id=self.ids(),
            status=RequestStatus.PENDING,
            account=account,
            instance_id=data.instance_id,
            principal_type=caller.principal_type,
            principal_name=caller.principal_name,
            principal_arn=principal_arn,
            requester_arn=caller.arn,
            duration_minutes=duration,
            reason=data.reason,
            ticket=data.ticket,
            created_at=to_iso(now),
            pending_expires_at=pending_deadline(now, self.settings.pending_request_ttl_minutes),
            rule=rule.name,
            instance_tags=tuple(sorted(tags.items())),
            start_at=to_iso(data.start_at) if data.start_at is not None else None,
            documents=data.documents,
            history=({"at": to_iso(now), "status": RequestStatus.PENDING.value, "by": caller.arn},),
            notice_rule=rule_snapshot(rule),
        )

    def _take_break_glass_quota(self, caller: Caller, rule: Rule, now: datetime) -> None:
        """Counted per person (any session or permission set of theirs), atomically, last."""
        identity = parse_identity(caller.arn)
        assert identity is not None  # the caller was parsed when the request came in
        limit = rule.break_glass.max_per_day
        key = f"breakglass#{person_key(identity)}"
        if self.store.take_quota(key, now=now, window=DAY, limit=limit) is None:
            raise NotAllowed(
                "break_glass_quota",
                f"you used break-glass {limit} time(s) in the last 24 hours (at most {limit} under "
                f"rule {rule.name!r}): ask an approver",
            )

    def _self_approved(self, caller: Caller, request: Request, reason: str, now: datetime) -> Request:
        """Break-glass: the requester approves alone. The engine never accepts the requester as approver
        of record, so SessionGate's request API role is recorded as the approver (the policy rule that
        allowed it), the requester's self-approval is kept in ``approvals``, and the record is flagged.
        The request is created in this state (its history still shows it PENDING first)."""
        approved = request.transition(
            RequestStatus.APPROVED,
            at=now,
            by=caller.arn,
            break_glass=True,
            approvals=(Approval(caller.arn, -1, to_iso(now), reason),),
            approver_arns=(self.settings.break_glass_approver_arn,),
            approved_at=to_iso(now),
            decided_by=caller.arn,
            version=request.version + 1,
        )
        return self._sign(approved)

    def _auto_approved(self, request: Request, decision: Decision, now: datetime) -> Request:
        """A permit of the policy approved the request, no forbid stopped it (:mod:`.auto_approval`).
        Recorded so that nobody can take it for a person's approval: one approval at ``AUTO_LEVEL`` by
        the request API's role (also the approver of record in the engine's ledger), the permit's name
        in ``auto_approval`` (bound by the approval MAC), notified as ``AutoApproved`` (its record's
        creation in this state: :mod:`sessiongate.outbox`). Its history still shows it PENDING first."""
        api_role = self.settings.break_glass_approver_arn
        assert decision.permit is not None
        comment = f"auto-approved by permit {decision.permit!r}: {decision.why}"
        approved = request.transition(
            RequestStatus.APPROVED,
            at=now,
            by=api_role,
            approvals=(Approval(api_role, AUTO_LEVEL, to_iso(now), comment[:500]),),
            approver_arns=(api_role,),
            approved_at=to_iso(now),
            decided_by=api_role,
            auto_approval=decision.permit,
            version=request.version + 1,
        )
        return self._sign(approved)
