"""Granting: check an approved request, claim a slot, tag the principal, schedule the revocation.

Every step converges on redelivery (conditional record and slot claim, same tags, one schedule name).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sessiongate.clock import to_iso
from sessiongate.core import binding, denials, guardrails, revoke
from sessiongate.core.binding import Binding, lock_scope
from sessiongate.core.context import Context
from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts
from sessiongate.core.identity import principal_arn
from sessiongate.core.model import AccessApproved, Denial, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import AccountNotAllowed, Directory, Inventory, MemberUnavailable
from sessiongate.core.slots import BindingMode
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import bind, metrics

# Scheduler's at() precision: a start this close is "now".
START_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class Checked:
    """An approved request with what the target account says about it."""

    request: AccessApproved
    principal: PrincipalFacts | None
    directory: Directory
    denials: list[Denial]
    # Where the slot tag goes (instance binding, issue 15) and what the instance carries now.
    mode: BindingMode = BindingMode.PRINCIPAL
    instance: InstanceFacts | None = None
    inventory: Inventory | None = None


def grant(ctx: Context, detail: object) -> Outcome:
    """The record is created with a conditional write: a duplicate finds it and stops, a PROVISIONING
    one is resumed. The slot claim names the grant, tags are overwritten with the same values and the
    revoke schedule has a deterministic name, so every step converges on redelivery."""
    try:
        request = AccessApproved.from_detail(detail)
    except InvalidInput as exc:
        return denials.reject(ctx, "AccessApproved", exc)
    log = bind(
        grant_id=request.grant_id, instance_id=request.instance_id, principal_name=request.principal_name
    )
    existing = ctx.ledger.get_grant(request.grant_id)
    if existing is not None and existing.status is not GrantStatus.PROVISIONING:
        log.info("duplicate AccessApproved ignored", extra={"status": existing.status.value})
        metrics().add("DuplicateDeliveries")
        return Outcome(Result.DUPLICATE, request.grant_id, {"status": existing.status.value})
    now = ctx.clock.now()
    checked = _check(ctx, request, existing, now)
    if isinstance(checked, Outcome):
        return checked
    started = _start(ctx, checked, existing, now)
    if isinstance(started, Outcome):
        return started
    assert checked.principal is not None  # guardrails deny a missing principal
    bound = _binding(checked, started)
    if started.slot is None:
        minutes = checked.request.duration_minutes
        denied = _claim_slot(ctx, started, bound, now + timedelta(minutes=minutes))
        if denied is not None:
            return denials.abandon(ctx, started, [denied])
    assert started.slot is not None
    log.append_keys(slot=started.slot, principal_arn=started.principal_arn, binding=started.binding)
    return _tag_and_activate(ctx, started, checked, bound, log)


def _binding(checked: Checked, grant: Grant) -> Binding:
    """The binding of the grant's record (a resumed record keeps the mode it was created with)."""
    assert checked.principal is not None
    assert checked.inventory is not None
    return binding.for_request(
        BindingMode(grant.binding),
        grant.account,
        checked.principal,
        checked.instance,
        grant.instance_id,
        grant.bound_user_id,
        checked.directory,
        checked.inventory,
    )


def new_record(
    request: AccessApproved,
    arn: str,
    now: datetime,
    status: GrantStatus,
    mode: BindingMode = BindingMode.PRINCIPAL,
) -> Grant:
    """The ledger record of ``request`` (no slot yet), bound on the principal or the instance."""
    return Grant(
        grant_id=request.grant_id,
        status=status,
        origin=request.origin.value,
        origin_ref=request.origin_ref,
        account=request.account,
        instance_id=request.instance_id,
        principal_type=request.principal_type.value,
        principal_name=request.principal_name,
        principal_arn=arn,
        requester_arn=request.requester_arn,
        approver_arns=list(request.approver_arns),
        duration_minutes=request.duration_minutes,
        created_at=to_iso(now),
        bound_user_id=request.bound_user_id,
        reason=request.reason,
        binding=mode.value,
    )


def _check(ctx: Context, request: AccessApproved, existing: Grant | None, now: datetime) -> Checked | Outcome:
    """Read the principal and the instance in the target account and apply every guardrail."""
    try:
        directory, inventory, _ = ctx.adapters_in(request.account)
    except MemberUnavailable as exc:
        return _deny_early(ctx, request, existing, now, Denial("member_role_unavailable", str(exc)))
    except AccountNotAllowed:
        message = f"account {request.account} is not a SessionGate account"
        return _deny_early(ctx, request, existing, now, Denial("account_not_allowed", message))
    principal = directory.get_principal(request.principal_type, request.principal_name)
    # The session binding is SessionGate's own derivation, whatever the event says.
    bound = guardrails.bind_to_requester(request, principal, ctx.settings) if principal else None
    if bound != request.bound_user_id:
        request = replace(request, bound_user_id=bound)
    instance = inventory.describe(request.instance_id, check_managed=ctx.settings.require_ssm_managed)
    found = guardrails.evaluate(request, principal, instance, ctx.settings, now)
    if not found:
        found = _verify_origin(ctx, request, instance)
    mode = guardrails.binding_mode(principal, ctx.settings)
    return Checked(request, principal, directory, found, mode, instance, inventory)


def _start(ctx: Context, checked: Checked, existing: Grant | None, now: datetime) -> Grant | Outcome:
    """The PROVISIONING record to work on: created now, or the one a previous delivery left."""
    if existing is not None:
        return denials.abandon(ctx, existing, checked.denials) if checked.denials else existing
    request = checked.request
    arn = checked.principal.arn if checked.principal else _arn(ctx, request)
    if checked.denials:
        denied = new_record(request, arn, now, GrantStatus.DENIED, checked.mode)
        return denials.deny_new(ctx, denied, checked.denials)
    record = new_record(request, arn, now, GrantStatus.PROVISIONING, checked.mode)
    if ctx.ledger.create(record):
        return record
    # A concurrent duplicate created it first: carry on with its record (claims are idempotent).
    current = ctx.ledger.get_grant(request.grant_id)
    if current is None:
        # No record, only a revocation request: the access was revoked before it was granted.
        return _revoked_before_grant(ctx, record)
    if current.status is not GrantStatus.PROVISIONING:
        return Outcome(Result.DUPLICATE, request.grant_id)
    return current


def _claim_slot(ctx: Context, grant: Grant, bound: Binding, expires: datetime) -> Denial | None:
    """Claim a free slot of the principal (or, bound on the instance, of the instance) for ``grant``;
    the denial when there is none or no room for the tag. The tags already read (GetUser/GetRole or
    DescribeInstances) say which slot to try first: no extra call."""
    count = ctx.settings.slot_count
    room = bound.room_denial(count)
    if room is not None:
        return room
    for slot in bound.preference(count):
        if ctx.ledger.claim_slot(grant, slot, to_iso(expires)):
            return None
    return Denial("no_free_slot", f"all {count} slots of the {bound.mode.value} are in use")


def _tag_and_activate(ctx: Context, grant: Grant, checked: Checked, bound: Binding, log: Any) -> Outcome:
    assert grant.slot is not None
    assert grant.expires is not None
    refused = bound.tag(grant.slot)
    if refused is not None:
        return denials.abandon(ctx, grant, [refused])
    name = revoke.schedule_name(grant.grant_id)
    payload = {"grant_id": grant.grant_id, "reason": revoke.REASON_EXPIRED}
    ctx.schedules.create_once(name, grant.expires, ctx.settings.revoke_target_arn, payload)
    if not ctx.ledger.activate(grant, name):
        return _activation_lost(ctx, grant, bound)
    metrics().add("Grants")
    log.info("access granted", extra={"expires_at": grant.expires_at})
    ctx.notifier.publish(
        "AccessGranted",
        denials.payload(ctx, grant),
        subject=f"SessionGate: {grant.principal_name} may open a session on {grant.instance_id}",
    )
    detail = {"slot": grant.slot, "expires_at": grant.expires_at, "principal_arn": grant.principal_arn}
    return Outcome(Result.GRANTED, grant.grant_id, detail)


def _activation_lost(ctx: Context, grant: Grant, bound: Binding) -> Outcome:
    """This invocation could not activate the grant: a revocation was asked for while it was being
    provisioned (the tombstone), another invocation revoked or abandoned it, or a duplicate
    invocation activated it (then nothing is undone). Otherwise the tag is removed while the slot
    lock still names this grant (so no other grant's tag is touched), and a requested revocation is
    completed here: the grant ends REVOKED and is announced once.

    Left as they are: the revoke schedule (it fires once on a REVOKED grant, a no-op) and open
    sessions (none can predate this tag by more than the provisioning itself); the grant role has
    neither scheduler:DeleteSchedule nor ssm:TerminateSession.
    """
    log = bind(grant_id=grant.grant_id)
    current = ctx.ledger.get_grant(grant.grant_id)
    if current is not None and current.status is GrantStatus.ACTIVE:
        # A duplicate invocation of this grant activated it: the tag and slot are the grant's own.
        log.info("grant activated by a concurrent invocation")
        return Outcome(Result.DUPLICATE, grant.grant_id, {"status": current.status.value})
    requested = ctx.ledger.revoke_request(grant.grant_id)
    assert grant.slot is not None
    holds = ctx.ledger.slot_holder(lock_scope(grant), grant.slot) == grant.grant_id
    if holds:
        bound.untag(grant.slot)
    if (
        current is not None
        and current.status is GrantStatus.PROVISIONING
        and requested is not None
        and ctx.ledger.complete_revoke(
            grant, at=to_iso(ctx.clock.now()), reason=requested.reason, by=requested.by, release_slot=holds
        )
    ):
        return _revoked_while_provisioning(ctx, grant, requested.reason, requested.by, untagged=holds)
    if holds:
        ctx.ledger.release_slot(lock_scope(grant), grant.slot, grant.grant_id)
    current = ctx.ledger.get_grant(grant.grant_id)
    status = current.status.value if current else "missing"
    log.warning("grant changed state during provisioning", extra={"status": status, "untagged": holds})
    return Outcome(Result.SUPERSEDED, grant.grant_id, {"status": status})


def _revoked_before_grant(ctx: Context, grant: Grant) -> Outcome:
    """A revocation was asked for before this grant's record existed: record the grant REVOKED."""
    requested = ctx.ledger.revoke_request(grant.grant_id)
    if requested is None:
        raise TransientError(f"grant {grant.grant_id} could not be recorded and has no record")
    record = replace(
        grant,
        status=GrantStatus.REVOKED,
        revoked_at=requested.at,
        revoke_reason=requested.reason,
        revoked_by=requested.by,
    )
    if not ctx.ledger.create(record):
        return Outcome(Result.DUPLICATE, grant.grant_id)
    return _revoked_while_provisioning(ctx, record, requested.reason, requested.by, untagged=False)


def _revoked_while_provisioning(
    ctx: Context, grant: Grant, reason: str, by: str, *, untagged: bool
) -> Outcome:
    bind(grant_id=grant.grant_id).warning(
        "access revoked while it was being granted", extra={"revoke_reason": reason, "revoked_by": by}
    )
    metrics().add("RevokedWhileProvisioning")
    denials.announce_revoked(ctx, grant, reason, by)
    return Outcome(Result.REVOKED, grant.grant_id, {"reason": reason, "untagged": untagged})


def _verify_origin(ctx: Context, request: AccessApproved, instance: InstanceFacts | None) -> list[Denial]:
    verifier = (ctx.verifiers or {}).get(request.origin)
    if verifier is None:
        return [Denial("origin_unverifiable", f"no verifier for origin {request.origin.value}")]
    return verifier.verify(request, instance)


def _arn(ctx: Context, request: AccessApproved) -> str:
    return principal_arn(
        ctx.settings.partition, request.account, request.principal_type, request.principal_name
    )


def _deny_early(
    ctx: Context, request: AccessApproved, existing: Grant | None, now: datetime, denial: Denial
) -> Outcome:
    """Deny before anything was read from the target account."""
    if existing is not None:
        return denials.abandon(ctx, existing, [denial])
    return denials.deny_new(ctx, new_record(request, _arn(ctx, request), now, GrantStatus.DENIED), [denial])
