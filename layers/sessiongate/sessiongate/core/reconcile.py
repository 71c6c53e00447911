"""The reconciler: repair what lost or failed deliveries left behind, and report every repair."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core import denials, slots
from sessiongate.core.context import Context
from sessiongate.core.guardrails import PrincipalFacts
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import Denial, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import AccountNotAllowed, Directory, MemberUnavailable, ServiceFailure
from sessiongate.core.revoke import PROVISIONING_GRACE, REASON_EXPIRED, schedule_name
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger, metrics

# Scheduler fires at() schedules within a minute: the reconciler only steps in after that.
RECONCILE_TOLERANCE = timedelta(seconds=90)

Revoke = Callable[[str], Outcome]  # revoke(grant_id) by the reconciler
Principal = tuple[str, PrincipalType, str]  # account, kind, name


def reconcile(ctx: Context, revoke: Revoke) -> Outcome:
    """1. ACTIVE grants past expiry (their schedule was lost or failed): revoke them.
    2. PROVISIONING grants stuck past the grace period: undo and deny them (or revoke if expired).
    3. ACTIVE grants whose revoke schedule is missing: re-create it.
    4. Slot tags that no live grant explains (drift, manual tagging) on principals that hold the
       operator policy or a live grant: remove them, holding the slot's lock while doing so.
    Every item is attempted; if any repair failed the run raises at the end (alarm, retry).
    """
    bind()  # a new operation: no keys of the previous one
    now = ctx.clock.now()
    repairs: dict[str, list[str]] = {
        "revoked": [],
        "abandoned": [],
        "schedules_recreated": [],
        "drift_removed": [],
    }
    failures: list[str] = []
    live = ctx.ledger.live_grants()
    for grant in live:
        try:
            kind = _repair_grant(ctx, grant, now, revoke)
        except (TransientError, ServiceFailure) as exc:
            logger().exception("reconciler could not repair a grant", extra={"grant_id": grant.grant_id})
            failures.append(f"{grant.grant_id}: {exc}")
            continue
        if kind:
            repairs[kind].append(grant.grant_id)
    principals = {(g.account, PrincipalType(g.principal_type), g.principal_name) for g in live}
    principals |= _operators(ctx, failures)
    for principal in sorted(principals):
        repairs["drift_removed"] += _remove_drift_of(ctx, principal, failures)
    _report(ctx, repairs, now)
    if failures:
        raise TransientError(f"reconciler left {len(failures)} item(s) unrepaired: {failures[:5]}")
    return Outcome(Result.RECONCILED, None, {"repairs": repairs, "checked_grants": len(live)})


def _repair_grant(ctx: Context, grant: Grant, now: datetime, revoke: Revoke) -> str | None:
    """The repair made to one live grant (a key of the report), if any."""
    expires = grant.expires
    if grant.status is GrantStatus.PROVISIONING:
        if now - parse_iso(grant.created_at) < PROVISIONING_GRACE:
            return None  # a grant invocation may still be working on it
        if grant.slot is not None and expires is not None and now >= expires:
            return "revoked" if revoke(grant.grant_id).result == Result.REVOKED else None
        timeout = Denial("provisioning_timeout", "the grant never finished provisioning")
        return "abandoned" if denials.abandon(ctx, grant, [timeout]).result == Result.DENIED else None
    if expires is not None and now >= expires + RECONCILE_TOLERANCE:
        return "revoked" if revoke(grant.grant_id).result == Result.REVOKED else None
    name = grant.schedule_name or schedule_name(grant.grant_id)
    if expires is not None and now < expires and not ctx.schedules.exists(name):
        payload = {"grant_id": grant.grant_id, "reason": REASON_EXPIRED}
        ctx.schedules.create_once(name, expires, ctx.settings.revoke_target_arn, payload)
        return "schedules_recreated"
    return None


def _operators(ctx: Context, failures: list[str]) -> set[Principal]:
    """The principals holding the operator policy, in every account SessionGate serves."""
    found: set[Principal] = set()
    for account in (ctx.settings.account_id, *ctx.settings.member_accounts):
        try:
            directory = ctx.adapters_in(account).directory
            if ctx.settings.operator_policy_arn:
                # The member stack creates the operator policy under the same name in each account.
                policy = ctx.settings.operator_policy_arn.replace(
                    f":{ctx.settings.account_id}:", f":{account}:"
                )
                found |= {(account, k, n) for k, n in directory.policy_principals(policy)}
        except (MemberUnavailable, ServiceFailure) as exc:
            logger().exception("reconciler could not list operators", extra={"account": account})
            failures.append(f"account {account}: {exc}")
    return found


def _remove_drift_of(ctx: Context, principal: Principal, failures: list[str]) -> list[str]:
    account, kind, name = principal
    try:
        return remove_drift(ctx, ctx.adapters_in(account).directory, kind, name)
    except (MemberUnavailable, AccountNotAllowed, ServiceFailure) as exc:
        logger().exception("reconciler could not check a principal", extra={"principal_name": name})
        failures.append(f"{account}/{kind.value}/{name}: {exc}")
        return []


def remove_drift(ctx: Context, directory: Directory, kind: PrincipalType, name: str) -> list[str]:
    """Remove the slot tags of a principal that no live grant explains; what was removed."""
    principal = directory.get_principal(kind, name)
    if principal is None:
        return []
    removed = []
    lowered = {k.lower() for k in principal.tags}
    for slot in range(1, ctx.settings.slot_count + 1):
        keys = [k for k in slots.slot_keys(slot) if k.lower() in lowered]
        holder = ctx.ledger.slot_holder(principal.arn, slot)
        if holder is not None and (holder == slots.REPAIR_HOLDER or not _is_live(ctx, holder)):
            _release_stale_lock(ctx, principal, slot, holder)
            holder = None
            if not keys:
                removed.append(f"{principal.arn}#{slot} (stale lock)")
        if not keys or holder is not None:
            continue
        # Hold the free slot while untagging, so a grant cannot take it and tag it meanwhile.
        if not ctx.ledger.lock_free_slot(principal.arn, slot, slots.REPAIR_HOLDER):
            continue
        try:
            directory.untag(kind, name, keys)
        finally:
            ctx.ledger.release_slot(principal.arn, slot, slots.REPAIR_HOLDER)
        removed.append(f"{principal.arn}#{slot}")
    return removed


def _release_stale_lock(ctx: Context, principal: PrincipalFacts, slot: int, holder: str) -> None:
    """A lock left behind by a grant that is no longer live, or by a reconciler run that died
    mid-repair (runs never overlap: reserved concurrency 1), explains no tag and would keep the slot
    from every future grant. Release it (only if still that holder)."""
    ctx.ledger.release_slot(principal.arn, slot, holder)
    bind(grant_id=holder).warning("stale slot lock released", extra={"slot": slot})


def _is_live(ctx: Context, grant_id: str) -> bool:
    grant = ctx.ledger.get_grant(grant_id)
    return grant is not None and grant.status in (GrantStatus.PROVISIONING, GrantStatus.ACTIVE)


def _report(ctx: Context, repairs: dict[str, list[str]], now: datetime) -> None:
    total = sum(len(v) for v in repairs.values())
    for kind, items in repairs.items():
        if items:
            metrics().add("ReconcilerRepairs", len(items), repair=kind)
    if total:
        logger().warning("reconciler repaired drift", extra={"repairs": repairs})
        ctx.notifier.publish(
            "ReconcilerRepaired",
            {"at": to_iso(now), "account": ctx.settings.account_id, "repairs": repairs},
            subject=f"SessionGate: reconciler made {total} repair(s)",
        )
