"""Granting: check an approved request, open the grant, schedule its revocation, tag the principal.

The AWS calls of a grant (issue 16): the principal (GetUser/GetRole), the instance (DescribeInstances),
what the origin verifier reads, ONE conditional TransactWriteItems (the record written ACTIVE + the slot
lock: :meth:`Ledger.open`, with the verifier's ``conditions``: the native request still APPROVED with the
signature its event carries, so a cancellation after the check cancels the grant), CreateSchedule,
TagUser/TagRole (and the notification). A native grant reads no request record: it verifies the signed
approval the event carries (one KMS VerifyMac).

Why this order is safe:
- The record and the slot lock are written together, only when no item of the grant id exists: a
  duplicate delivery (or a tombstone: revoked before granted) cancels the transaction, whose
  ``ALL_OLD`` answer is the record; a taken slot cancels it too, and the next slot is tried.
- The schedule is created *before* the tag: a crash between the transaction and the tag leaves an
  ACTIVE record with a revocation and no tag (fail-closed: nothing opens; the redelivery resumes it).
  A crash before the schedule leaves an ACTIVE record with no tag and no schedule: the redelivery
  resumes it, else the reconciler revokes it once overdue (it finds overdue grants, not schedules).
- The tag never survives a revocation (the re-tag race): a grant tags only within ``BIND_WINDOW`` of
  its record's ``activated_at`` and only starts the IAM call before the window ends; a revocation of a
  grant younger than ``BIND_WINDOW + TAG_CALL_BOUND`` first waits that long (``core/revoke.py``), then
  untags while the slot lock still names the grant, then marks it REVOKED on condition that
  ``activated_at`` did not move. A resumed delivery moves ``activated_at`` (conditional: ACTIVE, not
  moved, no tombstone) before it tags again, so a revocation that read the old value fails its
  transaction and starts over (waiting again). Both tag calls' clients, IAM TagUser/TagRole and EC2
  CreateTags (instance binding), are bounded to fit (``adapters/aws.py``, ``TAG_CALL_CONFIG``: one
  attempt, 1 s connect + 3 s read; ``wiring._tagger``, ``MemberAccounts``); a tag call that still lands
  later (a request the service executes after the client gave up on it) is drift: its CloudTrail tag
  event, which the rules do not filter out for SessionGate's own grant role, lets the reconciler remove
  it within a minute (``reconcile.repair_principal`` / ``repair_instances``), whether the slot has no
  live holder or a later grant claimed it meanwhile and the tag's value is not that grant's
  (``reconcile._repair_held``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core import binding, denials, guardrails, revoke, session_logging
from sessiongate.core.binding import Binding
from sessiongate.core.context import Context
from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts
from sessiongate.core.identity import principal_arn
from sessiongate.core.model import AccessApproved, Denial, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import (
    AccountNotAllowed,
    Condition,
    Directory,
    Inventory,
    MemberUnavailable,
    RevokeRequest,
)
from sessiongate.core.slots import BindingMode
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import bind, metrics

# Scheduler's at() precision: a start this close is "now".
START_TOLERANCE = timedelta(seconds=60)
# A grant may start its tag call only BIND_WINDOW after its record's activated_at, and a revocation
# assumes the call has landed (or failed) TAG_CALL_BOUND after that (defined in core/revoke.py).
BIND_WINDOW = revoke.BIND_WINDOW
TAG_CALL_BOUND = revoke.TAG_CALL_BOUND


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
    # What the origin needs to still hold when the grant opens (checked in the one transaction).
    conditions: tuple[Condition, ...] = ()
    # Where the grant's sessions' logs go (RequireSessionLogging: core/session_logging.py).
    log_destination: dict[str, Any] | None = None


def grant(ctx: Context, detail: object) -> Outcome:
    """Check, open (one transaction), schedule, tag. A duplicate delivery is told by the transaction's
    condition and costs no write; an ACTIVE record without its tag (a crash) is resumed."""
    try:
        request = AccessApproved.from_detail(detail)
    except InvalidInput as exc:
        return denials.reject(ctx, "AccessApproved", exc)
    log = bind(
        grant_id=request.grant_id, instance_id=request.instance_id, principal_name=request.principal_name
    )
    now = ctx.clock.now()
    checked = _check(ctx, request, now)
    if isinstance(checked, Outcome):
        return checked
    request = checked.request
    mode = checked.mode
    if checked.denials:
        record = new_record(request, _arn_of(ctx, checked), now, GrantStatus.DENIED, mode)
        return denials.deny_new(ctx, record, checked.denials)
    principal = checked.principal
    assert principal is not None  # guardrails deny a missing principal
    count = ctx.settings.slot_count
    # The principal's slots, or (instance binding) the instance's: the tags already read (GetUser/
    # GetRole, DescribeInstances) say which slot to try first, no extra call.
    bound = _binding(checked, mode, request.instance_id, request.bound_user_id)
    room = bound.room_denial(count)
    if room is not None:
        return denials.deny_new(
            ctx, new_record(request, principal.arn, now, GrantStatus.DENIED, mode), [room]
        )
    expires = now + timedelta(minutes=request.duration_minutes)
    # The bind window starts here, not before the checks (GetUser, DescribeInstances, AssumeRole, KMS on
    # retrying clients): slow checks must not use it up before the tag (REVIEW-A L2). Later is as safe:
    # the revocation waits from the recorded value, and the tag must start within it.
    activated = ctx.clock.now()
    for slot in bound.preference(count):
        record = replace(
            new_record(request, principal.arn, now, GrantStatus.ACTIVE, mode),
            slot=slot,
            expires_at=to_iso(expires),
            schedule_name=revoke.schedule_name(request.grant_id),
            activated_at=to_iso(activated),
            log_destination=checked.log_destination,
        )
        opened = ctx.ledger.open(record, checked.conditions)
        if opened.created:
            log.append_keys(slot=slot, principal_arn=record.principal_arn)
            return _schedule_and_tag(ctx, record, checked, log)
        if opened.existing is not None:
            return _redelivered(ctx, opened.existing, checked, now, log)
        if opened.revoke_requested is not None:
            return _revoked_before_grant(ctx, replace(record, slot=None), opened.revoke_requested)
        if opened.unmet is not None:
            # The origin changed after it was verified (e.g. the request was cancelled): nothing opened.
            denied = new_record(request, principal.arn, now, GrantStatus.DENIED, mode)
            return denials.deny_new(ctx, denied, [opened.unmet])
    denial = Denial("no_free_slot", f"all {count} slots of the {mode.value} are in use")
    return denials.deny_new(ctx, new_record(request, principal.arn, now, GrantStatus.DENIED, mode), [denial])


def _binding(checked: Checked, mode: BindingMode, instance_id: str, bound_user_id: str | None) -> Binding:
    assert checked.principal is not None
    assert checked.inventory is not None
    return binding.for_request(
        mode,
        checked.request.account,
        checked.principal,
        checked.instance,
        instance_id,
        bound_user_id,
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


def _check(ctx: Context, request: AccessApproved, now: datetime) -> Checked | Outcome:
    """Read the principal and the instance in the target account and apply every guardrail.

    The instance is read once (DescribeInstances): whether it is an SSM managed node is checked when
    the request is made (the native front door), not here. That is no security check: a slot tag only
    lets ``ssm:StartSession`` through, and StartSession "initiates a connection to a target (for
    example, a managed node)"; on a node not set up for Session Manager it fails with
    ``TargetNotConnected`` ("The specified target managed node for the session isn't fully configured
    for use with Session Manager", SSM API Reference, "StartSession", and botocore's SSM model). A tag
    on a node that is not managed opens nothing, and the node becoming managed later is exactly the
    case the check could not have prevented anyway (it was a point-in-time read)."""
    try:
        directory, inventory, sessions = ctx.adapters_in(request.account)
    except MemberUnavailable as exc:
        return _deny_early(ctx, request, now, Denial("member_role_unavailable", str(exc)))
    except AccountNotAllowed:
        message = f"account {request.account} is not a SessionGate account"
        return _deny_early(ctx, request, now, Denial("account_not_allowed", message))
    principal = directory.get_principal(request.principal_type, request.principal_name)
    # The session binding is SessionGate's own derivation, whatever the event says.
    bound = guardrails.bind_to_requester(request, principal, ctx.settings) if principal else None
    if bound != request.bound_user_id:
        request = replace(request, bound_user_id=bound)
    instance = inventory.describe(request.instance_id, check_managed=False)
    found = guardrails.evaluate(request, principal, instance, ctx.settings, now)
    conditions: tuple[Condition, ...] = ()
    destination = None
    if not found and ctx.settings.require_session_logging:
        # The target account's Session Manager preferences (one GetDocument, cached per account).
        logging_off, destination = session_logging.check(ctx, request.account, sessions)
        found = [logging_off] if logging_off else []
    if not found:
        found, conditions = _verify_origin(ctx, request, instance)
    mode = guardrails.binding_mode(principal, ctx.settings)
    return Checked(request, principal, directory, found, mode, instance, inventory, conditions, destination)


def _redelivered(ctx: Context, existing: Grant, checked: Checked, now: datetime, log: Any) -> Outcome:
    """The grant's record exists: a duplicate (nothing is done), or an ACTIVE grant whose tag is
    missing (a crash after the transaction): resumed, unless it expired or was revoked meanwhile. An
    abandoned one whose undo failed is undone now (``denials.finish_undo``)."""
    denials.finish_undo(ctx, existing)
    bound = _binding(checked, BindingMode(existing.binding), existing.instance_id, existing.bound_user_id)
    tagged = existing.slot is not None and bound.carries(existing.slot)
    expires = existing.expires
    if existing.status is not GrantStatus.ACTIVE or tagged or expires is None or now >= expires:
        log.info("duplicate AccessApproved ignored", extra={"status": existing.status.value})
        metrics().add("DuplicateDeliveries")
        return Outcome(Result.DUPLICATE, existing.grant_id, {"status": existing.status.value})
    if not ctx.ledger.rebind(existing, to_iso(now)):
        # Revoked, rebound by a concurrent delivery, or a revocation asked for: nothing to resume.
        log.info("grant not resumed: it changed meanwhile")
        return Outcome(Result.DUPLICATE, existing.grant_id, {"status": existing.status.value})
    log.append_keys(slot=existing.slot, principal_arn=existing.principal_arn)
    log.warning("resuming a grant left untagged")
    metrics().add("GrantsResumed")
    return _schedule_and_tag(ctx, existing, checked, log)


def _schedule_and_tag(ctx: Context, grant: Grant, checked: Checked, log: Any) -> Outcome:
    """Schedule the revocation, then tag (within the bind window), then announce the grant."""
    assert grant.slot is not None
    assert grant.expires is not None
    assert grant.activated_at is not None
    name = revoke.schedule_name(grant.grant_id)
    ctx.schedules.create_once(name, grant.expires, ctx.settings.revoke_target_arn, revoke_payload(grant))
    if ctx.clock.now() >= parse_iso(grant.activated_at) + BIND_WINDOW:
        # Too late to tag safely (a revocation may have run): the redelivery resumes (rebinds) it.
        raise TransientError(f"grant {grant.grant_id} missed its bind window; retry resumes it")
    # On the principal (TagUser/TagRole) or, bound on the instance, the instance (CreateTags).
    bound = _binding(checked, BindingMode(grant.binding), grant.instance_id, grant.bound_user_id)
    refused = bound.tag(grant.slot)
    if refused is not None:
        return denials.abandon(ctx, grant, [refused])
    metrics().add("Grants")
    log.info("access granted", extra={"expires_at": grant.expires_at})
    detail = {"slot": grant.slot, "expires_at": grant.expires_at, "principal_arn": grant.principal_arn}
    return Outcome(Result.GRANTED, grant.grant_id, detail)


def revoke_payload(grant: Grant) -> dict[str, Any]:
    """The revoke schedule's payload: what the revocation needs to read the record and its slot lock in
    one call, and to tell a schedule an extension superseded (``expires_at``)."""
    payload: dict[str, Any] = {
        "grant_id": grant.grant_id,
        "reason": revoke.REASON_EXPIRED,
        "principal_type": grant.principal_type,
        "principal_name": grant.principal_name,
        "principal_arn": grant.principal_arn,
        "account": grant.account,
        "instance_id": grant.instance_id,
        "slot": grant.slot,
        "expires_at": grant.expires_at,
    }
    if grant.bound_user_id:
        payload["bound_user_id"] = grant.bound_user_id
    if grant.binding != BindingMode.PRINCIPAL.value:
        payload["binding"] = grant.binding  # its slot lock is the instance's
    return payload


def _revoked_before_grant(ctx: Context, grant: Grant, requested: RevokeRequest) -> Outcome:
    """A revocation was asked for before this grant's record existed: record the grant REVOKED."""
    record = replace(
        grant,
        status=GrantStatus.REVOKED,
        revoked_at=requested.at,
        revoke_reason=requested.reason,
        revoked_by=requested.by,
        expires_at=None,
        schedule_name=None,
        activated_at=None,
    )
    if not ctx.ledger.create(record):
        return Outcome(Result.DUPLICATE, grant.grant_id)
    bind(grant_id=grant.grant_id).warning(
        "access revoked before it was granted",
        extra={"revoke_reason": requested.reason, "revoked_by": requested.by},
    )
    metrics().add("RevokedWhileProvisioning")
    return Outcome(Result.REVOKED, grant.grant_id, {"reason": requested.reason, "untagged": False})


def _verify_origin(
    ctx: Context, request: AccessApproved, instance: InstanceFacts | None
) -> tuple[list[Denial], tuple[Condition, ...]]:
    """The origin's denials, else what it needs to still hold when the grant opens."""
    verifier = (ctx.verifiers or {}).get(request.origin)
    if verifier is None:
        return [Denial("origin_unverifiable", f"no verifier for origin {request.origin.value}")], ()
    found = verifier.verify(request, instance)
    return found, () if found else tuple(verifier.conditions(request))


def _arn(ctx: Context, request: AccessApproved) -> str:
    return principal_arn(
        ctx.settings.partition, request.account, request.principal_type, request.principal_name
    )


def _arn_of(ctx: Context, checked: Checked) -> str:
    return checked.principal.arn if checked.principal else _arn(ctx, checked.request)


def _deny_early(ctx: Context, request: AccessApproved, now: datetime, denial: Denial) -> Outcome:
    """Deny before anything was read from the target account."""
    return denials.deny_new(ctx, new_record(request, _arn(ctx, request), now, GrantStatus.DENIED), [denial])
