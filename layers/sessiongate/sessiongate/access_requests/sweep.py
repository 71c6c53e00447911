"""The scheduled sweep: what must happen on time even when nobody calls the API."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.access_requests.deps import (
    EMIT_GRACE,
    SWEEP_LIMIT,
)
from sessiongate.access_requests.errors import Refused
from sessiongate.access_requests.records import (
    Request,
    RequestStatus,
)
from sessiongate.access_requests.reminders import due
from sessiongate.access_requests.status import Status
from sessiongate.clock import parse_iso, to_iso
from sessiongate.errors import TransientError
from sessiongate.observability import bind, metrics
from sessiongate.outbox import rule_snapshot


class Sweep(Status):
    def sweep(self) -> dict[str, Any]:
        """Scheduled (the reconciler's rate): what must happen on time even when nobody calls the API.

        1. Pending requests whose time ran out become EXPIRED and are notified, oldest first.
        2. Approved requests whose hand-over to the engine failed are emitted again, if the request
           API itself approved them (:meth:`_approved_by_api`).
        2b. Approved requests with a scheduled start (``start_at``) that has come are handed over.
        3. Approved requests whose grant has settled (ACTIVE, DENIED, REVOKED) are written so, which
           takes them off the sweep's list; an extension found ACTIVE first retires the grant it
           replaces (revoked, reason ``extended``).
        1b. Pending requests whose rule asks for reminders or an escalation get them when due
            (:mod:`.reminders`).
        4. A change of the approval policy is recorded and notified (PolicyChanged), a policy that
           does not verify is notified (PolicyRejected).
        At most ``SWEEP_LIMIT`` of each a run. Every approved request is attempted; if any failed, the
        run raises at the end (Lambda retries it, the request API's error alarm fires, the next run
        tries again).
        """
        # A rejected policy is logged, counted and notified there; expiring requests needs no policy.
        with contextlib.suppress(Refused):
            self._note_policy(sweep=True)
        log = bind()
        expired = reminded = 0
        for request in self.store.pending(limit=SWEEP_LIMIT, oldest_first=True):
            current = self._write_derived(request)
            expired += current.status is RequestStatus.EXPIRED
            reminded += self._remind(current)
        done = {"reemitted": 0, "settled": 0}  # (+ "started": scheduled starts, when there were any)
        failures = []
        for request in self.store.approved(limit=SWEEP_LIMIT):
            try:
                for kind in self._sweep_approved(request):
                    done[kind] = done.get(kind, 0) + 1
            except (TransientError, Refused, ClientError, BotoCoreError) as exc:
                log.exception("sweep could not handle a request", extra={"request_id": request.request_id})
                failures.append(f"{request.request_id}: {exc}")
        if expired:
            metrics().add("PendingRequestsExpired", expired)
            log.info("pending requests expired", extra={"expired": expired})
        if reminded:
            metrics().add("PendingRequestsReminded", reminded)
            log.info("pending requests reminded or escalated", extra={"reminded": reminded})
        if done["reemitted"]:
            metrics().add("ApprovalsReemitted", done["reemitted"])
        if any(done.values()):
            log.info("approved requests swept", extra=done)
        if failures:
            raise TransientError(f"sweep left {len(failures)} request(s) unhandled: {failures[:5]}")
        out: dict[str, Any] = {"result": "swept", "expired": expired, **done}
        if reminded:
            out["reminded"] = reminded
        return out

    def _sweep_approved(self, request: Request) -> list[str]:
        """Steps 2 and 3 of the sweep for one APPROVED record; the kinds of work done."""
        grant = self.engine.ledger.get_grant(request.grant_id)
        if grant is None:
            if request.emitted_at is not None or request.approved_at is None:
                return []  # handed over: the engine has not recorded it yet
            if request.start_at is not None and request.not_before != request.approved_at:
                return self._start_scheduled(request)
            if self.clock.now() - parse_iso(request.approved_at) < EMIT_GRACE:
                return []  # the approving call may still be emitting it
            if not self._approved_by_api(request):
                # Possibly written into the table by someone else: never handed to the engine.
                bind(request_id=request.request_id).error(
                    "approved request not handed to the engine: nothing proves the request API approved it"
                )
                metrics().add("UnverifiedApprovals")
                return []
            self._emit(request)
            bind(request_id=request.request_id).warning("approved request handed to the engine again")
            return ["reemitted"]
        if self._derived(request, grant).status is RequestStatus.APPROVED:
            return []  # still being granted
        return ["settled"] if self._write_derived(request).version > request.version else []

    def _start_scheduled(self, request: Request) -> list[str]:
        """An approved request with a scheduled start (issue 18): handed to the engine once it is due,
        by the first sweep after ``start_at`` (the access starts within one sweep period of it; the
        engine counts the approval's freshness from the start, so it is not stale)."""
        if not self._due(request):
            return []
        if not self._approved_by_api(request):
            bind(request_id=request.request_id).error(
                "scheduled request not handed to the engine: nothing proves the request API approved it"
            )
            metrics().add("UnverifiedApprovals")
            return []
        self._emit(request)
        bind(request_id=request.request_id).info(
            "scheduled request started", extra={"start_at": request.start_at}
        )
        return ["started"]

    def _remind(self, request: Request) -> int:
        """Step 1b for one pending request: 1 when a reminder or an escalation went out. The rule is
        the one it was made under, by name (no instance lookup; approval re-checks the rule anyway)."""
        if request.status is not RequestStatus.PENDING:
            return 0
        try:
            rule = self._policy().rule_named(request.rule)
        except Refused:
            return 0  # an unusable policy is notified above; nothing to remind under
        owed = due(rule, request, self.clock.now())
        if not owed.anything or rule is None:
            return 0
        now = to_iso(self.clock.now())
        updated = replace(
            request,
            reminders_sent=max(owed.reminders, request.reminders_sent),
            reminded_at=now if owed.reminders and not owed.escalate else request.reminded_at,
            escalated_at=now if owed.escalate else request.escalated_at,
            version=request.version + 1,
            notice_rule=rule_snapshot(rule),
        )
        # The conditional write is the notification: its stream record is the AccessRequestEscalated
        # (or, without an escalation, AccessRequestReminder) event (:mod:`sessiongate.outbox`).
        if not self.store.replace(updated, expected_version=request.version):
            return 0  # someone else wrote it meanwhile: the next sweep decides again
        return 1
