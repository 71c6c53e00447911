"""The Change Manager front door: a change request's status event -> ``AccessApproved`` on the bus.

Re-reads the change request from SSM (the event is only a hint), interprets it
(:mod:`~sessiongate.change_manager.interpretation`) and hands the approval to the grant function through
the bus, or schedules it for the change's start time. Denials are recorded and notified by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sessiongate.adapters.scheduler import START_PREFIX
from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.interpretation import interpret
from sessiongate.change_manager.ports import (
    ApprovalBus,
    ChangeRequestReader,
    DenialRecorder,
    GroupDirectory,
    StartSchedules,
    TargetAccounts,
)
from sessiongate.change_manager.status import awaiting_approval, undecided
from sessiongate.clock import Clock, to_iso
from sessiongate.core.engine import START_TOLERANCE
from sessiongate.core.grant import new_record
from sessiongate.core.identity import principal_arn
from sessiongate.core.model import GRANT_ID_RE, AccessApproved, Denial, Grant, GrantStatus, Origin, Outcome
from sessiongate.core.ports import AccountNotAllowed, MemberUnavailable
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
# The trigger's name in rejections (logs, the RejectedEvents metric, EventRejected notices).
TRIGGER = "ChangeRequest"

RemainingSeconds = Callable[[], float]


@dataclass
class ChangeRequestAdapter:
    settings: Settings
    changes: ChangeRequestReader
    bus: ApprovalBus
    schedules: StartSchedules
    # IAM of the stack's account: the members of an IamGroup approver.
    directory: GroupDirectory
    clock: Clock
    # The engine: records and notifies denials and rejected events the same way as the grant path.
    recorder: DenialRecorder
    # The engine's way into the target account (its own, or a member's through the member role, with a
    # session that may only read instances): whether the node is managed is asked here, not at grant.
    targets: TargetAccounts

    def on_change_request(
        self, event: object, *, remaining_seconds: RemainingSeconds | None = None
    ) -> Outcome:
        """A Change Manager status event (or SessionGate's deferred start). ``remaining_seconds``: the
        invocation's time left (Lambda's context), so the bounded re-read never outlives it."""
        try:
            ref = ChangeRequestRef.from_event(event)
        except InvalidInput as exc:
            return self.recorder.reject(TRIGGER, exc)
        log = bind(ops_item_id=ref.ops_item_id, change_request_id=ref.change_request_id)
        refused = self._route(ref, log)
        if refused is not None:
            return refused
        execution = self._read(ref, log, remaining_seconds)
        if isinstance(execution, Outcome):
            return execution
        if undecided(ref, execution):
            return self._undecided(execution, log)
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
            return self._deny(ref, execution, result, now)
        log.append_keys(grant_id=result.grant_id)
        unmanaged = self._unmanaged(result, log)
        if unmanaged is not None:
            return self.recorder.deny_new(self._record_of(result, now), [unmanaged])
        if result.not_before - now > START_TOLERANCE:
            return self._defer(ref, result, log)
        return self._emit(result, log)

    def _route(self, ref: ChangeRequestRef, log: Any) -> Outcome | None:
        """Statuses the adapter does not act on are ignored; another change template's are rejected."""
        if not ref.routed:
            log.info("change request status is not routed: nothing to do", extra={"status": ref.status})
            return Outcome("ignored", None, {"why": f"status {ref.status}"})
        if ref.template_name is not None and ref.template_name != self.settings.change_template_name:
            return self.recorder.reject(
                TRIGGER,
                InvalidInput(
                    f"change template {ref.template_name[:128]!r} is not SessionGate's", field="template"
                ),
            )
        return None

    def _read(
        self, ref: ChangeRequestRef, log: Any, remaining_seconds: RemainingSeconds | None
    ) -> Mapping[str, Any] | Outcome:
        """The change request as SSM shows it, once it shows the approval the event implies."""
        execution = self.changes.find(ref.ops_item_id)
        if execution is not None and awaiting_approval(execution):
            if not ref.implies_approval:
                # InProgress alone does not say the request was approved: a later event will.
                log.info("change request not approved yet", extra={"status": ref.status})
                return Outcome("ignored", None, {"why": "change request not approved yet"})
            execution = self._reread_until_approved(ref, log, remaining_seconds)
        if execution is None:
            return self.recorder.reject(
                TRIGGER,
                InvalidInput(f"no single change request found for {ref.ops_item_id}", field="ops-item-id"),
            )
        return execution

    def _reread_until_approved(
        self, ref: ChangeRequestRef, log: Any, remaining_seconds: RemainingSeconds | None
    ) -> Mapping[str, Any] | None:
        """Wait and re-read (:data:`APPROVAL_RECHECK_DELAYS`) while SSM lags behind its own event; still
        awaiting approval after the last wait, or no time left for the next: :class:`TransientError`."""
        for delay in APPROVAL_RECHECK_DELAYS:
            if remaining_seconds is not None and remaining_seconds() < delay + RECHECK_RESERVE_SECONDS:
                break  # no time for another wait: the event is retried later instead
            self.clock.sleep(delay)
            execution = self.changes.find(ref.ops_item_id)
            if execution is None or not awaiting_approval(execution):
                return execution
        metrics().add("ApprovalNotVisibleYet")
        log.warning("SSM does not show the approval yet: retrying", extra={"status": ref.status})
        raise TransientError(f"change request of {ref.ops_item_id} is not shown as approved yet")

    @staticmethod
    def _undecided(execution: Mapping[str, Any], log: Any) -> Outcome:
        # A DENIED record now would make the grant of a later approval a "duplicate".
        status = execution.get("AutomationExecutionStatus")
        log.info("change request not approved (yet): nothing to do", extra={"ssm_status": status})
        return Outcome("ignored", None, {"why": f"change request status is {status}"})

    def _deny(
        self, ref: ChangeRequestRef, execution: Mapping[str, Any], denials: list[Denial], now: datetime
    ) -> Outcome:
        """Record and notify the denial under the change request's grant id (a rejection without one)."""
        grant_id = f"cm-{execution.get('AutomationExecutionId', '')}"
        if not GRANT_ID_RE.fullmatch(grant_id):
            return self.recorder.reject(TRIGGER, InvalidInput("; ".join(d.message for d in denials)))
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
        return self.recorder.deny_new(record, denials)

    def _unmanaged(self, request: AccessApproved, log: Any) -> Denial | None:
        """RequireSsmManagedInstance: the change request's instance must be an SSM managed node, asked
        when the request is approved (and again when a deferred start re-drives it), as the request API
        asks when a request is made; the grant no longer asks (``core/grant.py`` says why). Anything
        else about the instance or the account (missing, not allowed, member role unusable) is left to
        the grant, which denies it with its own codes."""
        if not self.settings.require_ssm_managed:
            return None
        try:
            inventory = self.targets.adapters_in(request.account).inventory
        except (AccountNotAllowed, MemberUnavailable) as exc:
            # The grant denies an account it may not use or reach; a member stack that does not yet
            # trust this adapter (EngineRoleArns of an older release) only loses this check: said loudly.
            log.warning(
                "managed-node check skipped: the account cannot be read by the adapter",
                extra={"account": request.account, "why": str(exc)},
            )
            metrics().add("ManagedCheckSkipped")
            return None
        instance = inventory.describe(request.instance_id, check_managed=True)
        if instance is None or instance.ssm_managed is not False:
            return None
        return Denial(
            "instance_not_managed",
            f"instance {request.instance_id} is not a managed node of Systems Manager: no session can open",
        )

    def _record_of(self, request: AccessApproved, now: datetime) -> Grant:
        """The DENIED record of an approved change request, as the grant would have written it."""
        arn = principal_arn(
            self.settings.partition, request.account, request.principal_type, request.principal_name
        )
        return new_record(request, arn, now, GrantStatus.DENIED)

    def _defer(self, ref: ChangeRequestRef, request: AccessApproved, log: Any) -> Outcome:
        """The change starts later: a one-time schedule re-drives this adapter then (idempotent name)."""
        self.schedules.create_once(
            START_PREFIX + request.grant_id,
            request.not_before,
            self.settings.adapter_target_arn,
            ref.due_event(),
        )
        log.info(
            "change request scheduled for later: grant deferred",
            extra={"not_before": to_iso(request.not_before)},
        )
        return Outcome("deferred", request.grant_id, {"not_before": to_iso(request.not_before)})

    def _emit(self, request: AccessApproved, log: Any) -> Outcome:
        self.bus.emit_approved(request)
        log.info("AccessApproved emitted")
        return Outcome("emitted", request.grant_id)
