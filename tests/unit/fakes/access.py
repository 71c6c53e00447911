"""In-memory fakes for the native front door: the request store, policy, IAM/EC2, bus, notifier, KMS
and the engine's grant ledger and revoke (a port here).

:class:`FakeRequestStore` behaves like ``adapters.request_store.RequestStore`` on DynamoDB: ``create`` is
``attribute_not_exists(request_id)``, ``replace`` is conditional on the stored ``version`` (DynamoDB's
ConditionalCheckFailedException becomes ``False``), ``create_extension`` is one transaction of both
(all or nothing, as TransactWriteItems), the quota is a versioned item; reads return what was written.
It counts every write, so a test can prove that a read writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError, VerifiedPolicy, policy_digest
from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.access_requests.service import NativeService
from sessiongate.clock import ManualClock, to_iso
from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import AccessApproved, Grant, GrantStatus, Outcome
from sessiongate.settings import Settings

ACCOUNT = "123456789012"
START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/sessiongate-request-api"


@dataclass
class FakeRequestStore:
    items: dict[str, Request] = field(default_factory=dict)
    quotas: dict[str, list[str]] = field(default_factory=dict)
    policy_digest: str | None = None
    serial: int | None = None
    writes: list[str] = field(default_factory=list)
    # Called before a conditional write lands: a test makes another writer win the race here.
    before_write: Callable[[str], None] | None = None

    def _write(self, what: str) -> None:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(what)
        self.writes.append(what)

    def get(self, request_id: str) -> Request | None:
        return self.items.get(request_id)

    def create(self, request: Request) -> bool:
        self._write(f"create {request.request_id}")
        if request.request_id in self.items:
            return False
        self.items[request.request_id] = request
        return True

    def replace(self, request: Request, *, expected_version: int) -> bool:
        self._write(f"replace {request.request_id}")
        current = self.items.get(request.request_id)
        if current is None or current.version != expected_version:
            return False
        self.items[request.request_id] = request
        return True

    def create_extension(self, parent: Request, *, expected_version: int, child: Request) -> bool:
        self._write(f"extend {parent.request_id}")
        current = self.items.get(parent.request_id)
        if current is None or current.version != expected_version or child.request_id in self.items:
            return False
        self.items[parent.request_id] = parent
        self.items[child.request_id] = child
        return True

    def take_quota(self, key: str, *, now: datetime, window: timedelta, limit: int) -> int | None:
        self._write(f"quota {key}")
        recent = [u for u in self.quotas.get(key, []) if u > to_iso(now - window)]
        if len(recent) >= limit:
            return None
        self.quotas[key] = [*recent, to_iso(now)]
        return len(recent)

    def record_policy(self, policy: VerifiedPolicy, *, now: datetime) -> bool:
        changed = policy.digest != self.policy_digest
        if changed:
            self._write("policy")
            self.policy_digest = policy.digest
        return changed

    def policy_serial(self) -> int | None:
        return self.serial

    def by_requester(self, requester_arn: str, *, limit: int) -> list[Request]:
        mine = [r for r in self.items.values() if r.requester_arn == requester_arn]
        return sorted(mine, key=lambda r: r.created_at, reverse=True)[:limit]

    def pending(self, *, limit: int, oldest_first: bool = False) -> list[Request]:
        return self._indexed(RequestStatus.PENDING, limit, oldest_first)

    def approved(self, *, limit: int) -> list[Request]:
        return self._indexed(RequestStatus.APPROVED, limit, True)

    def _indexed(self, status: RequestStatus, limit: int, oldest_first: bool) -> list[Request]:
        found = [r for r in self.items.values() if r.status is status]
        return sorted(found, key=lambda r: r.created_at, reverse=not oldest_first)[:limit]


@dataclass
class FakePolicies:
    document: dict[str, Any]
    broken: str = ""  # a PolicyError message: the policy is unusable

    def verified(self) -> VerifiedPolicy:
        if self.broken:
            raise PolicyError(self.broken)
        return VerifiedPolicy(ApprovalPolicy.parse(self.document), policy_digest(self.document), "test")

    def get(self) -> ApprovalPolicy:
        return self.verified().policy


@dataclass
class FakeInventory:
    instances: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> tags

    def describe(self, instance_id: str, *, check_managed: bool = True) -> InstanceFacts | None:
        tags = self.instances.get(instance_id)
        return None if tags is None else InstanceFacts(instance_id, "running", dict(tags))


@dataclass
class FakeDirectory:
    missing: set[str] = field(default_factory=set)

    def get_principal(self, kind: PrincipalType, name: str) -> PrincipalFacts | None:
        if name in self.missing:
            return None
        return PrincipalFacts(f"arn:aws:iam::{ACCOUNT}:{kind.value}/{name}", name, "/", kind.value)


@dataclass
class FakeBus:
    emitted: list[AccessApproved] = field(default_factory=list)

    def emit_approved(self, event: AccessApproved) -> None:
        self.emitted.append(event)


@dataclass
class FakeNotifier:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, event_type: str, payload: dict[str, Any], *, subject: str = "") -> None:
        self.sent.append((event_type, payload))

    @property
    def types(self) -> list[str]:
        return [t for t, _ in self.sent]


class FakeMacs:
    """KMS GenerateMac/VerifyMac with HMAC_SHA_256 under one secret per key id."""

    def generate(self, key_id: str, message: bytes) -> str:
        return hmac.new(key_id.encode(), message, hashlib.sha256).hexdigest()

    def verify(self, key_id: str, message: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.generate(key_id, message), mac)


@dataclass
class FakeLedger:
    grants: dict[str, Grant] = field(default_factory=dict)
    tombstones: dict[str, str] = field(default_factory=dict)

    def get_grant(self, grant_id: str) -> Grant | None:
        return self.grants.get(grant_id)

    def request_revoke(self, grant_id: str, *, at: str, reason: str, by: str) -> None:
        self.tombstones.setdefault(grant_id, reason)


@dataclass
class FakeEngine:
    """The grant core as the front door sees it: its ledger, no member accounts, and revoke."""

    clock: ManualClock
    ledger: FakeLedger = field(default_factory=FakeLedger)
    accounts: None = None
    revoked: list[tuple[str, str]] = field(default_factory=list)

    def grant(self, event: AccessApproved, status: GrantStatus = GrantStatus.ACTIVE) -> Grant:
        """What the engine does with an emitted approval (tests call it to play the grant)."""
        now = self.clock.now()
        grant = Grant(
            grant_id=event.grant_id,
            status=status,
            origin="native",
            origin_ref=event.origin_ref,
            account=event.account,
            instance_id=event.instance_id,
            principal_type=event.principal_type.value,
            principal_name=event.principal_name,
            principal_arn=f"arn:aws:iam::{event.account}:{event.principal_type.value}/{event.principal_name}",
            requester_arn=event.requester_arn,
            approver_arns=list(event.approver_arns),
            duration_minutes=event.duration_minutes,
            created_at=to_iso(now),
            expires_at=to_iso(now + timedelta(minutes=event.duration_minutes)),
        )
        self.ledger.grants[grant.grant_id] = grant
        return grant

    def revoke(self, grant_id: object, *, reason: str = "expired", by: str = "scheduler") -> Outcome:
        assert isinstance(grant_id, str)
        self.revoked.append((grant_id, reason))
        grant = self.ledger.grants[grant_id]
        self.ledger.grants[grant_id] = replace(
            grant,
            status=GrantStatus.REVOKED,
            revoked_at=to_iso(self.clock.now()),
            revoke_reason=reason,
            revoked_by=by,
        )
        return Outcome("revoked", grant_id)


@dataclass
class World:
    """A NativeService over the fakes, and the fakes, for one test."""

    service: NativeService
    store: FakeRequestStore
    policies: FakePolicies
    inventory: FakeInventory
    directory: FakeDirectory
    bus: FakeBus
    notifier: FakeNotifier
    engine: FakeEngine
    clock: ManualClock

    def instance(self, instance_id: str = "i-0123456789abcdef0", **tags: str) -> str:
        self.inventory.instances[instance_id] = tags
        return instance_id


def world(policy: dict[str, Any], **settings: Any) -> World:
    clock = ManualClock(START)
    ids = iter(f"{n:032x}" for n in range(1, 10_000))
    parts = {
        "store": FakeRequestStore(),
        "policies": FakePolicies(policy),
        "inventory": FakeInventory(),
        "directory": FakeDirectory(),
        "bus": FakeBus(),
        "notifier": FakeNotifier(),
        "engine": FakeEngine(clock),
    }
    config = Settings(
        account_id=ACCOUNT,
        requests_table="requests",
        break_glass_approver_arn=API_ROLE,
        approval_key_id="approval-key",
        **settings,
    )
    # As after a deploy: the first sweep has recorded the policy in effect (no PolicyChanged in tests).
    parts["store"].policy_digest = policy_digest(policy)  # type: ignore[attr-defined]
    service = NativeService(
        settings=config,
        clock=clock,
        macs=FakeMacs(),
        ids=lambda: next(ids),
        **parts,  # type: ignore[arg-type]
    )
    return World(service=service, clock=clock, **parts)  # type: ignore[arg-type]
