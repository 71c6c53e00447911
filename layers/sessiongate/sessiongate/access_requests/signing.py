"""The approval MAC (ApprovalKey) and the hand-over of approved requests to the engine."""

from __future__ import annotations

import hmac
from dataclasses import replace

from sessiongate.access_requests.errors import Unavailable
from sessiongate.access_requests.notices import Notices
from sessiongate.access_requests.records import (
    Request,
)
from sessiongate.adapters.kms import MacUnavailable
from sessiongate.clock import parse_iso, to_iso
from sessiongate.observability import bind, metrics


class Signing(Notices):
    def _sign(self, approved: Request) -> Request:
        """Bind an APPROVED record with the request API's approval MAC (ApprovalKey)."""
        if self.macs is None or not self.settings.approval_key_id:
            raise Unavailable(
                "approval_key_unavailable", "SessionGate cannot sign approvals; tell its admins"
            )
        try:
            mac = self.macs.generate(self.settings.approval_key_id, approved.approval_message())
        except MacUnavailable as exc:
            bind().error("approval key unusable", extra={"problem": str(exc)})
            metrics().add("ApprovalKeyErrors")
            raise Unavailable(
                "approval_key_unavailable", "SessionGate cannot sign approvals; tell its admins"
            ) from None
        return replace(approved, approval_mac=mac)

    def _approved_by_api(self, request: Request) -> bool:
        """Whether the request API itself approved this record; only such records are handed to the
        engine again by the sweep (and a read never hands anything over).

        The proof is the record's ``approval_mac``: the request API role is the only principal that
        may GenerateMac with ApprovalKey (its key policy), and HMAC is deterministic, so the API
        re-generates the MAC of the record's facts and compares (it holds no VerifyMac: the grant role
        does). A record written into the table by anyone else has no valid MAC: never handed over.
        A key that cannot be used proves nothing either (fail closed).
        """
        if not request.approval_mac or self.macs is None or not self.settings.approval_key_id:
            return False
        try:
            expected = self.macs.generate(self.settings.approval_key_id, request.approval_message())
        except MacUnavailable:
            metrics().add("ApprovalKeyErrors")
            return False
        return hmac.compare_digest(expected, request.approval_mac)

    def _due(self, request: Request) -> bool:
        """Whether an approved request may start now (its scheduled start, if any, has come)."""
        return request.not_before is None or parse_iso(request.not_before) <= self.clock.now()

    def _emit(self, request: Request) -> Request:
        """Hand an approved request to the engine and mark it handed over. Only the writer that
        approved it (approve, break-glass create) and the sweep (a failed hand-over, :meth:`_approved_by_api`)
        call this, never a read; a second emit is harmless (the grant dedupes on the grant id).
        A request whose scheduled start (``start_at``) has not come is left for the sweep, which hands
        it over once it is due (:meth:`_due`)."""
        if not self._due(request):
            bind(request_id=request.request_id).info(
                "approved request scheduled: handed over at its start", extra={"start_at": request.start_at}
            )
            return request
        self.bus.emit_approved(request.to_access_approved())
        marked = replace(request, emitted_at=to_iso(self.clock.now()), version=request.version + 1)
        if self.store.replace(marked, expected_version=request.version):
            return marked
        current = self.store.get(request.request_id)
        return current if current is not None else request
