"""Denials and rejected events: recorded in the ledger, logged, counted and notified, never raised.

A denial is notified by its record (``AccessDenied`` from the ledger's stream: :mod:`sessiongate.outbox`);
a malformed trigger changes no record and is published here."""

from __future__ import annotations

from dataclasses import replace

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.binding import for_grant, lock_scope
from sessiongate.core.context import Context
from sessiongate.core.model import Denial, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import AccountNotAllowed, MemberUnavailable
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import logger, metrics


def deny_new(ctx: Context, record: Grant, denials: list[Denial]) -> Outcome:
    """Record a grant that never started as DENIED (a duplicate delivery finds it and stops)."""
    record = replace(
        record,
        status=GrantStatus.DENIED,
        denials=[d.as_dict() for d in denials],
        denied_at=to_iso(ctx.clock.now()),
    )
    if not ctx.ledger.create(record):
        # A redelivery: if its record was abandoned and the undo failed, this is the undo's retry.
        finish_undo(ctx, ctx.ledger.get_grant(record.grant_id))
        return Outcome(Result.DUPLICATE, record.grant_id)
    return denied(record)


def abandon(ctx: Context, grant: Grant, denials: list[Denial]) -> Outcome:
    """Deny a grant whose record exists (ACTIVE whose tag was refused, or PROVISIONING as the previous
    release left it): record the denial, then undo what it did while its slot lock names it.

    The denial is recorded first, on condition that ``activated_at`` did not move (``mark_denied``): a
    concurrent delivery that rebound the grant meanwhile owns it (its tag is its to keep or abandon),
    and once DENIED no delivery can rebind it. A delivery's tag call that started within the bind window
    may still land, so the undo waits, as the revocation does, until none can (REVIEW-A F4)."""
    if not ctx.ledger.mark_denied(grant, [d.as_dict() for d in denials], at=to_iso(ctx.clock.now())):
        return Outcome(Result.SUPERSEDED, grant.grant_id)
    _undo(ctx, grant)
    return denied(grant)


def finish_undo(ctx: Context, grant: Grant | None) -> None:
    """The undo of an abandoned grant (DENIED after its transaction, so with a slot) that did not finish:
    its delivery raised after the DENIED mark, and that mark turns every redelivery into a duplicate.
    The redelivery does it here (``grant._redelivered``, ``deny_new``), fail-closed: an undo that fails
    again raises again, so the event is retried and, after the retries, alarmed; the reconciler frees
    the lock and removes the tag if it is still there (``reconcile._remove_drift``). Nothing is done
    (no call) for any other record, nor once the lock no longer names the grant (one GetItem)."""
    if grant is not None and grant.status is GrantStatus.DENIED and grant.slot is not None:
        _undo(ctx, grant)


def _undo(ctx: Context, grant: Grant) -> None:
    """Wait until no tag call of ``grant`` can land, then remove its tag and free its slot while its slot
    lock names it. Raises (TransientError, ServiceFailure) when that cannot be done now."""
    from sessiongate.core import revoke  # revoke imports this module

    if grant.activated_at:
        settled = parse_iso(grant.activated_at) + revoke.BIND_WINDOW + revoke.TAG_CALL_BOUND
        now = ctx.clock.now()
        if now < settled:
            ctx.clock.sleep((settled - now).total_seconds())
    scope = lock_scope(grant)  # the principal's slots, or (instance binding) the instance's
    if grant.slot is not None and ctx.ledger.slot_holder(scope, grant.slot) == grant.grant_id:
        try:
            adapters = ctx.adapters_in(grant.account)
        except (MemberUnavailable, AccountNotAllowed) as exc:
            raise TransientError(
                f"cannot reach account {grant.account} to undo {grant.grant_id}: {exc}"
            ) from exc
        for_grant(grant, adapters.directory, adapters.inventory).untag(grant.slot)
        ctx.ledger.release_slot(scope, grant.slot, grant.grant_id)


def denied(grant: Grant) -> Outcome:
    """A denial recorded: logged and counted (its record's change is the AccessDenied notification)."""
    codes = [d["code"] for d in grant.denials]
    logger().warning("access denied", extra={"grant_id": grant.grant_id, "denials": grant.denials})
    for code in codes:
        metrics().add("Denials", reason=code)
    return Outcome(Result.DENIED, grant.grant_id, {"denials": grant.denials})


def reject(ctx: Context, what: str, exc: InvalidInput) -> Outcome:
    """A malformed trigger: logged, counted and notified; never retried, nothing changed in IAM."""
    logger().error("event rejected", extra={"trigger": what, "problem": str(exc), "field": exc.field})
    metrics().add("RejectedEvents", reason=what)
    ctx.notifier.publish(
        "EventRejected",
        {
            "at": to_iso(ctx.clock.now()),
            "trigger": what,
            "problem": str(exc),
            "field": exc.field,
            "account": ctx.settings.account_id,
        },
        subject=f"SessionGate: rejected a malformed {what} trigger",
    )
    return Outcome(Result.REJECTED, None, {"problem": str(exc), "field": exc.field})
