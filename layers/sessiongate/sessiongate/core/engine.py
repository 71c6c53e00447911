"""The engine: the triggers of the grant core (grant, revoke, reconcile) behind one object.

Denials are decisions: recorded in the ledger, notified, and returned, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiongate.core import denials as denying
from sessiongate.core import grant as granting
from sessiongate.core import reconcile as reconciling
from sessiongate.core import revoke as revoking
from sessiongate.core import session_logging, usage
from sessiongate.core.context import Context
from sessiongate.core.grant import START_TOLERANCE
from sessiongate.core.model import ACCESS_APPROVED, EVENT_SOURCE, Denial, Grant, Outcome, Result
from sessiongate.core.ports import AccountNotAllowed, OriginVerifier
from sessiongate.core.reconcile import RECONCILE_TOLERANCE
from sessiongate.core.revoke import PROVISIONING_GRACE, REASON_EXPIRED, REASON_EXTENDED
from sessiongate.core.slots import REPAIR_HOLDER
from sessiongate.errors import InvalidInput, TransientError

__all__ = [
    "PROVISIONING_GRACE",
    "REASON_EXPIRED",
    "REASON_EXTENDED",
    "RECONCILE_TOLERANCE",
    "REPAIR_HOLDER",
    "START_TOLERANCE",
    "AccountNotAllowed",
    "Engine",
    "OriginVerifier",
]


class Engine(Context):
    """Built with the core's collaborators (see :class:`Context`); one method per trigger."""

    def on_access_approved(self, event: object) -> Outcome:
        """EventBridge delivery of ``AccessApproved`` from the SessionGate bus."""
        if (
            not isinstance(event, Mapping)
            or event.get("source") != EVENT_SOURCE
            or event.get("detail-type") != ACCESS_APPROVED
        ):
            return self.reject("AccessApproved", InvalidInput("not a sessiongate AccessApproved event"))
        return self.grant(event.get("detail"))

    def on_revoke_schedule(self, event: object) -> Outcome:
        """Scheduler delivery of ``{"grant_id": ..., "reason": "expired"}`` at a grant's expiry."""
        if not isinstance(event, Mapping) or event.get("reason") != REASON_EXPIRED:
            return self.reject("Revoke", InvalidInput("not a SessionGate revoke schedule payload"))
        return revoking.revoke(self, event.get("grant_id"), reason=REASON_EXPIRED, by="scheduler", hint=event)

    def grant(self, detail: object) -> Outcome:
        return granting.grant(self, detail)

    def revoke(self, grant_id: object, *, reason: str = REASON_EXPIRED, by: str = "scheduler") -> Outcome:
        return revoking.revoke(self, grant_id, reason=reason, by=by)

    def reconcile(self) -> Outcome:
        # Through self.revoke, looked up per call: the reconciler revokes exactly as the scheduler does.
        logging_revoked: list[str] = []
        failures: list[str] = []
        if self.settings.require_session_logging:
            # Session logging turned off after a grant: its grants end (core/session_logging.py).
            logging_revoked, failures = session_logging.recheck(
                self,
                lambda grant_id: self.revoke(grant_id, reason=session_logging.REVOKE_REASON, by="reconciler"),
            )
        outcome = reconciling.reconcile(self, lambda grant_id: self.revoke(grant_id, by="reconciler"))
        if failures:
            raise TransientError(f"session logging recheck left {len(failures)} item(s): {failures[:5]}")
        if not self.settings.require_session_logging:
            return outcome
        return Outcome(outcome.result, None, {**outcome.detail, "revoked_logging_off": logging_revoked})

    def on_tag_event(self, event: Mapping[str, Any]) -> Outcome:
        """EventBridge delivery of an IAM or EC2 tag call recorded by CloudTrail: repair that principal,
        or (an instance slot key) those instances."""
        if reconciling.tag_event_instances(event) is not None:
            return reconciling.repair_instances(self, event)
        return reconciling.repair_principal(self, event)

    def sweep(self) -> Outcome:
        """The full (daily) sweep of every principal and slot lock."""
        return reconciling.sweep(self, lambda grant_id: self.revoke(grant_id, by="reconciler"))

    def usage_report(self) -> Outcome:
        """The weekly usage report (core/usage.py), published to the notification topic."""
        report = usage.weekly_report(self, self.clock.now())
        return Outcome(Result.EMITTED, None, {"report": report})

    def reject(self, what: str, exc: InvalidInput) -> Outcome:
        return denying.reject(self, what, exc)

    def deny_new(self, record: Grant, denials: list[Denial]) -> Outcome:
        return denying.deny_new(self, record, denials)
