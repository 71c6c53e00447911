"""The Change Manager front door: a change request's status event -> ``AccessApproved`` on the bus.

Re-reads the change request from SSM (the event is only a hint), interprets it with
:mod:`sessiongate.change_manager.events`, and hands the approval to the engine through the bus (or
schedules it for the change's start time). Denials are recorded and notified by the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sessiongate.adapters.bus import Bus
from sessiongate.adapters.change_requests import ChangeRequests
from sessiongate.adapters.directory import Directory
from sessiongate.adapters.scheduler import START_PREFIX, Schedules
from sessiongate.change_manager.events import (
    APPROVAL_IMPLIED,
    DUE_SOURCE,
    ROUTED_STATUSES,
    ChangeRequestRef,
    awaiting_approval,
    interpret,
    undecided,
)
from sessiongate.clock import Clock, to_iso
from sessiongate.core.engine import START_TOLERANCE, Engine
from sessiongate.core.model import GRANT_ID_RE, Grant, GrantStatus, Origin, Outcome
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import bind, metrics
from sessiongate.settings import Settings

# Change Manager may publish Approved before GetAutomationExecution shows the approval (SSM is eventually
# consistent). The adapter re-reads after each of these waits (15 s in all, within the function's 30 s
# timeout); still not shown, it raises TransientError: Lambda retries the event twice (after 1 and
# 3 minutes), then parks it in FailedInvocationsQueue (alarmed). Meanwhile the later status events
# (Scheduled, RunbookInProgress) re-drive the same idempotent path, so the grant happens once.
APPROVAL_RECHECK_DELAYS = (1.0, 2.0, 4.0, 8.0)
# A re-read after a wait needs time for itself and the hand-over: stop waiting when less is left.
RECHECK_RESERVE_SECONDS = 5.0


@dataclass
class ChangeRequestAdapter:
    settings: Settings
    changes: ChangeRequests
    bus: Bus
    schedules: Schedules
    directory: Directory
    clock: Clock
    # Records and notifies denials and rejected events the same way as the grant path.
    engine: Engine

    def on_change_request(
        self, event: object, *, remaining_seconds: Callable[[], float] | None = None
    ) -> Outcome:
        """A Change Manager status event (or SessionGate's deferred start). ``remaining_seconds``: the
        invocation's time left (Lambda's context), so the bounded re-read never outlives it."""
        try:
            ref = ChangeRequestRef.from_event(event)
        except InvalidInput as exc:
            return self.engine.reject("ChangeRequest", exc)
        log = bind(ops_item_id=ref.ops_item_id, change_request_id=ref.change_request_id)
        if ref.status not in ROUTED_STATUSES:
            log.info("change request status is not routed: nothing to do", extra={"status": ref.status})
            return Outcome("ignored", None, {"why": f"status {ref.status}"})
        if ref.template_name is not None and ref.template_name != self.settings.change_template_name:
            return self.engine.reject(
                "ChangeRequest",
                InvalidInput(
                    f"change template {ref.template_name[:128]!r} is not SessionGate's", field="template"
                ),
            )
        execution = self.changes.find(ref.ops_item_id)
        if execution is not None and awaiting_approval(execution):
            if ref.status not in APPROVAL_IMPLIED:
                # InProgress alone does not say the request was approved: a later event will.
                log.info("change request not approved yet", extra={"status": ref.status})
                return Outcome("ignored", None, {"why": "change request not approved yet"})
            for delay in APPROVAL_RECHECK_DELAYS:
                if remaining_seconds is not None and remaining_seconds() < delay + RECHECK_RESERVE_SECONDS:
                    break  # no time for another wait: the event is retried later instead
                self.clock.sleep(delay)
                execution = self.changes.find(ref.ops_item_id)
                if execution is None or not awaiting_approval(execution):
                    break
            if execution is not None and awaiting_approval(execution):
                metrics().add("ApprovalNotVisibleYet")
                log.warning("SSM does not show the approval yet: retrying", extra={"status": ref.status})
                raise TransientError(f"change request of {ref.ops_item_id} is not shown as approved yet")
        if execution is None:
            return self.engine.reject(
                "ChangeRequest",
                InvalidInput(f"no single change request found for {ref.ops_item_id}", field="ops-item-id"),
            )
        if undecided(ref, execution):
            # A DENIED record now would make the grant of a later approval a "duplicate".
            status = execution.get("AutomationExecutionStatus")
            log.info("change request not approved (yet): nothing to do", extra={"ssm_status": status})
            return Outcome("ignored", None, {"why": f"change request status is {status}"})
        now = self.clock.now()
        result = interpret(
            ref,
            execution,
            self.settings,
            account=self.settings.account_id,
            now=now,
            group_members=self.directory.group_user_names,
        )
        if isinstance(result, list):
            execution_id = str(execution.get("AutomationExecutionId", ""))
            grant_id = f"cm-{execution_id}"
            if not GRANT_ID_RE.fullmatch(grant_id):
                return self.engine.reject("ChangeRequest", InvalidInput("; ".join(d.message for d in result)))
            record = Grant(
                grant_id=grant_id,
                status=GrantStatus.DENIED,
                origin=Origin.CHANGE_MANAGER.value,
                origin_ref=ref.ops_item_id,
                account=self.settings.account_id,
                instance_id="",
                principal_type="",
                principal_name="",
                principal_arn="",
                requester_arn=str(execution.get("ExecutedBy") or ""),
                approver_arns=[],
                duration_minutes=0,
                created_at=to_iso(now),
            )
            return self.engine.deny_new(record, result)
        request = result
        log.append_keys(grant_id=request.grant_id)
        if request.not_before - now > START_TOLERANCE:
            self.schedules.create_once(
                START_PREFIX + request.grant_id,
                request.not_before,
                self.settings.adapter_target_arn,
                {"source": DUE_SOURCE, "detail-type": "Change Request Due", "detail": ref.due_event_detail()},
            )
            log.info(
                "change request scheduled for later: grant deferred",
                extra={"not_before": to_iso(request.not_before)},
            )
            return Outcome("deferred", request.grant_id, {"not_before": to_iso(request.not_before)})
        self.bus.emit_approved(request)
        log.info("AccessApproved emitted")
        return Outcome("emitted", request.grant_id)
