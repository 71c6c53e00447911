"""The reconciler: repair what lost or failed deliveries left behind, and report every repair.

Three triggers share the repairs (issue 16: a run's cost must not grow with the account):
- ``reconcile`` (every few minutes): only grants overdue by the tolerance, one index query per
  partition of ``live-by-expiry``. A lost revoke schedule shows up here as an overdue grant.
- ``repair_principal`` (an IAM TagUser/TagRole/UntagUser/UntagRole CloudTrail event through
  EventBridge): the slot tags and locks of just that principal, within a minute of the change.
- ``repair_instances`` (an EC2 CreateTags/DeleteTags/RunInstances CloudTrail event naming an instance
  slot key, or an instance's launch: its state-change event to pending/running): the instance slot tags
  and locks of just those instances (instance binding, issue 15).
- ``sweep`` (daily): every user and role (GetAccountAuthorizationDetails) and every slot lock
  (BatchGetItem), for what no event reported (a lost event, a principal created with tags, a lock left
  by a run that died, a grant stuck PROVISIONING after claiming its slot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core import denials, slots, usage
from sessiongate.core.binding import instance_scope
from sessiongate.core.context import Context
from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import Denial, Grant, GrantStatus, Outcome, Result
from sessiongate.core.ports import (
    AccountNotAllowed,
    Directory,
    Inventory,
    MemberUnavailable,
    ServiceFailure,
)
from sessiongate.core.revoke import BIND_WINDOW, PROVISIONING_GRACE, TAG_CALL_BOUND
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger, metrics

# Scheduler fires at() schedules within a minute: the reconciler only steps in after that.
RECONCILE_TOLERANCE = timedelta(seconds=90)
# The daily sweep's usage rounds (usage.BATCH grants each): 1,000 grants a day beyond the steady runs'.
SWEEP_USAGE_ROUNDS = 20

Revoke = Callable[[str], Outcome]  # revoke(grant_id) by the reconciler
Principal = tuple[str, PrincipalType, str]  # account, kind, name


def reconcile(ctx: Context, revoke: Revoke) -> Outcome:
    """The steady run: the live grants whose expiry is older than ``RECONCILE_TOLERANCE`` (their
    schedule was lost or failed: revoke them), and PROVISIONING grants stuck past the grace period
    (undo and deny them, or revoke if expired). A PROVISIONING record is indexed at its creation time
    until it claims a slot, so it is found here as soon as it could be stuck.
    Every item is attempted; if any repair failed the run raises at the end (alarm, retry).
    """
    bind()  # a new operation: no keys of the previous one
    now = ctx.clock.now()
    repairs = _empty_repairs()
    failures: list[str] = []
    overdue = ctx.ledger.live_grants(expiring_before=to_iso(now - RECONCILE_TOLERANCE))
    _repair_grants(ctx, overdue, now, revoke, repairs, failures)
    # The sessions of revoked grants (out of the revoke path: core/usage.py).
    recorded, usage_failures = usage.record_pending(ctx, now)
    failures += usage_failures
    return _finish(ctx, repairs, failures, now, {"checked_grants": len(overdue), "usage_recorded": recorded})


def repair_principal(ctx: Context, event: Mapping[str, Any]) -> Outcome:
    """An IAM tag change (CloudTrail through EventBridge): remove the drift of just that principal.

    Events that touch no SessionGate slot key, or that are no IAM tag call, are ignored (no AWS call).
    """
    bind()
    now = ctx.clock.now()
    principal = tag_event_principal(event)
    if principal is None:
        return Outcome(Result.IGNORED, None, {"why": "not a slot tag change"})
    repairs = _empty_repairs()
    failures: list[str] = []
    account, kind, name = principal
    try:
        directory = ctx.adapters_in(account).directory
        facts = directory.get_principal(kind, name)
        if facts is not None:
            holders = ctx.ledger.slot_holders((facts.arn, s) for s in _slots(ctx))
            repairs["drift_removed"] += _remove_drift(ctx, directory, facts, holders, {})
    except (MemberUnavailable, AccountNotAllowed, ServiceFailure, TransientError) as exc:
        logger().exception("reconciler could not check a principal", extra={"principal_name": name})
        failures.append(f"{account}/{kind.value}/{name}: {exc}")
    return _finish(ctx, repairs, failures, now, {"principal": f"{account}/{kind.value}/{name}"})


def sweep(ctx: Context, revoke: Revoke) -> Outcome:
    """The full sweep: every principal's and every instance's slot tags against every slot lock, in
    every account.

    Per account: GetAccountAuthorizationDetails pages (1,000 principals each) and DescribeInstances
    pages (1,000 instances each: instance binding), then BatchGetItem of all their slot locks (100 per
    call) and of the grants those locks name. Stale locks are released, drift removed where no live
    grant holds the slot (and where a held slot's tags are not its grant's values: ``_repair_held``),
    and locked grants stuck PROVISIONING past the grace period undone.
    """
    bind()
    now = ctx.clock.now()
    repairs = _empty_repairs()
    failures: list[str] = []
    checked = checked_instances = 0
    for account in (ctx.settings.account_id, *ctx.settings.member_accounts):
        try:
            directory, inventory, _ = ctx.adapters_in(account)
            principals = directory.all_principals()
            instances = inventory.tagged_instances()
            scopes = [p.arn for p in principals] + [instance_scope(account, i.instance_id) for i in instances]
            holders = ctx.ledger.slot_holders((scope, s) for scope in scopes for s in _slots(ctx))
            records = ctx.ledger.get_grants(h for h in holders.values() if h != slots.REPAIR_HOLDER)
        except (MemberUnavailable, AccountNotAllowed, ServiceFailure, TransientError) as exc:
            logger().exception("reconciler could not sweep an account", extra={"account": account})
            failures.append(f"account {account}: {exc}")
            continue
        checked += len(principals)
        checked_instances += len(instances)
        stuck = [g for g in records.values() if g.status is GrantStatus.PROVISIONING]
        _repair_grants(ctx, stuck, now, revoke, repairs, failures)
        for facts in principals:
            try:
                repairs["drift_removed"] += _remove_drift(ctx, directory, facts, holders, records)
            except (ServiceFailure, TransientError) as exc:
                logger().exception(
                    "reconciler could not check a principal", extra={"principal_name": facts.name}
                )
                failures.append(f"{facts.arn}: {exc}")
        for instance in instances:
            try:
                repairs["drift_removed"] += _remove_instance_drift(
                    ctx, inventory, account, instance, holders, records
                )
            except (ServiceFailure, TransientError) as exc:
                logger().exception(
                    "reconciler could not check an instance", extra={"instance_id": instance.instance_id}
                )
                failures.append(f"{account}/{instance.instance_id}: {exc}")
    # Usage pending in any USAGE shard (the steady run reads one shard per run): drain them all,
    # ``usage.BATCH`` grants per round, while a round records any (at most SWEEP_USAGE_ROUNDS).
    usage_recorded = 0
    for _ in range(SWEEP_USAGE_ROUNDS):
        recorded, usage_failures = usage.record_pending(ctx, now, every_shard=True)
        usage_recorded += recorded
        failures += usage_failures
        if not recorded:
            break
    return _finish(
        ctx,
        repairs,
        failures,
        now,
        {
            "checked_principals": checked,
            "checked_instances": checked_instances,
            "usage_recorded": usage_recorded,
        },
    )


def repair_instances(ctx: Context, event: Mapping[str, Any]) -> Outcome:
    """An EC2 tag change on instances (CloudTrail through EventBridge) naming an instance slot key:
    remove the drift of just those instances (read with one DescribeInstances each)."""
    bind()
    now = ctx.clock.now()
    found = tag_event_instances(event)
    if found is None:
        return Outcome(Result.IGNORED, None, {"why": "not an instance slot tag change"})
    account, instance_ids = found
    repairs = _empty_repairs()
    failures: list[str] = []
    for instance_id in instance_ids:
        try:
            inventory = ctx.adapters_in(account).inventory
            facts = inventory.describe(instance_id, check_managed=False)
            if facts is None:
                continue
            scope = instance_scope(account, instance_id)
            holders = ctx.ledger.slot_holders((scope, s) for s in _slots(ctx))
            repairs["drift_removed"] += _remove_instance_drift(ctx, inventory, account, facts, holders, {})
        except (MemberUnavailable, AccountNotAllowed, ServiceFailure, TransientError) as exc:
            logger().exception("reconciler could not check an instance", extra={"instance_id": instance_id})
            failures.append(f"{account}/{instance_id}: {exc}")
    return _finish(ctx, repairs, failures, now, {"instances": [f"{account}/{i}" for i in instance_ids]})


def tag_event_instances(event: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(account, instance ids) of a CloudTrail EC2 ``CreateTags``/``DeleteTags``/``RunInstances`` record
    that names an instance slot key (any letter case), else None. CloudTrail records EC2 calls with
    ``requestParameters.resourcesSet.items[].resourceId`` and ``tagSet.items[].key`` (CreateTags,
    DeleteTags), and RunInstances with ``tagSpecificationSet.items[].tags[].key`` and the new instances in
    ``responseElements.instancesSet.items[].instanceId`` (CloudTrail User Guide, "Amazon EC2 ... log file
    examples")."""
    detail = event.get("detail")
    if event.get("detail-type") == INSTANCE_STATE_CHANGE and event.get("source") == "aws.ec2":
        return _launched_instance(event)
    if not isinstance(detail, Mapping) or detail.get("eventSource") != "ec2.amazonaws.com":
        return None
    params = detail.get("requestParameters")
    name = detail.get("eventName")
    if name not in ("CreateTags", "DeleteTags", "RunInstances") or not isinstance(params, Mapping):
        return None
    if name == "RunInstances":
        specs = _items(params.get("tagSpecificationSet"))
        keys = [t.get("key") for s in specs for t in s.get("tags") or [] if isinstance(t, Mapping)]
        response = detail.get("responseElements")
        found = _items(response.get("instancesSet")) if isinstance(response, Mapping) else []
        ids = [i.get("instanceId") for i in found]
    else:
        keys = [t.get("key") for t in _items(params.get("tagSet"))]
        ids = [r.get("resourceId") for r in _items(params.get("resourcesSet"))]
    if not any(isinstance(k, str) and k.lower().startswith(_SLOT_KEY_PREFIX) for k in keys):
        return None
    instances = [i for i in ids if isinstance(i, str) and i.startswith("i-")]
    account = detail.get("recipientAccountId") or event.get("account")
    if not instances or not isinstance(account, str):
        return None
    return account, instances


def _launched_instance(event: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(account, [instance id]) of an EC2 instance state-change event (``detail["instance-id"]``,
    ``detail["state"]``: "Amazon EC2 instance state change events", EC2 User Guide). An instance launched
    through a path the tag-key guard does not cover (Auto Scaling's service-linked role with a
    PropagateAtLaunch tag, a launch template, CreateFleet) may carry slot tags no CloudTrail tag event
    names: its launch has its one instance's slot tags repaired (REVIEW-A F3)."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or detail.get("state") not in ("pending", "running"):
        return None
    instance_id, account = detail.get("instance-id"), event.get("account")
    if not isinstance(instance_id, str) or not instance_id.startswith("i-") or not isinstance(account, str):
        return None
    return account, [instance_id]


def _items(value: object) -> list[Mapping[str, Any]]:
    """``{"items": [...]}`` of a CloudTrail EC2 record, the mappings only."""
    items = value.get("items") if isinstance(value, Mapping) else None
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def tag_event_principal(event: Mapping[str, Any]) -> Principal | None:
    """(account, kind, name) of a CloudTrail ``TagUser``/``TagRole``/``UntagUser``/``UntagRole`` record
    that names a SessionGate slot key (any letter case: IAM tag keys are case-insensitive), else None."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or detail.get("eventSource") != "iam.amazonaws.com":
        return None
    kind = _TAG_CALLS.get(str(detail.get("eventName")))
    params = detail.get("requestParameters")
    if kind is None or not isinstance(params, Mapping):
        return None
    keys = [t.get("key") for t in params.get("tags") or [] if isinstance(t, Mapping)]
    keys += list(params.get("tagKeys") or [])
    if not any(isinstance(k, str) and k.lower().startswith(_SLOT_KEY_PREFIX) for k in keys):
        return None
    name = params.get("userName" if kind is PrincipalType.USER else "roleName")
    account = detail.get("recipientAccountId") or event.get("account")
    if not isinstance(name, str) or not name or not isinstance(account, str):
        return None
    return account, kind, name


# A principal created with slot tags (CreateUser/CreateRole take ``tags`` too) is drift like a tag call.
_TAG_CALLS = {
    "TagUser": PrincipalType.USER,
    "UntagUser": PrincipalType.USER,
    "CreateUser": PrincipalType.USER,
    "TagRole": PrincipalType.ROLE,
    "UntagRole": PrincipalType.ROLE,
    "CreateRole": PrincipalType.ROLE,
}
_SLOT_KEY_PREFIX = "securityallowsession"
# EventBridge detail-type of EC2 instance state changes (no CloudTrail needed).
INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"


def _empty_repairs() -> dict[str, list[str]]:
    return {"revoked": [], "abandoned": [], "drift_removed": []}


def _slots(ctx: Context) -> range:
    return range(1, ctx.settings.slot_count + 1)


def _repair_grants(
    ctx: Context,
    grants: list[Grant],
    now: datetime,
    revoke: Revoke,
    repairs: dict[str, list[str]],
    failures: list[str],
) -> None:
    for grant in grants:
        try:
            kind = _repair_grant(ctx, grant, now, revoke)
        except (TransientError, ServiceFailure) as exc:
            logger().exception("reconciler could not repair a grant", extra={"grant_id": grant.grant_id})
            failures.append(f"{grant.grant_id}: {exc}")
            continue
        if kind:
            repairs[kind].append(grant.grant_id)


def _finish(
    ctx: Context, repairs: dict[str, list[str]], failures: list[str], now: datetime, checked: dict[str, Any]
) -> Outcome:
    _report(ctx, repairs, now)
    if failures:
        raise TransientError(f"reconciler left {len(failures)} item(s) unrepaired: {failures[:5]}")
    return Outcome(Result.RECONCILED, None, {"repairs": repairs, **checked})


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
    return None


def _remove_drift(
    ctx: Context,
    directory: Directory,
    principal: PrincipalFacts,
    holders: Mapping[tuple[str, int], str],
    records: Mapping[str, Grant],
) -> list[str]:
    """Remove the slot tags of a principal that no live grant explains, and those of a held slot whose
    values are not its grant's (``_repair_held``); what was removed.

    ``holders``: the principal's slot locks as read (after its tags were read); ``records``: grant
    records already read (others are read here, one GetItem per holder)."""
    removed: list[str] = []
    lowered = {k.lower() for k in principal.tags}
    kind = PrincipalType(principal.kind)
    for slot in _slots(ctx):
        keys = [k for k in slots.slot_keys(slot) if k.lower() in lowered]
        holder = holders.get((principal.arn, slot))
        record = _record(ctx, holder, records)
        held = record if record is not None and record.status in _LIVE else None
        if holder is not None and held is None and _wait_until_settled(ctx, record):
            # Its last tag call may have landed meanwhile: read the principal and its locks again.
            fresh = directory.get_principal(kind, principal.name)
            if fresh is None:
                return removed
            again = ctx.ledger.slot_holders((fresh.arn, s) for s in _slots(ctx))
            return removed + _remove_drift(ctx, directory, fresh, again, {})
        if holder is not None and held is None:
            _release_stale_lock(ctx, principal, slot, holder)
            holder = None
            if not keys:
                removed.append(f"{principal.arn}#{slot} (stale lock)")
        if held is not None:
            if keys and _repair_held(ctx, directory, principal, slot, held):
                removed.append(f"{principal.arn}#{slot} (wrong value)")
            continue
        if not keys:
            continue
        # Hold the free slot while untagging, so a grant cannot take it and tag it meanwhile.
        if not ctx.ledger.lock_free_slot(principal.arn, slot, slots.REPAIR_HOLDER):
            continue
        try:
            directory.untag(kind, principal.name, keys)
        finally:
            ctx.ledger.release_slot(principal.arn, slot, slots.REPAIR_HOLDER)
        removed.append(f"{principal.arn}#{slot}")
    return removed


def _remove_instance_drift(
    ctx: Context,
    inventory: Inventory,
    account: str,
    instance: InstanceFacts,
    holders: Mapping[tuple[str, int], str],
    records: Mapping[str, Grant],
) -> list[str]:
    """Remove the instance slot tags no live grant explains; what was removed.

    EC2 keys are case-sensitive, so every spelling of a slot key is a tag of its own: on a slot a live
    grant holds, every tag but the grant's own (exact key, its aws:userid) is removed; on a free slot,
    all of them, under the repair lock. Each removal is DeleteTags with the value read, so a tag
    rewritten meanwhile is left for the next event."""
    removed: list[str] = []
    scope = instance_scope(account, instance.instance_id)
    for slot in _slots(ctx):
        found = {
            k: v
            for k, v in instance.tags.items()
            if slots.slot_of_for_key(k, ctx.settings.slot_count) == slot
        }
        holder = holders.get((scope, slot))
        grant = _record(ctx, holder, records)
        if holder is not None and grant is not None and _wait_until_settled(ctx, grant):
            # Its last tag call may have landed meanwhile: read the instance and its locks again.
            fresh = inventory.describe(instance.instance_id, check_managed=False)
            if fresh is None:
                return removed
            again = ctx.ledger.slot_holders((scope, s) for s in _slots(ctx))
            return removed + _remove_instance_drift(ctx, inventory, account, fresh, again, {})
        if holder is not None and (grant is None or grant.status not in _LIVE):
            ctx.ledger.release_slot(scope, slot, holder)
            bind(grant_id=holder).warning("stale slot lock released", extra={"slot": slot})
            holder, grant = None, None
            if not found:
                removed.append(f"{scope}#{slot} (stale lock)")
        if not found:
            continue
        if grant is not None:
            foreign = {k: v for k, v in found.items() if (k, v) != (slots.for_key(slot), grant.bound_user_id)}
            if foreign:
                inventory.untag_instance(instance.instance_id, foreign)
                removed.append(f"{scope}#{slot} (not the holder's)")
            continue
        if not ctx.ledger.lock_free_slot(scope, slot, slots.REPAIR_HOLDER):
            continue
        try:
            inventory.untag_instance(instance.instance_id, found)
        finally:
            ctx.ledger.release_slot(scope, slot, slots.REPAIR_HOLDER)
        removed.append(f"{scope}#{slot}")
    return removed


_LIVE = (GrantStatus.PROVISIONING, GrantStatus.ACTIVE)


def _release_stale_lock(ctx: Context, principal: PrincipalFacts, slot: int, holder: str) -> None:
    """A lock left behind by a grant that is no longer live, or by a reconciler run that died
    mid-repair (runs never overlap: reserved concurrency 1), explains no tag and would keep the slot
    from every future grant. Release it (only if still that holder)."""
    ctx.ledger.release_slot(principal.arn, slot, holder)
    bind(grant_id=holder).warning("stale slot lock released", extra={"slot": slot})


def _record(ctx: Context, holder: str | None, records: Mapping[str, Grant]) -> Grant | None:
    """The record of the grant a slot lock names (read here unless ``records`` has it); None for a
    free slot, the repair lock, or a lock whose grant has no record."""
    if holder is None or holder == slots.REPAIR_HOLDER:
        return None
    return records[holder] if holder in records else ctx.ledger.get_grant(holder)


def _wait_until_settled(ctx: Context, grant: Grant | None) -> bool:
    """Wait while a slot's holder that is no longer live may still tag; whether it waited.

    A grant abandoned after its tag was refused (``denials.abandon``) is DENIED at once, but a tag call
    of one of its deliveries, started within its bind window, may still land until ``activated_at`` +
    ``BIND_WINDOW`` + ``TAG_CALL_BOUND`` (``core/grant.py``); its abandonment waits that long before it
    undoes the tag and frees the lock. Releasing the lock as stale before then would let another grant
    take the slot and that late tag land on it. So the reconciler waits too (at most those 15 s, and
    every such wait ends at an absolute time, so a sweep waits about that much in all), then reads the
    slot again: by then no tag of that grant can land any more."""
    if grant is None or grant.status in _LIVE or not grant.activated_at:
        return False
    settled = parse_iso(grant.activated_at) + BIND_WINDOW + TAG_CALL_BOUND
    now = ctx.clock.now()
    if now >= settled:
        return False
    bind(grant_id=grant.grant_id).info(
        "slot of an ended grant left until its last tag call is settled",
        extra={"slot": grant.slot, "settled_at": to_iso(settled)},
    )
    ctx.clock.sleep((settled - now).total_seconds())
    if ctx.clock.now() < settled:  # a clock that did not move: never read the slot again and again
        raise TransientError(f"slot {grant.slot} of grant {grant.grant_id} is not settled yet")
    return True


def _slot_tags(principal: PrincipalFacts, slot: int) -> dict[str, str]:
    """The principal's tags of ``slot``, under their canonical keys (IAM keys are case-insensitive)."""
    canonical = {k.lower(): k for k in slots.slot_keys(slot)}
    return {canonical[k.lower()]: v for k, v in principal.tags.items() if k.lower() in canonical}


def _repair_held(
    ctx: Context, directory: Directory, principal: PrincipalFacts, slot: int, grant: Grant
) -> bool:
    """Remove a held slot's tags when they are not the values of the live grant holding it; whether
    anything was wrong.

    A slot lock only says *which* grant may tag the slot, not what the tags say: a TagUser/TagRole of an
    earlier grant of the slot that lands late (IAM executed it after the client gave up, after that
    grant was revoked and this one claimed the slot) overwrites this grant's instance with the revoked
    one's, or a bound-session key that is not this grant's is added. The slot's keys are removed
    (fail-closed): the person loses this grant's access until they ask again, but never keeps a revoked
    one. They are not rewritten to the grant's values: the reconciler's role may only untag
    (template.yaml, ``ClearSlotTagsOnly``), so that a reconciler run, whatever goes wrong in it, never
    opens access. The grant keeps its lock until its revocation."""
    expected = slots.tags_for(slot, grant.instance_id, grant.bound_user_id)
    found = _slot_tags(principal, slot)
    if found == expected:
        return False
    bind(grant_id=grant.grant_id).warning(
        "slot tags differ from the grant holding the slot: removed",
        extra={"slot": slot, "principal_arn": principal.arn, "found": found, "expected": expected},
    )
    directory.untag(PrincipalType(principal.kind), principal.name, list(found))
    return True


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
