"""A request's status derived from the grant ledger, and ending live access through the engine."""

from __future__ import annotations

from sessiongate.access_requests.deps import (
    WRITE_ATTEMPTS,
)
from sessiongate.access_requests.errors import Conflict
from sessiongate.access_requests.records import (
    LIVE,
    Request,
    RequestStatus,
)
from sessiongate.access_requests.rules import RuleAccess
from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.engine import PROVISIONING_GRACE, REASON_EXPIRED, REASON_EXTENDED
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.errors import TransientError
from sessiongate.observability import bind


class Ending(RuleAccess):
    def _derive(self, request: Request) -> Request:
        """The request as of now, from its record and the grant ledger. Writes, emits, revokes nothing."""
        grant = self.engine.ledger.get_grant(request.grant_id) if request.status in LIVE else None
        return self._derived(request, grant)

    def _derived(self, request: Request, grant: Grant | None) -> Request:
        """PENDING past its TTL is EXPIRED; APPROVED follows its grant to ACTIVE (with ``expires_at``) or
        DENIED; a live request follows a REVOKED grant to EXPIRED (reason ``expired``) or REVOKED. The
        moves are added to the history with the times they happened (the TTL, the grant's times), so
        every read of the same record and ledger reports the same request."""
        if request.status is RequestStatus.PENDING:
            deadline = parse_iso(request.pending_expires_at)
            if self.clock.now() < deadline:
                return request
            return request.transition(RequestStatus.EXPIRED, at=deadline, by="sessiongate")
        if request.status not in LIVE or grant is None:
            return request
        if request.status is RequestStatus.APPROVED and grant.status is GrantStatus.ACTIVE:
            return request.transition(
                RequestStatus.ACTIVE,
                at=parse_iso(grant.created_at),
                by="sessiongate",
                expires_at=grant.expires_at,
            )
        if request.status is RequestStatus.APPROVED and grant.status is GrantStatus.DENIED:
            return request.transition(
                RequestStatus.DENIED,
                at=parse_iso(grant.created_at),
                by="sessiongate",
                denials=tuple(grant.denials),
            )
        if grant.status is GrantStatus.REVOKED:
            to = RequestStatus.EXPIRED if grant.revoke_reason == REASON_EXPIRED else RequestStatus.REVOKED
            return request.transition(
                to,
                at=parse_iso(grant.revoked_at or grant.created_at),
                by=grant.revoked_by or "sessiongate",
                comment=grant.revoke_reason or "",
                expires_at=grant.expires_at or request.expires_at,
            )
        return request

    def _retire_parent(self, child: Request) -> bool:
        """An extension's grant is ACTIVE: the grant it replaces is revoked (reason ``extended``). Run when
        the extension's record is written ACTIVE (by the sweep, or a write path that comes first), so
        both grants coexist for at most one sweep period (same principal, same instance)."""
        if child.extends is None:
            return False
        parent = self.store.get(child.extends)
        if parent is None:
            return False
        parent = self._derive(parent)
        if parent.status not in LIVE:
            return False
        self._revoke(parent, reason=REASON_EXTENDED, by=f"sessiongate:{child.request_id}", comment="")
        return True

    def _revoke(self, request: Request, *, reason: str, by: str, comment: str) -> Request:
        """End a live request. The revocation request (tombstone) goes into the grant ledger first: from
        then on no grant of this request can go ACTIVE (the engine creates and activates a grant only
        while there is none; a grant being provisioned undoes its tag and ends REVOKED). Then an ACTIVE
        grant (or one stuck provisioning) is revoked through the engine, then the record is written."""
        now = self.clock.now()
        ledger = self.engine.ledger
        ledger.request_revoke(request.grant_id, at=to_iso(now), reason=reason, by=by)
        grant = ledger.get_grant(request.grant_id)
        if grant is not None and (
            grant.status is GrantStatus.ACTIVE
            or (
                grant.status is GrantStatus.PROVISIONING
                and now - parse_iso(grant.created_at) >= PROVISIONING_GRACE
            )
        ):
            self._engine_revoke(request, reason=reason, by=by)
        for _ in range(WRITE_ATTEMPTS):
            if request.status not in LIVE:
                return request
            updated = request.transition(
                RequestStatus.REVOKED, at=now, by=by, comment=comment or reason, version=request.version + 1
            )
            if self.store.replace(updated, expected_version=request.version):
                return updated
            fresh = self.store.get(request.request_id)
            if fresh is None:
                break
            request = self._derive(fresh)
        return request

    def _engine_revoke(self, request: Request, *, reason: str, by: str) -> None:
        try:
            outcome = self.engine.revoke(request.grant_id, reason=reason, by=by)
        except TransientError:
            raise Conflict(
                "grant_in_progress", "the grant is still being set up; try again in a minute"
            ) from None
        bind(request_id=request.request_id).info("grant revoked early", extra={"result": outcome.result})
