"""Revocation: untag only while the slot still names the grant, then free slot and record together."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core import denials, slots
from sessiongate.core.binding import for_grant, lock_scope
from sessiongate.core.context import Context
from sessiongate.core.identity import Identity
from sessiongate.core.model import GRANT_ID_RE, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import AccountNotAllowed, MemberUnavailable, Sessions
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import bind, metrics

# A PROVISIONING grant younger than this may still be in the hands of a running grant invocation.
PROVISIONING_GRACE = timedelta(minutes=5)
REASON_EXPIRED = "expired"
# An extension's grant replaced this one (the request API revokes the parent with this reason).
REASON_EXTENDED = "extended"
# Revoke schedules are named after their grant (Scheduler names: ^[0-9a-zA-Z-_.]+$, <= 64 characters).
REVOKE_PREFIX = "sg-revoke-"


def schedule_name(grant_id: str) -> str:
    return REVOKE_PREFIX + grant_id


def revoke(ctx: Context, grant_id: object, *, reason: str, by: str) -> Outcome:
    if not isinstance(grant_id, str) or not GRANT_ID_RE.fullmatch(grant_id):
        return denials.reject(ctx, "Revoke", InvalidInput("grant_id is missing or invalid", field="grant_id"))
    log = bind(grant_id=grant_id)
    grant = ctx.ledger.get_grant(grant_id)
    if grant is None:
        log.warning("revoke for an unknown grant")
        metrics().add("RevokeUnknownGrant")
        return Outcome(Result.IGNORED, grant_id, {"why": "unknown grant"})
    if grant.status in (GrantStatus.REVOKED, GrantStatus.DENIED):
        metrics().add("DuplicateDeliveries")
        return Outcome(Result.DUPLICATE, grant_id, {"status": grant.status.value})
    now = ctx.clock.now()
    if grant.status is GrantStatus.PROVISIONING and now - parse_iso(grant.created_at) < PROVISIONING_GRACE:
        # Raise: the retry comes back once the grant invocation has finished either way.
        raise TransientError(f"grant {grant_id} is still being provisioned")
    log.append_keys(
        instance_id=grant.instance_id,
        principal_arn=grant.principal_arn,
        slot=grant.slot,
        revoke_reason=reason,
    )
    holds_slot = _untag_while_holding(ctx, grant, reason, now, log)
    if not ctx.ledger.complete_revoke(grant, at=to_iso(now), reason=reason, by=by, release_slot=holds_slot):
        return Outcome(Result.DUPLICATE, grant_id, {"status": "REVOKED"})
    if reason != REASON_EXPIRED and grant.schedule_name:
        ctx.schedules.delete(grant.schedule_name)
    metrics().add("Revocations")
    if reason == REASON_EXPIRED and grant.expires is not None:
        metrics().add("RevocationLag", max(0.0, (now - grant.expires).total_seconds()), unit="Seconds")
    log.info("access revoked")
    denials.announce_revoked(ctx, grant, reason, by)
    return Outcome(Result.REVOKED, grant_id, {"reason": reason, "untagged": holds_slot})


def _untag_while_holding(ctx: Context, grant: Grant, reason: str, now: datetime, log: Any) -> bool:
    """Remove the grant's tag (and end its sessions) if its slot lock still names it; whether it did."""
    if grant.slot is None:
        return False
    if ctx.ledger.slot_holder(lock_scope(grant), grant.slot) != grant.grant_id:
        log.warning("slot no longer held by this grant: tags left untouched")
        return False
    try:
        directory, inventory, sessions = ctx.adapters_in(grant.account)
    except (MemberUnavailable, AccountNotAllowed) as exc:
        # Never skipped silently: raise, so the revocation is retried and alarmed.
        raise TransientError(f"cannot reach account {grant.account} to revoke: {exc}") from exc
    # On the principal, or (instance binding) on the instance with the grant's own value only.
    for_grant(grant, directory, inventory).untag(grant.slot)
    if ctx.settings.terminate_sessions_on_expiry:
        _end_sessions_unless_continued(ctx, grant, reason, now, sessions, log)
    return True


def _end_sessions_unless_continued(
    ctx: Context, grant: Grant, reason: str, now: datetime, sessions: Sessions | None, log: Any
) -> None:
    """An extension replaced this grant (or it ran out while its extension is live, the request API not
    having retired it yet): the same person keeps the same instance, so nothing ends now; the sessions
    end when the successor's own access does. An explicit revocation (done, revoked by an approver)
    always ends them."""
    continues = reason in (REASON_EXTENDED, REASON_EXPIRED)
    successor = successor_of(ctx, grant, now) if continues else None
    if successor is not None:
        log.info("open sessions kept: access continues", extra={"successor": successor})
        return
    ended = _end_sessions(ctx, grant, sessions)
    if ended:
        log.info("open sessions terminated", extra={"sessions": ended})


def successor_of(ctx: Context, grant: Grant, now: datetime) -> str | None:
    """The live grant that continues ``grant``'s access, if any, read from the ledger.

    It holds another slot of the same principal (bound on the instance: of the same instance) and is
    ACTIVE, unexpired, for the same account, instance, binding and bound session. Anything less (the
    extension denied, revoked, expired, elsewhere, or bound to another session) is no continuation:
    the revocation ends the sessions as usual.
    """
    for slot in range(1, ctx.settings.slot_count + 1):
        if slot == grant.slot:
            continue
        holder = ctx.ledger.slot_holder(lock_scope(grant), slot)
        if holder is None or holder in (grant.grant_id, slots.REPAIR_HOLDER):
            continue
        other = ctx.ledger.get_grant(holder)
        if other is not None and other.slot == slot and _continues(grant, other, now):
            return other.grant_id
    return None


def _continues(grant: Grant, other: Grant, now: datetime) -> bool:
    return (
        other.status is GrantStatus.ACTIVE
        and (other.account, other.principal_arn, other.instance_id, other.bound_user_id, other.binding)
        == (grant.account, grant.principal_arn, grant.instance_id, grant.bound_user_id, grant.binding)
        and other.expires is not None
        and now < other.expires
    )


def _end_sessions(ctx: Context, grant: Grant, sessions: Sessions | None) -> list[str]:
    if sessions is None:
        return []
    owner = Identity(ctx.settings.partition, grant.account, grant.principal_type, grant.principal_name)
    # A role session's aws:userid is <RoleId>:<session name>; an IAM user's (instance binding) its UserId.
    bound = grant.bound_user_id or ""
    session_name = bound.split(":", 1)[1] if ":" in bound else None
    return sessions.terminate(grant.instance_id, owner, session_name)
