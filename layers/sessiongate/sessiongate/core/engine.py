"""The engine: grant, revoke and reconcile, orchestrating pure rules and adapters.

Every step converges on redelivery (EventBridge and Scheduler deliver at least once):
- the grant record is created with a conditional write, so a duplicate finds it and stops;
- a slot is claimed with a conditional write naming the grant, so a retry re-claims its own slot;
- tags are overwritten with the same values; the revoke schedule has a deterministic name;
- revocation untags only while the slot still names the grant, then frees slot and record together.
Denials are decisions: recorded in the ledger, notified, and returned, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.adapters.accounts import MemberAccounts, MemberUnavailable
from sessiongate.adapters.bus import Bus
from sessiongate.adapters.directory import Directory, PrincipalGone, PrincipalUnmodifiable, TagLimitExceeded
from sessiongate.adapters.inventory import Inventory
from sessiongate.adapters.ledger import Ledger
from sessiongate.adapters.notifier import Notifier
from sessiongate.adapters.scheduler import REVOKE_PREFIX, Schedules
from sessiongate.adapters.sessions import Sessions
from sessiongate.clock import Clock, parse_iso, to_iso
from sessiongate.core import guardrails, slots
from sessiongate.core.identity import Identity, PrincipalType, principal_arn
from sessiongate.core.model import (
    ACCESS_APPROVED,
    EVENT_SOURCE,
    GRANT_ID_RE,
    AccessApproved,
    Denial,
    Grant,
    GrantStatus,
    Origin,
    Outcome,
)
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import bind, logger, metrics
from sessiongate.settings import Settings

# A PROVISIONING grant younger than this may still be in the hands of a running grant invocation.
PROVISIONING_GRACE = timedelta(minutes=5)
# Scheduler's at() precision: a start this close is "now".
START_TOLERANCE = timedelta(seconds=60)

REASON_EXPIRED = "expired"
# An extension's grant replaced this one (the request API revokes the parent with this reason).
REASON_EXTENDED = "extended"
# Scheduler fires at() schedules within a minute: the reconciler only steps in after that.
RECONCILE_TOLERANCE = timedelta(seconds=90)
REPAIR_HOLDER = "reconciler-repair"


class AccountNotAllowed(Exception):
    """The account is neither SessionGate's own nor a configured member account."""


class OriginVerifier(Protocol):
    """Re-reads the origin of an approval (SSM change request, native request record)."""

    def verify(
        self, request: AccessApproved, instance: guardrails.InstanceFacts | None = None
    ) -> list[Denial]: ...


@dataclass
class Engine:
    settings: Settings
    ledger: Ledger
    directory: Directory
    inventory: Inventory
    schedules: Schedules
    notifier: Notifier
    clock: Clock
    bus: Bus | None = None
    verifiers: Mapping[Origin, OriginVerifier] | None = None
    sessions: Sessions | None = None
    accounts: MemberAccounts | None = None

    # ------------------------------------------------------------------------------ triggers
    def on_access_approved(self, event: object) -> Outcome:
        """EventBridge delivery of ``AccessApproved`` from the SessionGate bus."""
        if (
            not isinstance(event, Mapping)
            or event.get("source") != EVENT_SOURCE
            or event.get("detail-type") != ACCESS_APPROVED
        ):
            return self.reject("AccessApproved", InvalidInput("not a sessiongate AccessApproved event"))
        return self.grant(event.get("detail"))

    def on_revoke_schedule(self, event: object) -> Outcome:
        """Scheduler delivery of ``{"grant_id": ..., "reason": "expired"}`` at a grant's expiry."""
        if not isinstance(event, Mapping) or event.get("reason") != REASON_EXPIRED:
            return self.reject("Revoke", InvalidInput("not a SessionGate revoke schedule payload"))
        return self.revoke(event.get("grant_id"), reason=REASON_EXPIRED, by="scheduler")

    # ------------------------------------------------------------------------------ grant
    def grant(self, detail: object) -> Outcome:
        try:
            request = AccessApproved.from_detail(detail)
        except InvalidInput as exc:
            return self.reject("AccessApproved", exc)
        log = bind(
            grant_id=request.grant_id, instance_id=request.instance_id, principal_name=request.principal_name
        )
        existing = self.ledger.get_grant(request.grant_id)
        if existing is not None and existing.status is not GrantStatus.PROVISIONING:
            log.info("duplicate AccessApproved ignored", extra={"status": existing.status.value})
            metrics().add("DuplicateDeliveries")
            return Outcome("duplicate", request.grant_id, {"status": existing.status.value})

        now = self.clock.now()
        try:
            directory, inventory, _ = self._in(request.account)
        except MemberUnavailable as exc:
            return self._deny_early(request, existing, now, [Denial("member_role_unavailable", str(exc))])
        except AccountNotAllowed:
            denial = Denial("account_not_allowed", f"account {request.account} is not a SessionGate account")
            return self._deny_early(request, existing, now, [denial])
        principal = directory.get_principal(request.principal_type, request.principal_name)
        # The session binding is SessionGate's own derivation, whatever the event says.
        bound = guardrails.bind_to_requester(request, principal, self.settings) if principal else None
        if bound != request.bound_user_id:
            request = replace(request, bound_user_id=bound)
        instance = inventory.describe(request.instance_id, check_managed=self.settings.require_ssm_managed)
        denials = guardrails.evaluate(request, principal, instance, self.settings, now)
        if not denials:
            denials = self._verify_origin(request, instance)
        arn = principal.arn if principal else self._arn(request)

        if existing is None:
            if denials:
                return self.deny_new(self._record(request, arn, now, GrantStatus.DENIED), denials)
            grant = self._record(request, arn, now, GrantStatus.PROVISIONING)
            if not self.ledger.create(grant):
                # A concurrent duplicate created it first: carry on with its record (claims are idempotent).
                current = self.ledger.get_grant(request.grant_id)
                if current is None:
                    # No record, only a revocation request: the access was revoked before it was granted.
                    return self._revoked_before_grant(grant)
                if current.status is not GrantStatus.PROVISIONING:
                    return Outcome("duplicate", request.grant_id)
                grant = current
        else:
            grant = existing
            if denials:
                return self._abandon(grant, denials)
        assert principal is not None  # guardrails deny a missing principal

        if grant.slot is None:
            if slots.foreign_tag_count(principal.tags, self.settings.slot_count) + 2 > slots.IAM_TAG_LIMIT:
                return self._abandon(
                    grant, [Denial("tag_limit", "the principal has no room for two more tags")]
                )
            expires = now + timedelta(minutes=request.duration_minutes)
            for slot in slots.slot_preference(self.settings.slot_count, principal.tags):
                if self.ledger.claim_slot(grant, slot, to_iso(expires)):
                    break
            else:
                return self._abandon(
                    grant,
                    [
                        Denial(
                            "no_free_slot",
                            f"all {self.settings.slot_count} slots of the principal are in use",
                        )
                    ],
                )
        assert grant.slot is not None
        assert grant.expires is not None
        log.append_keys(slot=grant.slot, principal_arn=grant.principal_arn)

        try:
            directory.tag(
                request.principal_type,
                request.principal_name,
                slots.tags_for(grant.slot, request.instance_id, request.bound_user_id),
            )
        except TagLimitExceeded:
            return self._abandon(grant, [Denial("tag_limit", "IAM refused the tag: 50 tags per principal")])
        except PrincipalGone:
            return self._abandon(grant, [Denial("principal_not_found", "the principal was deleted")])
        except PrincipalUnmodifiable:
            return self._abandon(grant, [guardrails.unmodifiable_denial(request.principal_name)])

        schedule_name = REVOKE_PREFIX + grant.grant_id
        self.schedules.create_once(
            schedule_name,
            grant.expires,
            self.settings.revoke_target_arn,
            {"grant_id": grant.grant_id, "reason": REASON_EXPIRED},
        )
        if not self.ledger.activate(grant, schedule_name):
            return self._activation_lost(grant, directory)

        metrics().add("Grants")
        log.info("access granted", extra={"expires_at": grant.expires_at})
        self.notifier.publish(
            "AccessGranted",
            self._payload(grant),
            subject=f"SessionGate: {grant.principal_name} may open a session on {grant.instance_id}",
        )
        return Outcome(
            "granted",
            grant.grant_id,
            {"slot": grant.slot, "expires_at": grant.expires_at, "principal_arn": grant.principal_arn},
        )

    def _activation_lost(self, grant: Grant, directory: Directory) -> Outcome:
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
        current = self.ledger.get_grant(grant.grant_id)
        if current is not None and current.status is GrantStatus.ACTIVE:
            # A duplicate invocation of this grant activated it: the tag and slot are the grant's own.
            log.info("grant activated by a concurrent invocation")
            return Outcome("duplicate", grant.grant_id, {"status": current.status.value})
        requested = self.ledger.revoke_request(grant.grant_id)
        assert grant.slot is not None
        holds = self.ledger.slot_holder(grant.principal_arn, grant.slot) == grant.grant_id
        if holds:
            directory.untag(
                PrincipalType(grant.principal_type), grant.principal_name, slots.slot_keys(grant.slot)
            )
        if (
            current is not None
            and current.status is GrantStatus.PROVISIONING
            and requested is not None
            and self.ledger.complete_revoke(
                grant,
                at=to_iso(self.clock.now()),
                reason=requested.reason,
                by=requested.by,
                release_slot=holds,
            )
        ):
            return self._revoked_while_provisioning(grant, requested.reason, requested.by, untagged=holds)
        if holds:
            self.ledger.release_slot(grant.principal_arn, grant.slot, grant.grant_id)
        current = self.ledger.get_grant(grant.grant_id)
        status = current.status.value if current else "missing"
        log.warning("grant changed state during provisioning", extra={"status": status, "untagged": holds})
        return Outcome("superseded", grant.grant_id, {"status": status})

    def _revoked_before_grant(self, grant: Grant) -> Outcome:
        """A revocation was asked for before this grant's record existed: record the grant REVOKED."""
        requested = self.ledger.revoke_request(grant.grant_id)
        if requested is None:
            raise TransientError(f"grant {grant.grant_id} could not be recorded and has no record")
        record = replace(
            grant,
            status=GrantStatus.REVOKED,
            revoked_at=requested.at,
            revoke_reason=requested.reason,
            revoked_by=requested.by,
        )
        if not self.ledger.create(record):
            return Outcome("duplicate", grant.grant_id)
        return self._revoked_while_provisioning(record, requested.reason, requested.by, untagged=False)

    def _revoked_while_provisioning(self, grant: Grant, reason: str, by: str, *, untagged: bool) -> Outcome:
        bind(grant_id=grant.grant_id).warning(
            "access revoked while it was being granted", extra={"revoke_reason": reason, "revoked_by": by}
        )
        metrics().add("RevokedWhileProvisioning")
        self.notifier.publish(
            "AccessRevoked",
            {**self._payload(grant), "reason": reason, "revoked_by": by},
            subject=f"SessionGate: access of {grant.principal_name} to {grant.instance_id} revoked",
        )
        return Outcome("revoked", grant.grant_id, {"reason": reason, "untagged": untagged})

    # ------------------------------------------------------------------------------ revoke
    def revoke(self, grant_id: object, *, reason: str = REASON_EXPIRED, by: str = "scheduler") -> Outcome:
        if not isinstance(grant_id, str) or not GRANT_ID_RE.fullmatch(grant_id):
            return self.reject("Revoke", InvalidInput("grant_id is missing or invalid", field="grant_id"))
        log = bind(grant_id=grant_id)
        grant = self.ledger.get_grant(grant_id)
        if grant is None:
            log.warning("revoke for an unknown grant")
            metrics().add("RevokeUnknownGrant")
            return Outcome("ignored", grant_id, {"why": "unknown grant"})
        if grant.status in (GrantStatus.REVOKED, GrantStatus.DENIED):
            metrics().add("DuplicateDeliveries")
            return Outcome("duplicate", grant_id, {"status": grant.status.value})
        now = self.clock.now()
        if (
            grant.status is GrantStatus.PROVISIONING
            and now - parse_iso(grant.created_at) < PROVISIONING_GRACE
        ):
            # Raise: the retry comes back once the grant invocation has finished either way.
            raise TransientError(f"grant {grant_id} is still being provisioned")
        log.append_keys(
            instance_id=grant.instance_id,
            principal_arn=grant.principal_arn,
            slot=grant.slot,
            revoke_reason=reason,
        )

        holds_slot = False
        if grant.slot is not None:
            holds_slot = self.ledger.slot_holder(grant.principal_arn, grant.slot) == grant_id
            if holds_slot:
                try:
                    directory, _, sessions = self._in(grant.account)
                except (MemberUnavailable, AccountNotAllowed) as exc:
                    # Never skipped silently: raise, so the revocation is retried and alarmed.
                    raise TransientError(f"cannot reach account {grant.account} to revoke: {exc}") from exc
                directory.untag(
                    PrincipalType(grant.principal_type), grant.principal_name, slots.slot_keys(grant.slot)
                )
                if self.settings.terminate_sessions_on_expiry:
                    # An extension replaced this grant (or it ran out while its extension is live, the
                    # request API not having retired it yet): the same person keeps the same instance,
                    # so nothing ends now; the sessions end when the successor's own access does. An
                    # explicit revocation (done, revoked by an approver) always ends them.
                    continues = reason in (REASON_EXTENDED, REASON_EXPIRED)
                    successor = self._successor(grant, now) if continues else None
                    if successor is not None:
                        log.info("open sessions kept: access continues", extra={"successor": successor})
                    else:
                        ended = self._end_sessions(grant, sessions)
                        if ended:
                            log.info("open sessions terminated", extra={"sessions": ended})
            else:
                log.warning("slot no longer held by this grant: tags left untouched")
        if not self.ledger.complete_revoke(
            grant, at=to_iso(now), reason=reason, by=by, release_slot=holds_slot
        ):
            return Outcome("duplicate", grant_id, {"status": "REVOKED"})
        if reason != REASON_EXPIRED and grant.schedule_name:
            self.schedules.delete(grant.schedule_name)

        metrics().add("Revocations")
        if reason == REASON_EXPIRED and grant.expires is not None:
            metrics().add("RevocationLag", max(0.0, (now - grant.expires).total_seconds()), unit="Seconds")
        log.info("access revoked")
        self.notifier.publish(
            "AccessRevoked",
            {**self._payload(grant), "reason": reason, "revoked_by": by},
            subject=f"SessionGate: access of {grant.principal_name} to {grant.instance_id} revoked",
        )
        return Outcome("revoked", grant_id, {"reason": reason, "untagged": holds_slot})

    def _successor(self, grant: Grant, now: datetime) -> str | None:
        """The live grant that continues ``grant``'s access, if any, read from the ledger.

        It holds another slot of the same principal and is ACTIVE, unexpired, for the same account,
        instance and bound session. Anything less (the extension denied, revoked, expired, elsewhere,
        or bound to another session) is no continuation: the revocation ends the sessions as usual.
        """
        for slot in range(1, self.settings.slot_count + 1):
            if slot == grant.slot:
                continue
            holder = self.ledger.slot_holder(grant.principal_arn, slot)
            if holder is None or holder in (grant.grant_id, REPAIR_HOLDER):
                continue
            other = self.ledger.get_grant(holder)
            if (
                other is not None
                and other.status is GrantStatus.ACTIVE
                and other.slot == slot
                and (other.account, other.principal_arn, other.instance_id, other.bound_user_id)
                == (grant.account, grant.principal_arn, grant.instance_id, grant.bound_user_id)
                and other.expires is not None
                and now < other.expires
            ):
                return other.grant_id
        return None

    def _end_sessions(self, grant: Grant, sessions: Sessions | None) -> list[str]:
        if sessions is None:
            return []
        owner = Identity(self.settings.partition, grant.account, grant.principal_type, grant.principal_name)
        session_name = grant.bound_user_id.split(":", 1)[1] if grant.bound_user_id else None
        return sessions.terminate(grant.instance_id, owner, session_name)

    def _in(self, account: str) -> tuple[Directory, Inventory, Sessions | None]:
        """The IAM/EC2/SSM adapters of ``account``: this one, or a member through its role."""
        if account == self.settings.account_id:
            return self.directory, self.inventory, self.sessions
        if account not in self.settings.member_accounts or self.accounts is None:
            raise AccountNotAllowed(account)
        return self.accounts.adapters(account, self.clock.now())

    # ------------------------------------------------------------------------------ reconciler
    def reconcile(self) -> Outcome:
        """Repair what lost or failed deliveries left behind; report every repair.

        1. ACTIVE grants past expiry (their schedule was lost or failed): revoke them.
        2. PROVISIONING grants stuck past the grace period: undo and deny them (or revoke if expired).
        3. ACTIVE grants whose revoke schedule is missing: re-create it.
        4. Slot tags that no live grant explains (drift, manual tagging) on principals that hold the
           operator policy or a live grant: remove them, holding the slot's lock while doing so.
        Every item is attempted; if any repair failed the run raises at the end (alarm, retry).
        """
        log = bind()
        now = self.clock.now()
        repairs: dict[str, list[str]] = {
            "revoked": [],
            "abandoned": [],
            "schedules_recreated": [],
            "drift_removed": [],
        }
        failures: list[str] = []
        live = self.ledger.live_grants()
        for grant in live:
            try:
                kind = self._reconcile_grant(grant, now)
            except (TransientError, ClientError, BotoCoreError) as exc:
                log.exception("reconciler could not repair a grant", extra={"grant_id": grant.grant_id})
                failures.append(f"{grant.grant_id}: {exc}")
                continue
            if kind:
                repairs[kind].append(grant.grant_id)
        principals = {(g.account, PrincipalType(g.principal_type), g.principal_name) for g in live}
        for account in (self.settings.account_id, *self.settings.member_accounts):
            try:
                directory, _, _ = self._in(account)
                if self.settings.operator_policy_arn:
                    # The member stack creates the operator policy under the same name in each account.
                    policy = self.settings.operator_policy_arn.replace(
                        f":{self.settings.account_id}:", f":{account}:"
                    )
                    principals |= {(account, k, n) for k, n in directory.policy_principals(policy)}
            except (MemberUnavailable, ClientError, BotoCoreError) as exc:
                log.exception("reconciler could not list operators", extra={"account": account})
                failures.append(f"account {account}: {exc}")
        for account, kind_, name in sorted(principals):
            try:
                directory, _, _ = self._in(account)
                repairs["drift_removed"] += self._remove_drift(directory, kind_, name)
            except (MemberUnavailable, AccountNotAllowed, ClientError, BotoCoreError) as exc:
                log.exception("reconciler could not check a principal", extra={"principal_name": name})
                failures.append(f"{account}/{kind_.value}/{name}: {exc}")
        total = sum(len(v) for v in repairs.values())
        for kind, items in repairs.items():
            if items:
                metrics().add("ReconcilerRepairs", len(items), repair=kind)
        if total:
            log.warning("reconciler repaired drift", extra={"repairs": repairs})
            self.notifier.publish(
                "ReconcilerRepaired",
                {"at": to_iso(now), "account": self.settings.account_id, "repairs": repairs},
                subject=f"SessionGate: reconciler made {total} repair(s)",
            )
        if failures:
            raise TransientError(f"reconciler left {len(failures)} item(s) unrepaired: {failures[:5]}")
        return Outcome("reconciled", None, {"repairs": repairs, "checked_grants": len(live)})

    def _reconcile_grant(self, grant: Grant, now: datetime) -> str | None:
        expires = grant.expires
        if grant.status is GrantStatus.PROVISIONING:
            if now - parse_iso(grant.created_at) < PROVISIONING_GRACE:
                return None  # a grant invocation may still be working on it
            if grant.slot is not None and expires is not None and now >= expires:
                return "revoked" if self.revoke(grant.grant_id, by="reconciler").result == "revoked" else None
            outcome = self._abandon(
                grant, [Denial("provisioning_timeout", "the grant never finished provisioning")]
            )
            return "abandoned" if outcome.result == "denied" else None
        if expires is not None and now >= expires + RECONCILE_TOLERANCE:
            return "revoked" if self.revoke(grant.grant_id, by="reconciler").result == "revoked" else None
        name = grant.schedule_name or REVOKE_PREFIX + grant.grant_id
        if expires is not None and now < expires and not self.schedules.exists(name):
            self.schedules.create_once(
                name,
                expires,
                self.settings.revoke_target_arn,
                {"grant_id": grant.grant_id, "reason": REASON_EXPIRED},
            )
            return "schedules_recreated"
        return None

    def _remove_drift(self, directory: Directory, kind: PrincipalType, name: str) -> list[str]:
        principal = directory.get_principal(kind, name)
        if principal is None:
            return []
        removed = []
        lowered = {k.lower() for k in principal.tags}
        for slot in range(1, self.settings.slot_count + 1):
            keys = [k for k in slots.slot_keys(slot) if k.lower() in lowered]
            holder = self.ledger.slot_holder(principal.arn, slot)
            if holder is not None and (holder == REPAIR_HOLDER or not self._is_live(holder)):
                # A lock left behind by a grant that is no longer live, or by a reconciler run that
                # died mid-repair (runs never overlap: reserved concurrency 1), explains no tag and
                # would keep the slot from every future grant. Release it (only if still that holder).
                self.ledger.release_slot(principal.arn, slot, holder)
                bind(grant_id=holder).warning("stale slot lock released", extra={"slot": slot})
                holder = None
                if not keys:
                    removed.append(f"{principal.arn}#{slot} (stale lock)")
            if not keys or holder is not None:
                continue
            # Hold the free slot while untagging, so a grant cannot take it and tag it meanwhile.
            if not self.ledger.lock_free_slot(principal.arn, slot, REPAIR_HOLDER):
                continue
            try:
                directory.untag(kind, name, keys)
            finally:
                self.ledger.release_slot(principal.arn, slot, REPAIR_HOLDER)
            removed.append(f"{principal.arn}#{slot}")
        return removed

    def _is_live(self, grant_id: str) -> bool:
        grant = self.ledger.get_grant(grant_id)
        return grant is not None and grant.status in (GrantStatus.PROVISIONING, GrantStatus.ACTIVE)

    # ------------------------------------------------------------------------------ helpers
    def _verify_origin(
        self, request: AccessApproved, instance: guardrails.InstanceFacts | None
    ) -> list[Denial]:
        verifier = (self.verifiers or {}).get(request.origin)
        if verifier is None:
            return [Denial("origin_unverifiable", f"no verifier for origin {request.origin.value}")]
        return verifier.verify(request, instance)

    def _arn(self, request: AccessApproved) -> str:
        return principal_arn(
            self.settings.partition, request.account, request.principal_type, request.principal_name
        )

    def _deny_early(
        self, request: AccessApproved, existing: Grant | None, now: datetime, denials: list[Denial]
    ) -> Outcome:
        """Deny before anything was read from the target account."""
        if existing is not None:
            return self._abandon(existing, denials)
        return self.deny_new(self._record(request, self._arn(request), now, GrantStatus.DENIED), denials)

    def _record(self, request: AccessApproved, arn: str, now: datetime, status: GrantStatus) -> Grant:
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
        )

    def deny_new(self, record: Grant, denials: list[Denial]) -> Outcome:
        record = replace(record, status=GrantStatus.DENIED, denials=[d.as_dict() for d in denials])
        if not self.ledger.create(record):
            return Outcome("duplicate", record.grant_id)
        return self._notify_denied(record)

    def _abandon(self, grant: Grant, denials: list[Denial]) -> Outcome:
        """Deny a grant whose record exists (PROVISIONING): undo what it did, then record the denial."""
        if (
            grant.slot is not None
            and self.ledger.slot_holder(grant.principal_arn, grant.slot) == grant.grant_id
        ):
            directory, _, _ = self._in(grant.account)
            directory.untag(
                PrincipalType(grant.principal_type), grant.principal_name, slots.slot_keys(grant.slot)
            )
            self.ledger.release_slot(grant.principal_arn, grant.slot, grant.grant_id)
        if not self.ledger.mark_denied(grant, [d.as_dict() for d in denials]):
            return Outcome("superseded", grant.grant_id)
        return self._notify_denied(grant)

    def _notify_denied(self, grant: Grant) -> Outcome:
        codes = [d["code"] for d in grant.denials]
        logger().warning("access denied", extra={"grant_id": grant.grant_id, "denials": grant.denials})
        for code in codes:
            metrics().add("Denials", reason=code)
        self.notifier.publish(
            "AccessDenied",
            {**self._payload(grant), "denials": grant.denials},
            subject=f"SessionGate: request {grant.grant_id} denied ({', '.join(codes)[:60]})",
        )
        return Outcome("denied", grant.grant_id, {"denials": grant.denials})

    def reject(self, what: str, exc: InvalidInput) -> Outcome:
        """A malformed trigger: logged, counted and notified; never retried, nothing changed in IAM."""
        logger().error("event rejected", extra={"trigger": what, "problem": str(exc), "field": exc.field})
        metrics().add("RejectedEvents", reason=what)
        self.notifier.publish(
            "EventRejected",
            {
                "at": to_iso(self.clock.now()),
                "trigger": what,
                "problem": str(exc),
                "field": exc.field,
                "account": self.settings.account_id,
            },
            subject=f"SessionGate: rejected a malformed {what} trigger",
        )
        return Outcome("rejected", None, {"problem": str(exc), "field": exc.field})

    def _payload(self, grant: Grant) -> dict[str, Any]:
        return {
            "at": to_iso(self.clock.now()),
            "grant_id": grant.grant_id,
            "status": grant.status.value,
            "account": grant.account,
            "instance_id": grant.instance_id,
            "principal_arn": grant.principal_arn,
            "principal_name": grant.principal_name,
            "origin": grant.origin,
            "origin_ref": grant.origin_ref,
            "requester_arn": grant.requester_arn,
            "approver_arns": grant.approver_arns,
            "expires_at": grant.expires_at,
            "slot": grant.slot,
        }
