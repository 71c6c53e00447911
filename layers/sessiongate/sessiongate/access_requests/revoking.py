"""Ending an access early: every request of it (the first and its extensions)."""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.caller import Caller, same_caller
from sessiongate.access_requests.deps import (
    REASON_ACCESS_REVOKED,
    REASON_DONE,
    REASON_REVOKED,
    WRITE_ATTEMPTS,
)
from sessiongate.access_requests.errors import Conflict, NotAllowed, Refused
from sessiongate.access_requests.inputs import parse_comment
from sessiongate.access_requests.records import (
    LIVE,
    RequestStatus,
)
from sessiongate.access_requests.status import Status
from sessiongate.observability import bind


class Revoking(Status):
    def revoke(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        """Early revocation: "I'm done" by the requester, or an approver of the request's rule.

        It ends the whole access, whichever of its requests is named (the first one or an extension):
        pending extensions are cancelled (approved later, they would bring access back) and live
        requests revoked. Every request is attempted; a 409 names any that could not be ended yet.
        """
        comment = parse_comment(body, required=False, name="reason")
        request = self._load_for_write(request_id)
        is_requester = same_caller(caller.arn, request.requester_arn)
        if not is_requester:
            rule = self._current_rule(request, required=False)
            if not self._may_review(caller, request, rule):
                raise NotAllowed("not_allowed", "only the requester or an approver may revoke this access")
        family = self._family(request)
        if not any(member.status in LIVE for member in family):
            raise Conflict("not_active", f"request {request_id} is {request.status.value}: nothing to revoke")
        reason = REASON_DONE if is_requester else REASON_REVOKED
        left = []
        # Pending ones first, so none of them can turn live behind the revocations.
        for member in sorted(family, key=lambda r: r.status is not RequestStatus.PENDING):
            if member.status in LIVE or member.status is RequestStatus.PENDING:
                try:
                    self._end(member.request_id, reason=reason, by=caller.arn, comment=comment)
                except Refused as exc:
                    left.append(f"{member.request_id} ({exc.code})")
        if left:
            raise Conflict("partly_revoked", f"not ended yet: {', '.join(left)}; revoke again shortly")
        return self._view(self._load_for_write(request_id), None)

    def _end(self, request_id: str, *, reason: str, by: str, comment: str) -> None:
        """End one request of an access: revoke it if live, cancel it if pending (re-read on a lost
        race, e.g. an approval landing meanwhile)."""
        for _ in range(WRITE_ATTEMPTS):
            request = self._load_for_write(request_id)
            if request.status in LIVE:
                self._revoke(request, reason=reason, by=by, comment=comment)
                return
            if request.status is not RequestStatus.PENDING:
                return
            cancelled = request.transition(
                RequestStatus.CANCELLED,
                at=self.clock.now(),
                by=by,
                comment=REASON_ACCESS_REVOKED,
                version=request.version + 1,
            )
            if self.store.replace(cancelled, expected_version=request.version):
                bind(request_id=request_id).info("pending request cancelled", extra={"why": "access revoked"})
                return
        raise Conflict("conflict", f"request {request_id} kept changing")
