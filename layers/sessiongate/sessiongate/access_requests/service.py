"""The native front door: create, approve, reject, cancel, revoke and extend requests.

Orchestrates the pure rules (:mod:`native`, :mod:`approval_policy`) and the adapters; hands approved
requests to the engine as ``AccessApproved`` (origin ``native``) on the SessionGate bus, and revokes
through :meth:`Engine.revoke` (the same path as expiry). Every state change is a conditional write; the
writer that moves a request to APPROVED is the only one that emits, so two approvers clicking at once
produce one grant.

Reads (``GET /requests``, ``GET /requests/{id}``, ``GET /approvals``) never write, emit or revoke: they
report the status *derived* from the record and the engine's grant ledger (:meth:`NativeService._derive`).
Whatever must happen on time happens in the scheduled sweep (:meth:`NativeService.expire_pending`) or on
the grant/revoke paths; the write paths (approve, reject, cancel, revoke, extend) write the derived
status along with their own change.
"""

from __future__ import annotations

import contextlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.access_requests.policy import (
    ApprovalPolicy,
    PolicyError,
    PolicyRejected,
    Rule,
    VerifiedPolicy,
    approvals_satisfy,
    approver_level,
    check_break_glass,
    check_duration,
    check_not_involved,
    current_level,
    default_duration,
    progress,
)
from sessiongate.access_requests.records import (
    LIVE,
    MAX_EXTENSIONS,
    OPEN,
    ApiError,
    Approval,
    Caller,
    Page,
    Request,
    RequestStatus,
    check_request_id,
    conflict,
    extension_id,
    forbidden,
    parse_comment,
    parse_create,
    parse_extend,
    pending_deadline,
    request_id_of,
    root_id,
    same_caller,
)
from sessiongate.adapters.accounts import MemberUnavailable
from sessiongate.adapters.bus import Bus
from sessiongate.adapters.kms import Macs, MacUnavailable
from sessiongate.adapters.notifier import Notifier
from sessiongate.adapters.request_store import PolicySource, RequestStore
from sessiongate.clock import Clock, parse_iso, to_iso
from sessiongate.core.engine import PROVISIONING_GRACE, REASON_EXPIRED, REASON_EXTENDED, Engine
from sessiongate.core.guardrails import InstanceFacts, excluded_by_tag
from sessiongate.core.identity import parse_identity, person_key
from sessiongate.core.model import AccessApproved, Denial, Grant, GrantStatus, disagreements
from sessiongate.core.ports import Directory, Inventory
from sessiongate.errors import TransientError
from sessiongate.observability import bind, metrics
from sessiongate.settings import Settings

# Conditional-write retries of one API call before it answers 409 "conflict".
WRITE_ATTEMPTS = 3
MAX_LIST = 50
# Pending requests, and approved ones, the scheduled sweep looks at per run (the oldest first).
SWEEP_LIMIT = 500
# An approved request not handed to the engine this long after its approval: the emit failed, the
# sweep emits it again (younger ones may still be in the hands of the approving call).
EMIT_GRACE = timedelta(minutes=1)
DAY = timedelta(hours=24)
REASON_DONE = "done"
REASON_REVOKED = "revoked"
REASON_ACCESS_REVOKED = "access revoked"


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class NativeService:
    settings: Settings
    store: RequestStore
    policies: PolicySource
    inventory: Inventory
    directory: Directory
    bus: Bus
    notifier: Notifier
    engine: Engine
    clock: Clock
    macs: Macs | None = None  # signs approvals (ApprovalKey); None: nothing can be approved
    ids: Callable[[], str] = field(default=new_request_id)
    _recorded_policy: str = field(default="", init=False, repr=False)

    # ------------------------------------------------------------------------------ create
    def create(self, caller: Caller, body: object) -> dict[str, Any]:
        data = parse_create(
            body,
            default_minutes=self.settings.default_validity_minutes,
            max_minutes=self.settings.max_validity_minutes,
        )
        self._check_account(caller)
        self._note_policy()
        # The access is for the caller's own user or role; in a member account, for the principal of the
        # same type and name there (identities never come from the body).
        account = data.account or caller.account
        directory, inventory = self._adapters(account)
        rule, tags = self._rule_for(data.instance_id, account, inventory)
        if not rule.may_request(caller.arn):
            raise forbidden("not_a_requester", f"rule {rule.name!r} does not let you request access")
        duration = data.duration_minutes
        if data.default_duration:
            duration = default_duration(
                rule, self.settings.default_validity_minutes, break_glass=data.break_glass
            )
        check_duration(rule, duration)
        if data.break_glass:
            check_break_glass(rule, caller.arn, duration, data.reason)
        principal = directory.get_principal(caller.principal_type, caller.principal_name)
        if principal is None:
            raise forbidden(
                "principal_not_found",
                f"IAM {caller.principal_type.value} {caller.principal_name} not found in account {account}",
            )
        for mine in self.store.by_requester(caller.arn, limit=MAX_LIST):
            mine = self._sync(mine)
            if (
                mine.instance_id == data.instance_id
                and mine.account == account
                and mine.status in OPEN
                and mine.extends is None
            ):
                raise conflict(
                    "duplicate_request",
                    f"you have request {mine.request_id} ({mine.status.value}) for {data.instance_id}",
                )
        now = self.clock.now()
        request = Request(
            request_id=self.ids(),
            status=RequestStatus.PENDING,
            account=account,
            instance_id=data.instance_id,
            principal_type=caller.principal_type,
            principal_name=caller.principal_name,
            principal_arn=principal.arn,
            requester_arn=caller.arn,
            duration_minutes=duration,
            reason=data.reason,
            ticket=data.ticket,
            created_at=to_iso(now),
            pending_expires_at=pending_deadline(now, self.settings.pending_request_ttl_minutes),
            rule=rule.name,
            instance_tags=tuple(sorted(tags.items())),
            history=({"at": to_iso(now), "status": RequestStatus.PENDING.value, "by": caller.arn},),
        )
        log = bind(
            request_id=request.request_id, instance_id=request.instance_id, principal_arn=principal.arn
        )
        if data.break_glass:
            # Counted per person (any session or permission set of theirs), atomically, last.
            identity = parse_identity(caller.arn)
            assert identity is not None  # the caller was parsed when the request came in
            limit = rule.break_glass.max_per_day
            if (
                self.store.take_quota(f"breakglass#{person_key(identity)}", now=now, window=DAY, limit=limit)
                is None
            ):
                raise forbidden(
                    "break_glass_quota",
                    f"you used break-glass {limit} time(s) in the last 24 hours (at most {limit} under "
                    f"rule {rule.name!r}): ask an approver",
                )
        if not self.store.create(request):
            raise TransientError(f"request id {request.request_id} collided")
        metrics().add("NativeRequests")
        if not data.break_glass:
            log.info("access requested", extra={"rule": rule.name})
            self._notify("AccessRequested", request, rule=rule)
            return self._view(request, rule)
        # Break-glass: the requester approves alone. The engine never accepts the requester as approver
        # of record, so SessionGate's request API role is recorded as the approver (the policy rule that
        # allowed it), the requester's self-approval is kept in ``approvals``, and the record is flagged.
        approved = request.transition(
            RequestStatus.APPROVED,
            at=now,
            by=caller.arn,
            break_glass=True,
            approvals=(Approval(caller.arn, -1, to_iso(now), data.reason),),
            approver_arns=(self.settings.break_glass_approver_arn,),
            approved_at=to_iso(now),
            decided_by=caller.arn,
            version=request.version + 1,
        )
        approved = self._sign(approved)
        if not self.store.replace(approved, expected_version=request.version):
            raise conflict("conflict", "the request changed meanwhile; check its status")
        log.warning("break-glass access self-approved", extra={"rule": rule.name})
        metrics().add("BreakGlass")
        self._notify("BreakGlassUsed", approved, rule=rule)
        return self._view(self._emit(approved), rule)

    # ------------------------------------------------------------------------------ housekeeping
    def expire_pending(self) -> dict[str, Any]:
        """Scheduled (the reconciler's rate): what must happen on time even when nobody calls the API.

        1. Pending requests whose time ran out become EXPIRED and are notified, oldest first.
        2. Approved requests whose hand-over to the engine failed are emitted again, if the request
           API itself approved them (:meth:`_approved_by_api`).
        3. Approved requests whose grant has settled (ACTIVE, DENIED, REVOKED) are written so, which
           takes them off the sweep's list; an extension found ACTIVE first retires the grant it
           replaces (revoked, reason ``extended``).
        4. A change of the approval policy is recorded and notified (PolicyChanged), a policy that
           does not verify is notified (PolicyRejected).
        At most ``SWEEP_LIMIT`` of each a run. Every approved request is attempted; if any failed, the
        run raises at the end (Lambda retries it, the request API's error alarm fires, the next run
        tries again).
        """
        # A rejected policy is logged, counted and notified there; expiring requests needs no policy.
        with contextlib.suppress(ApiError):
            self._note_policy(sweep=True)
        log = bind()
        expired = sum(
            self._sync(request).status is RequestStatus.EXPIRED
            for request in self.store.pending(limit=SWEEP_LIMIT, oldest_first=True)
        )
        done = {"reemitted": 0, "settled": 0}
        failures = []
        for request in self.store.approved(limit=SWEEP_LIMIT):
            try:
                for kind in self._sweep_approved(request):
                    done[kind] += 1
            except (TransientError, ApiError, ClientError, BotoCoreError) as exc:
                log.exception("sweep could not handle a request", extra={"request_id": request.request_id})
                failures.append(f"{request.request_id}: {exc}")
        if expired:
            metrics().add("PendingRequestsExpired", expired)
            log.info("pending requests expired", extra={"expired": expired})
        if done["reemitted"]:
            metrics().add("ApprovalsReemitted", done["reemitted"])
        if any(done.values()):
            log.info("approved requests swept", extra=done)
        if failures:
            raise TransientError(f"sweep left {len(failures)} request(s) unhandled: {failures[:5]}")
        return {"result": "swept", "expired": expired, **done}

    def _sweep_approved(self, request: Request) -> list[str]:
        """Steps 2 and 3 of the sweep for one APPROVED record; the kinds of work done."""
        grant = self.engine.ledger.get_grant(request.grant_id)
        if grant is None:
            if request.emitted_at is not None or request.approved_at is None:
                return []  # handed over: the engine has not recorded it yet
            if self.clock.now() - parse_iso(request.approved_at) < EMIT_GRACE:
                return []  # the approving call may still be emitting it
            if not self._approved_by_api(request):
                # Possibly written into the table by someone else: never handed to the engine.
                bind(request_id=request.request_id).error(
                    "approved request not handed to the engine: nothing proves the request API approved it"
                )
                metrics().add("UnverifiedApprovals")
                return []
            self._emit(request)
            bind(request_id=request.request_id).warning("approved request handed to the engine again")
            return ["reemitted"]
        if self._derived(request, grant).status is RequestStatus.APPROVED:
            return []  # still being granted
        return ["settled"] if self._sync(request).version > request.version else []

    def _approved_by_api(self, request: Request) -> bool:
        """Whether the request API itself approved this record; only such records are handed to the
        engine again by the sweep (and a read never hands anything over).

        The proof is the record's ``approval_mac``: the request API role is the only principal that
        may GenerateMac with ApprovalKey (its key policy), and HMAC is deterministic, so the API
        re-generates the MAC of the record's facts and compares (it holds no VerifyMac: the grant role
        does). A record written into the table by anyone else has no valid MAC: never handed over.
        A key that cannot be used proves nothing either (fail closed).
        """
        if not request.approval_mac or self.macs is None or not self.settings.approval_key_id:
            return False
        try:
            expected = self.macs.generate(self.settings.approval_key_id, request.approval_message())
        except MacUnavailable:
            metrics().add("ApprovalKeyErrors")
            return False
        return hmac.compare_digest(expected, request.approval_mac)

    # ------------------------------------------------------------------------------ read
    def get(self, caller: Caller, request_id: str) -> dict[str, Any]:
        request = self._read(request_id)
        rule = self._current_rule(request, required=False)
        if not (same_caller(caller.arn, request.requester_arn) or self._may_review(caller, request, rule)):
            raise forbidden("not_allowed", "only the requester and the approvers may see this request")
        return self._view(request, rule)

    def list_mine(self, caller: Caller, limit: int) -> dict[str, Any]:
        found = [self._derive(r) for r in self.store.by_requester(caller.arn, limit=min(limit, MAX_LIST))]
        return Page(found).view()

    def list_to_approve(self, caller: Caller, limit: int) -> dict[str, Any]:
        """Pending requests the caller may approve now (their level is the current one)."""
        out = []
        for request in self.store.pending(limit=MAX_LIST):
            request = self._derive(request)
            if request.status is not RequestStatus.PENDING:
                continue
            rule = self._current_rule(request, required=False)
            if rule is None or rule.name != request.rule:
                continue
            try:
                approver_level(rule, request, caller.arn)
            except ApiError:
                continue
            out.append(request)
            if len(out) >= limit:
                break
        return Page(out).view()

    # ------------------------------------------------------------------------------ decisions
    def approve(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        comment = parse_comment(body, required=False)
        rule: Rule | None = None

        def approved(request: Request) -> Request:
            nonlocal rule
            rule = self._current_rule(request, required=True)
            assert rule is not None
            if rule.name != request.rule:
                # The instance's tags (or the policy) changed since the request: approving under the
                # new rule could weaken it (prod -> dev). The requester asks again under the new rule.
                raise conflict(
                    "rule_changed",
                    f"request {request_id} was made under rule {request.rule!r}, the instance now falls "
                    f"under {rule.name!r}: make a new request",
                )
            level = approver_level(rule, request, caller.arn)
            if request.extends is not None and not any(
                member.status in LIVE
                for member in self._family(request)
                if member.request_id != request.request_id
            ):
                raise conflict(
                    "parent_not_live",
                    f"the access this extends (request {request.extends}) has ended: make a new request",
                )
            now = self.clock.now()
            approvals = (*request.approvals, Approval(caller.arn, level, to_iso(now), comment))
            if current_level(rule, approvals) is not None:
                return replace(request, approvals=approvals, version=request.version + 1)
            return self._sign(
                request.transition(
                    RequestStatus.APPROVED,
                    at=now,
                    by=caller.arn,
                    approvals=approvals,
                    approver_arns=tuple(a.approver_arn for a in approvals),
                    approved_at=to_iso(now),
                    decided_by=caller.arn,
                    version=request.version + 1,
                )
            )

        self._note_policy()
        updated = self._write(lambda: self._pending(request_id), approved)
        assert rule is not None
        log = bind(
            request_id=request_id, instance_id=updated.instance_id, principal_arn=updated.principal_arn
        )
        if updated.status is RequestStatus.APPROVED:
            log.info("request approved", extra={"approvers": list(updated.approver_arns)})
            self._notify("AccessApproved", updated, rule=rule)
            updated = self._emit(updated)
        else:
            log.info("approval recorded", extra={"level": updated.approvals[-1].level + 1})
            self._notify("ApprovalRecorded", updated, rule=rule)
        return self._view(updated, rule)

    def reject(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        comment = parse_comment(body, required=True)
        rule: Rule | None = None

        def rejected(request: Request) -> Request:
            nonlocal rule
            rule = self._current_rule(request, required=True)
            assert rule is not None
            check_not_involved(request, caller.arn)
            if not rule.may_review(caller.arn):
                raise forbidden("not_an_approver", f"you are not an approver of rule {rule.name!r}")
            return request.transition(
                RequestStatus.REJECTED,
                at=self.clock.now(),
                by=caller.arn,
                decided_by=caller.arn,
                comment=comment,
                version=request.version + 1,
            )

        self._note_policy()
        updated = self._write(lambda: self._pending(request_id), rejected)
        bind(request_id=request_id).info("request rejected")
        self._notify("AccessRejected", updated, rule=rule)
        return self._view(updated, rule)

    def cancel(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        comment = parse_comment(body, required=False, name="reason")

        def cancelled(request: Request) -> Request:
            if not same_caller(caller.arn, request.requester_arn):
                raise forbidden("not_requester", "only the requester may cancel a request")
            if request.status is not RequestStatus.PENDING:
                raise conflict(
                    "not_pending",
                    f"request {request_id} is {request.status.value}: only PENDING can be cancelled",
                )
            return request.transition(
                RequestStatus.CANCELLED,
                at=self.clock.now(),
                by=caller.arn,
                comment=comment,
                version=request.version + 1,
            )

        updated = self._write(lambda: self._load(request_id), cancelled)
        bind(request_id=request_id).info("request cancelled")
        self._notify("AccessRequestCancelled", updated)
        return self._view(updated, None)

    def revoke(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        """Early revocation: "I'm done" by the requester, or an approver of the request's rule.

        It ends the whole access, whichever of its requests is named (the first one or an extension):
        pending extensions are cancelled (approved later, they would bring access back) and live
        requests revoked. Every request is attempted; a 409 names any that could not be ended yet.
        """
        comment = parse_comment(body, required=False, name="reason")
        request = self._load(request_id)
        is_requester = same_caller(caller.arn, request.requester_arn)
        if not is_requester:
            rule = self._current_rule(request, required=False)
            if not self._may_review(caller, request, rule):
                raise forbidden("not_allowed", "only the requester or an approver may revoke this access")
        family = self._family(request)
        if not any(member.status in LIVE for member in family):
            raise conflict("not_active", f"request {request_id} is {request.status.value}: nothing to revoke")
        reason = REASON_DONE if is_requester else REASON_REVOKED
        left = []
        # Pending ones first, so none of them can turn live behind the revocations.
        for member in sorted(family, key=lambda r: r.status is not RequestStatus.PENDING):
            if member.status in LIVE or member.status is RequestStatus.PENDING:
                try:
                    self._end(member.request_id, reason=reason, by=caller.arn, comment=comment)
                except ApiError as exc:
                    left.append(f"{member.request_id} ({exc.code})")
        if left:
            raise conflict("partly_revoked", f"not ended yet: {', '.join(left)}; revoke again shortly")
        return self._view(self._load(request_id), None)

    def _family(self, request: Request) -> list[Request]:
        """The requests of one access: the first request and its extensions (``<first>-x<n>``), synced."""
        first = request if request.extends is None else self.store.get(root_id(request.request_id))
        if first is None:
            return [request]
        members = [first]
        for n in range(1, first.extension_count + 1):
            member = self.store.get(extension_id(first.request_id, n))
            if member is not None:
                members.append(member)
        return [self._sync(m) for m in members]

    def _end(self, request_id: str, *, reason: str, by: str, comment: str) -> None:
        """End one request of an access: revoke it if live, cancel it if pending (re-read on a lost
        race, e.g. an approval landing meanwhile)."""
        for _ in range(WRITE_ATTEMPTS):
            request = self._load(request_id)
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
                self._notify("AccessRequestCancelled", cancelled)
                return
        raise conflict("conflict", f"request {request_id} kept changing")

    def extend(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        """A new request (``<id>-x<n>``) for the same instance and principal; approved like any other."""
        data = parse_extend(
            body,
            default_minutes=self.settings.default_validity_minutes,
            max_minutes=self.settings.max_validity_minutes,
        )
        for _ in range(WRITE_ATTEMPTS):
            parent = self._load(request_id)
            if not same_caller(caller.arn, parent.requester_arn):
                raise forbidden("not_requester", "only the requester may extend their access")
            if parent.status is not RequestStatus.ACTIVE:
                raise conflict(
                    "not_active",
                    f"request {request_id} is {parent.status.value}: only ACTIVE access can be extended",
                )
            # Extensions of one access are numbered on its first request (``<root>-x<n>``), so an
            # extension can itself be extended; the root's version guards the numbering.
            root = parent if parent.extends is None else self._load(root_id(parent.request_id))
            if root.extension_count >= MAX_EXTENSIONS:
                raise conflict("too_many_extensions", f"at most {MAX_EXTENSIONS} extensions per request")
            rule, tags = self._rule_for(parent.instance_id, parent.account)
            if not rule.may_request(caller.arn):
                # The rule may have changed since the first request (policy or instance tags).
                raise forbidden("not_a_requester", f"rule {rule.name!r} does not let you request access")
            duration = data.duration_minutes
            if data.default_duration:
                duration = default_duration(rule, self.settings.default_validity_minutes, break_glass=False)
            check_duration(rule, duration)
            now = self.clock.now()
            n = root.extension_count + 1
            child = Request(
                request_id=extension_id(root.request_id, n),
                status=RequestStatus.PENDING,
                account=parent.account,
                instance_id=parent.instance_id,
                principal_type=parent.principal_type,
                principal_name=parent.principal_name,
                principal_arn=parent.principal_arn,
                requester_arn=parent.requester_arn,
                duration_minutes=duration,
                reason=data.reason,
                ticket=parent.ticket,
                created_at=to_iso(now),
                pending_expires_at=pending_deadline(now, self.settings.pending_request_ttl_minutes),
                rule=rule.name,
                instance_tags=tuple(sorted(tags.items())),
                extends=parent.request_id,
                history=({"at": to_iso(now), "status": RequestStatus.PENDING.value, "by": caller.arn},),
            )
            bumped = replace(root, extension_count=n, version=root.version + 1)
            if self.store.create_extension(bumped, expected_version=root.version, child=child):
                break
        else:
            raise conflict("conflict", "the request kept changing; try again")
        bind(request_id=child.request_id).info("extension requested", extra={"extends": parent.request_id})
        self._notify("AccessRequested", child, rule=rule)
        return self._view(child, rule)

    # ------------------------------------------------------------------------------ sync with the engine
    def _read(self, request_id: str) -> Request:
        """A request as the reads report it: derived (:meth:`_derive`), nothing written."""
        request = self.store.get(check_request_id(request_id))
        if request is None:
            raise ApiError(404, "not_found", f"no request {request_id}")
        return self._derive(request)

    def _load(self, request_id: str) -> Request:
        """A request for a write path: its derived status written first (:meth:`_sync`)."""
        request = self.store.get(check_request_id(request_id))
        if request is None:
            raise ApiError(404, "not_found", f"no request {request_id}")
        return self._sync(request)

    def _pending(self, request_id: str) -> Request:
        request = self._load(request_id)
        if request.status is RequestStatus.EXPIRED and request.approved_at is None:
            raise conflict("request_expired", f"request {request_id} expired before it was approved")
        if request.status is not RequestStatus.PENDING:
            raise conflict(
                "not_pending", f"request {request_id} is {request.status.value}, no longer PENDING"
            )
        return request

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

    def _sync(self, request: Request) -> Request:
        """For write paths and the sweep only: write the derived status (a pending request's expiry is
        notified, once: the write is conditional on the version). An extension found ACTIVE first retires
        the grant it replaces (before the record leaves the sweep's list, so a failure is retried). Never
        emits. On a lost race the other writer's record, derived."""
        derived = self._derive(request)
        if derived.status is request.status:
            return request
        if derived.status is RequestStatus.ACTIVE:
            self._retire_parent(derived)
        updated = replace(derived, version=request.version + 1)
        if self.store.replace(updated, expected_version=request.version):
            if request.status is RequestStatus.PENDING:
                self._notify("AccessRequestExpired", updated)
            return updated
        current = self.store.get(request.request_id)
        return self._derive(current) if current is not None else derived

    def _write(self, load: Callable[[], Request], change: Callable[[Request], Request]) -> Request:
        """Optimistic update: re-read and re-decide when another writer got there first."""
        for _ in range(WRITE_ATTEMPTS):
            request = load()
            updated = change(request)
            if self.store.replace(updated, expected_version=request.version):
                return updated
        raise conflict("conflict", "the request kept changing meanwhile; check its status and try again")

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
            raise conflict(
                "grant_in_progress", "the grant is still being set up; try again in a minute"
            ) from None
        bind(request_id=request.request_id).info("grant revoked early", extra={"result": outcome.result})

    def _emit(self, request: Request) -> Request:
        """Hand an approved request to the engine and mark it handed over. Only the writer that
        approved it (approve, break-glass create) and the sweep (a failed hand-over, :meth:`_approved_by_api`)
        call this, never a read; a second emit is harmless (the grant dedupes on the grant id)."""
        self.bus.emit_approved(request.to_access_approved())
        marked = replace(request, emitted_at=to_iso(self.clock.now()), version=request.version + 1)
        if self.store.replace(marked, expected_version=request.version):
            return marked
        current = self.store.get(request.request_id)
        return current if current is not None else request

    # ------------------------------------------------------------------------------ helpers
    def _check_account(self, caller: Caller) -> None:
        if caller.account != self.settings.account_id:
            raise forbidden("account_not_allowed", f"account {caller.account} is not SessionGate's account")

    def _policy(self) -> ApprovalPolicy:
        return self._verified_policy().policy

    def _verified_policy(self, *, notify: bool = False) -> VerifiedPolicy:
        try:
            return self.policies.verified()
        except PolicyRejected as exc:
            raise self._rejected(exc, notify=notify) from None
        except PolicyError as exc:
            bind().error("approval policy unusable", extra={"problem": str(exc)})
            metrics().add("PolicyErrors")
            raise ApiError(
                503, "policy_unavailable", "the approval policy cannot be used; tell the SessionGate admins"
            ) from None

    def _rejected(self, exc: PolicyRejected, *, notify: bool) -> ApiError:
        """Someone wrote the parameter without the deployers' key (or wrote back an older signed
        policy): refuse everything, loudly."""
        bind().error("approval policy rejected", extra={"problem": str(exc)})
        metrics().add("PolicyRejected")
        if notify:
            self.notifier.publish(
                "PolicyRejected",
                {
                    "at": to_iso(self.clock.now()),
                    "account": self.settings.account_id,
                    "parameter": self.settings.approval_policy_parameter,
                    "problem": str(exc),
                },
                subject="SessionGate: the approval policy failed verification - every request refused",
            )
        return ApiError(
            503,
            "policy_rejected",
            "the approval policy is not signed by SessionGate's deployers: every request is refused; "
            "tell the SessionGate admins",
        )

    def _note_policy(self, *, sweep: bool = False) -> None:
        """Write paths and the sweep: record a new verified policy and notify PolicyChanged once per
        change (a conditional write keyed on its digest), and raise the recorded serial to the policy's
        (a policy signed before it is refused from then on). Reads never call this (a GET never writes).
        A rejected policy is notified by the sweep only (once a period, however many calls fail)."""
        verified = self._verified_policy(notify=sweep)
        noted = f"{verified.digest}:{verified.serial}"
        if not sweep and noted == self._recorded_policy:
            return  # (the sweep always asks the table: a change back to an earlier policy counts too)
        try:
            changed = self.store.record_policy(verified, now=self.clock.now())
        except PolicyRejected as exc:  # a newer signed policy was recorded meanwhile
            raise self._rejected(exc, notify=sweep) from None
        if changed:
            bind().warning(
                "approval policy changed", extra={"digest": verified.digest, "source": verified.source}
            )
            metrics().add("PolicyChanged")
            self.notifier.publish(
                "PolicyChanged",
                {
                    "at": to_iso(self.clock.now()),
                    "account": self.settings.account_id,
                    "digest": verified.digest,
                    "source": verified.source,
                    "parameter_version": verified.parameter_version,
                    "rules": verified.summary(),
                },
                subject="SessionGate: the approval policy changed",
            )
        self._recorded_policy = noted

    def _sign(self, approved: Request) -> Request:
        """Bind an APPROVED record with the request API's approval MAC (ApprovalKey)."""
        if self.macs is None or not self.settings.approval_key_id:
            raise ApiError(
                503, "approval_key_unavailable", "SessionGate cannot sign approvals; tell its admins"
            )
        try:
            mac = self.macs.generate(self.settings.approval_key_id, approved.approval_message())
        except MacUnavailable as exc:
            bind().error("approval key unusable", extra={"problem": str(exc)})
            metrics().add("ApprovalKeyErrors")
            raise ApiError(
                503, "approval_key_unavailable", "SessionGate cannot sign approvals; tell its admins"
            ) from None
        return replace(approved, approval_mac=mac)

    def _adapters(self, account: str) -> tuple[Directory, Inventory]:
        """IAM and EC2 of ``account``: SessionGate's own, or a member's through its member role."""
        if account == self.settings.account_id:
            return self.directory, self.inventory
        accounts = self.engine.accounts
        if account not in self.settings.member_accounts or accounts is None:
            raise forbidden(
                "account_not_allowed",
                f"account {account} is neither SessionGate's account nor one of its member accounts",
            )
        try:
            directory, inventory, _ = accounts.adapters(account, self.clock.now())
        except MemberUnavailable as exc:
            bind().error("member account unavailable", extra={"account": account, "problem": str(exc)})
            metrics().add("MemberUnavailable")
            raise ApiError(
                503,
                "member_role_unavailable",
                f"SessionGate cannot act in account {account} (its member role is missing or does not "
                "trust SessionGate); tell the SessionGate admins",
            ) from None
        return directory, inventory

    def _rule_for(
        self, instance_id: str, account: str, inventory: Inventory | None = None
    ) -> tuple[Rule, dict[str, str]]:
        if inventory is None:
            inventory = self._adapters(account)[1]
        instance = inventory.describe(instance_id, check_managed=False)
        if instance is None:
            raise ApiError(
                404, "instance_not_found", f"instance {instance_id} does not exist in account {account}"
            )
        why = excluded_by_tag(instance.tags, self.settings)
        if why:
            raise forbidden("instance_excluded", f"instance {instance_id}: {why}")
        rule = self._policy().rule_for(instance_id, dict(instance.tags))
        if rule is None:
            raise forbidden("no_matching_rule", f"no approval rule covers instance {instance_id}")
        return rule, dict(instance.tags)

    def _current_rule(self, request: Request, *, required: bool) -> Rule | None:
        """The rule that covers the request's instance now (the policy and tags may have changed)."""
        try:
            return self._rule_for(request.instance_id, request.account)[0]
        except ApiError:
            if required:
                raise
            return None

    def _may_review(self, caller: Caller, request: Request, rule: Rule | None) -> bool:
        # A permission, not separation of duties: only the very approver (same_caller), not everyone
        # who may be the same person (a session merely named like an approver is not that approver).
        if any(same_caller(caller.arn, a.approver_arn) for a in request.approvals):
            return True
        return rule is not None and rule.may_review(caller.arn)

    def _view(self, request: Request, rule: Rule | None) -> dict[str, Any]:
        view = request.view()
        if rule is not None and request.status is RequestStatus.PENDING:
            view["approval_progress"] = progress(rule, request.approvals)
        grant = self.engine.ledger.get_grant(request.grant_id) if request.status in LIVE else None
        if grant is not None:
            view["grant"] = {"status": grant.status.value, "expires_at": grant.expires_at, "slot": grant.slot}
        return {"request": view}

    def _notify(self, event_type: str, request: Request, *, rule: Rule | None = None) -> None:
        payload: dict[str, Any] = {
            "at": to_iso(self.clock.now()),
            "request_id": request.request_id,
            "grant_id": request.grant_id,
            "status": request.status.value,
            "account": request.account,
            "instance_id": request.instance_id,
            "principal_arn": request.principal_arn,
            "principal_name": request.principal_name,
            "requester_arn": request.requester_arn,
            "approver_arns": [a.approver_arn for a in request.approvals],
            "duration_minutes": request.duration_minutes,
            "reason": request.reason,
            "ticket": request.ticket,
            "break_glass": request.break_glass,
            "origin": "native",
            "origin_ref": request.request_id,
        }
        if request.extends:
            payload["extends"] = request.extends
        if request.comment:
            payload["comment"] = request.comment
        if rule is not None:
            payload["rule"] = rule.name
            if request.status is RequestStatus.PENDING:
                payload["approval_progress"] = progress(rule, request.approvals)
            level = current_level(rule, request.approvals)
            if level is not None and request.status is RequestStatus.PENDING:
                payload["next_approvers"] = list(rule.levels[level].approvers)
            if request.break_glass:
                payload["notify_approvers"] = sorted({p for lv in rule.levels for p in lv.approvers})
        subject = {
            "AccessRequested": f"SessionGate: approve {request.principal_name} on {request.instance_id}?",
            "ApprovalRecorded": f"SessionGate: more approvals needed for request {request.request_id}",
            "AccessApproved": f"SessionGate: request {request.request_id} approved",
            "AccessRejected": f"SessionGate: request {request.request_id} rejected",
            "AccessRequestCancelled": f"SessionGate: request {request.request_id} cancelled",
            "AccessRequestExpired": f"SessionGate: request {request.request_id} expired unapproved",
            "BreakGlassUsed": f"SessionGate: BREAK-GLASS {request.principal_name} on {request.instance_id}",
        }.get(event_type, f"SessionGate: {event_type}")
        self.notifier.publish(event_type, payload, subject=subject)


@dataclass
class NativeVerifier:
    """Re-checks a native grant at grant time, trusting nothing the requests table alone says.

    The record must be APPROVED, say what the event says, carry the request API's approval MAC
    (ApprovalKey: only the request API role can make one, only this grant role can check one), and its
    approvals must satisfy the rule that covers the instance now, under the current verified policy,
    which must be the rule the request was made and approved under.
    """

    store: RequestStore
    settings: Settings
    policies: PolicySource | None = None
    macs: Macs | None = None

    def verify(self, request: AccessApproved, instance: InstanceFacts | None = None) -> list[Denial]:
        request_id = request_id_of(request.grant_id)
        if request_id is None or request.origin_ref != request_id:
            return [Denial("origin_mismatch", "a native grant id is rq-<request id> and names its request")]
        record = self.store.get(request_id)
        if record is None:
            return [Denial("origin_not_found", f"request {request_id} does not exist")]
        if record.status is not RequestStatus.APPROVED:
            return [
                Denial("origin_not_approved", f"request {request_id} is {record.status.value}, not APPROVED")
            ]
        differing = disagreements(record, request)
        # The approval's time decides whether it is stale (approval_stale) and when the access starts:
        # it is the record's, never the event's (a hand-made event could revive an old approval).
        approved_at = parse_iso(record.approved_at) if record.approved_at else None
        if request.approved_at != approved_at or request.not_before != approved_at:
            differing.append("approved_at")
        if differing:
            return [
                Denial("origin_mismatch", f"the event disagrees with request {request_id} on {differing}")
            ]
        if record.break_glass:
            if record.approver_arns != (self.settings.break_glass_approver_arn,) or not any(
                a.level == -1 and same_caller(a.approver_arn, record.requester_arn) for a in record.approvals
            ):
                return [
                    Denial("origin_mismatch", f"break-glass request {request_id} is not recorded as such")
                ]
        elif record.approver_arns != tuple(a.approver_arn for a in record.approvals):
            return [Denial("origin_mismatch", f"request {request_id}'s approvers of record are inconsistent")]
        signed = self._signed(record)
        if signed:
            return [signed]
        return self._rule_holds(record, instance)

    def _signed(self, record: Request) -> Denial | None:
        if not record.approval_mac:
            return Denial("approval_not_signed", f"request {record.request_id} carries no approval signature")
        if self.macs is None or not self.settings.approval_key_id:
            return Denial("approval_not_signed", "no approval key is configured to verify the approval")
        try:
            valid = self.macs.verify(
                self.settings.approval_key_id, record.approval_message(), record.approval_mac
            )
        except MacUnavailable as exc:
            return Denial("approval_not_signed", f"the approval signature cannot be checked: {exc}")
        if not valid:
            return Denial(
                "approval_not_signed",
                f"request {record.request_id}'s approval was not signed by SessionGate's request API",
            )
        return None

    def _rule_holds(self, record: Request, instance: InstanceFacts | None) -> list[Denial]:
        if self.policies is None:
            return [Denial("policy_rejected", "no approval policy is configured to re-check the approval")]
        try:
            policy = self.policies.get()
        except PolicyError as exc:
            return [Denial("policy_rejected", f"the approval policy cannot be used: {exc}"[:500])]
        if instance is None:
            return [Denial("instance_not_found", f"instance {record.instance_id} does not exist")]
        rule = policy.rule_for(record.instance_id, dict(instance.tags))
        if rule is None or rule.name != record.rule:
            now = "no rule" if rule is None else f"rule {rule.name!r}"
            return [
                Denial(
                    "rule_changed",
                    f"request {record.request_id} was approved under rule {record.rule!r}; the instance "
                    f"now falls under {now}",
                )
            ]
        why = approvals_satisfy(rule, record, break_glass_approver=self.settings.break_glass_approver_arn)
        if why:
            return [Denial("approval_insufficient", why)]
        return []
