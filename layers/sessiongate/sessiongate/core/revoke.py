"""Revocation: untag only while the slot still names the grant, then free slot and record together."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core import denials, slots
from sessiongate.core.binding import for_grant, instance_scope, lock_scope
from sessiongate.core.context import Context
from sessiongate.core.identity import Identity
from sessiongate.core.model import GRANT_ID_RE, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import AccountNotAllowed, MemberUnavailable, Sessions
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import bind, metrics

# A PROVISIONING grant (written by the previous release: grants are now opened ACTIVE) younger than
# this may still be in the hands of a running grant invocation.
PROVISIONING_GRACE = timedelta(minutes=5)
REASON_EXPIRED = "expired"
# An extension's grant replaced this one (the request API revokes the parent with this reason).
REASON_EXTENDED = "extended"
# How long a grant may still tag after its activated_at (``core/grant.py``); here to avoid an import cycle.
BIND_WINDOW = timedelta(seconds=10)
# The tag client's worst case (adapters/aws.py TAG_CALL_CONFIG) fits: tests/unit/test_aws_clients.py.
TAG_CALL_BOUND = timedelta(seconds=5)
# Revoke schedules are named after their grant (Scheduler names: ^[0-9a-zA-Z-_.]+$, <= 64 characters).
REVOKE_PREFIX = "sg-revoke-"


def schedule_name(grant_id: str) -> str:
    return REVOKE_PREFIX + grant_id


def revoke(
    ctx: Context,
    grant_id: object,
    *,
    reason: str,
    by: str,
    hint: Mapping[str, Any] | None = None,
) -> Outcome:
    """Untag while the slot lock names the grant, then REVOKED + lock released in one transaction.

    ``hint``: the revoke schedule's payload (``grant.revoke_payload``): the principal and slot let the
    record and its lock be read in one call, ``expires_at`` tells a schedule an extension superseded.
    A grant younger than its bind window is waited for first (``core/grant.py`` explains the race): at
    most ``BIND_WINDOW + TAG_CALL_BOUND`` (15 s), within the request API's answer time.
    """
    if not isinstance(grant_id, str) or not GRANT_ID_RE.fullmatch(grant_id):
        return denials.reject(ctx, "Revoke", InvalidInput("grant_id is missing or invalid", field="grant_id"))
    log = bind(grant_id=grant_id)
    grant, holder = _read(ctx, grant_id, hint)
    for _ in range(_ATTEMPTS):
        if grant is None:
            log.warning("revoke for an unknown grant")
            metrics().add("RevokeUnknownGrant")
            return Outcome(Result.IGNORED, grant_id, {"why": "unknown grant"})
        if grant.status in (GrantStatus.REVOKED, GrantStatus.DENIED):
            metrics().add("DuplicateDeliveries")
            return Outcome(Result.DUPLICATE, grant_id, {"status": grant.status.value})
        now = ctx.clock.now()
        if _superseded(grant, reason, hint, now):
            log.info("revoke schedule superseded", extra={"expires_at": grant.expires_at})
            return Outcome(Result.IGNORED, grant_id, {"why": "schedule superseded"})
        legacy = grant.status is GrantStatus.PROVISIONING
        if legacy and now - parse_iso(grant.created_at) < PROVISIONING_GRACE:
            # A record of the previous release, maybe still in a grant invocation's hands: retry later.
            raise TransientError(f"grant {grant_id} is still being provisioned")
        if grant.activated_at:
            settled = parse_iso(grant.activated_at) + BIND_WINDOW + TAG_CALL_BOUND
            if now < settled:
                # The grant may still tag: wait until it cannot, then untag (the lock still names it).
                ctx.clock.sleep((settled - now).total_seconds())
                now = ctx.clock.now()
        log.append_keys(
            instance_id=grant.instance_id,
            principal_arn=grant.principal_arn,
            slot=grant.slot,
            revoke_reason=reason,
        )
        if grant.slot is not None and (holder is None or not _hinted(grant, hint)):
            holder = ctx.ledger.slot_holder(lock_scope(grant), grant.slot)
        holds_slot = _untag_while_holding(ctx, grant, holder, reason, now, log)
        if ctx.ledger.complete_revoke(grant, at=to_iso(now), reason=reason, by=by, release_slot=holds_slot):
            break
        # Revoked meanwhile, or rebound by a resumed delivery (it may have tagged again): read again.
        grant, holder = ctx.ledger.get_grant(grant_id), None
    else:
        raise TransientError(f"grant {grant_id} kept changing while being revoked")
    if reason != REASON_EXPIRED and grant.schedule_name:
        ctx.schedules.delete(grant.schedule_name)
    metrics().add("Revocations")
    if reason == REASON_EXPIRED and grant.expires is not None:
        metrics().add("RevocationLag", max(0.0, (now - grant.expires).total_seconds()), unit="Seconds")
    log.info("access revoked")
    return Outcome(Result.REVOKED, grant_id, {"reason": reason, "untagged": holds_slot})


_ATTEMPTS = 3


def _hinted(grant: Grant, hint: Mapping[str, Any] | None) -> bool:
    """Whether the payload named this grant's own lock scope and slot (its lock was read with it)."""
    return hint is not None and _hinted_scope(hint) == lock_scope(grant) and hint.get("slot") == grant.slot


def _hinted_scope(hint: Mapping[str, Any]) -> str | None:
    """The lock scope a payload names: its principal, or (instance binding) its instance."""
    if hint.get("binding") == "instance":
        account, instance = hint.get("account"), hint.get("instance_id")
        return (
            instance_scope(account, instance)
            if isinstance(account, str) and isinstance(instance, str)
            else None
        )
    arn = hint.get("principal_arn")
    return arn if isinstance(arn, str) else None


def _read(ctx: Context, grant_id: str, hint: Mapping[str, Any] | None) -> tuple[Grant | None, str | None]:
    scope, slot = _hinted_scope(hint or {}), (hint or {}).get("slot")
    if scope is not None and isinstance(slot, int) and 1 <= slot <= slots.MAX_SLOTS:
        return ctx.ledger.grant_and_holder(grant_id, scope, slot)
    return ctx.ledger.get_grant(grant_id), None


def _superseded(grant: Grant, reason: str, hint: Mapping[str, Any] | None, now: datetime) -> bool:
    """A revoke schedule for an expiry the grant no longer has (extended in place): not due yet."""
    if reason != REASON_EXPIRED or hint is None or grant.expires is None:
        return False
    scheduled = hint.get("expires_at")
    return isinstance(scheduled, str) and scheduled != grant.expires_at and now < grant.expires


def _untag_while_holding(
    ctx: Context, grant: Grant, holder: str | None, reason: str, now: datetime, log: Any
) -> bool:
    """Remove the grant's tag (and end its sessions) if its slot lock still names it; whether it did."""
    if grant.slot is None:
        return False
    if holder != grant.grant_id:
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
