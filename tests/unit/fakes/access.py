"""In-memory fakes for the native front door: the requests table, the policy source, the bus's and
notifier's records (a request's lifecycle events come from the store's changes, as from the table's
stream) and KMS MACs; :func:`world` builds a NativeService next to the REAL grant core
(``Engine`` on the core's fakes, ``tests/unit/fakes/core.py``), so grants come from the real code.

:class:`FakeRequestStore` behaves like ``adapters.request_store.RequestStore`` on DynamoDB (checked by
``tests/integration/test_access_contract.py``): ``create`` is ``attribute_not_exists(request_id)``,
``replace`` writes the next version conditional on the stored ``version`` (DynamoDB's
ConditionalCheckFailedException becomes ``False``), ``create_extension`` is one transaction of both
(all or nothing, as TransactWriteItems), the quota is a versioned item, the recorded policy serial
never goes down (an older one is :class:`PolicyRejected`); reads return what was written.
It counts every write, so a test can prove that a read writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.access_requests.groups import Membership, bind
from sessiongate.access_requests.policy import (
    ApprovalPolicy,
    PolicyError,
    VerifiedPolicy,
    check_serial,
    policy_digest,
)
from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.access_requests.service import NativeService
from sessiongate.access_requests.verifier import NativeVerifier
from sessiongate.clock import ManualClock, to_iso
from sessiongate.core.engine import Engine
from sessiongate.core.model import AccessApproved, GrantStatus, Origin, Outcome
from sessiongate.outbox import request_events
from tests.unit.fakes.core import CoreWorld, FakeBus, FakeDirectory, FakeInventory, FakeLedger

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
    # The table's stream consumer: each landed change's lifecycle events (sessiongate.outbox) go here.
    outbox: FakeNotifier | None = None

    def _changed(self, old: Request | None, new: Request) -> None:
        if self.outbox is not None:
            for event in request_events(old, new):
                self.outbox.publish(event.event_type, event.payload, subject=event.subject)

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
        self._changed(None, request)
        return True

    def replace(self, request: Request, *, expected_version: int) -> bool:
        if request.version != expected_version + 1:
            raise ValueError("replace() needs the next version of the record")
        self._write(f"replace {request.request_id}")
        current = self.items.get(request.request_id)
        if current is None or current.version != expected_version:
            return False
        self.items[request.request_id] = request
        self._changed(current, request)
        return True

    def create_extension(self, parent: Request, *, expected_version: int, child: Request) -> bool:
        self._write(f"extend {parent.request_id}")
        current = self.items.get(parent.request_id)
        if current is None or current.version != expected_version or child.request_id in self.items:
            return False
        self.items[parent.request_id] = parent
        self.items[child.request_id] = child
        self._changed(current, parent)
        self._changed(None, child)
        return True

    def take_quota(self, key: str, *, now: datetime, window: timedelta, limit: int) -> int | None:
        self._write(f"quota {key}")
        recent = [u for u in self.quotas.get(key, []) if u > to_iso(now - window)]
        if len(recent) >= limit:
            return None
        self.quotas[key] = [*recent, to_iso(now)]
        return len(recent)

    def record_policy(self, policy: VerifiedPolicy, *, now: datetime) -> bool:
        """As the adapter: refuse a serial older than the recorded one, raise the recorded serial, and
        answer whether the digest changed."""
        serial, highest = policy.serial, self.serial
        if serial is not None and highest is not None:
            check_serial(policy.source, serial, highest)
        raises = serial is not None and (highest is None or serial > highest)
        changed = policy.digest != self.policy_digest
        if changed or raises:
            self._write("policy")
            self.policy_digest = policy.digest
            if raises:
                self.serial = serial
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
    serial: int | None = None  # the envelope's signed serial (None: the stack default)
    groups: Membership | None = None  # answers the policy's Identity Center groups (as PolicySource)
    served: tuple[str, ...] = (ACCOUNT,)  # the engine account and MemberAccounts (as PolicySource)

    def verified(self) -> VerifiedPolicy:
        if self.broken:
            raise PolicyError(self.broken)
        digest = policy_digest(self.document)
        parsed = bind(ApprovalPolicy.parse(self.document), self.groups, self.served)
        return VerifiedPolicy(parsed, digest, "test", None, self.serial)

    def get(self) -> ApprovalPolicy:
        return self.verified().policy


@dataclass
class FakeNotifier:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(
        self, event_type: str, payload: dict[str, Any], *, subject: str = "", event_id: str | None = None
    ) -> None:
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
class World:
    """A NativeService and the real grant core (``Engine``) over the fakes, for one test.

    The service and the engine share the account's IAM and EC2 (``directory``, ``inventory``: the
    core's fakes), the clock and the requests table; the engine re-checks every native approval with
    the real :class:`NativeVerifier` over that table, the policy and the MAC key. ``core`` holds the
    engine, its ledger, schedules and notifier.
    """

    service: NativeService
    store: FakeRequestStore
    policies: FakePolicies
    inventory: FakeInventory
    directory: FakeDirectory
    bus: FakeBus
    notifier: FakeNotifier
    core: CoreWorld
    clock: ManualClock

    @property
    def engine(self) -> Engine:
        return self.core.engine

    @property
    def ledger(self) -> FakeLedger:
        return self.core.ledger

    def instance(self, instance_id: str = "i-0123456789abcdef0", **tags: str) -> str:
        self.inventory.add(instance_id, tags=tags)
        return instance_id

    def grant(self, event: AccessApproved | None = None) -> Outcome:
        """What the engine does with an emitted approval (the last one by default): the real grant."""
        return self.engine.grant((event or self.bus.emitted[-1]).to_detail())

    def grant_status(self, request_id: str) -> GrantStatus | None:
        return self.core.status(f"rq-{request_id}")


def world(policy: dict[str, Any], *, groups: Membership | None = None, **settings: Any) -> World:
    config = {
        "requests_table": "requests",
        "break_glass_approver_arn": API_ROLE,
        "approval_key_id": "approval-key",
        **settings,
    }
    engine = CoreWorld(**config)
    assert engine.settings.account_id == ACCOUNT
    clock = engine.clock
    clock.set(START)
    engine.inventory.instances.clear()  # a test adds its instances (World.instance)
    # The requesters and approvers of the tests exist in IAM (alice was added by CoreWorld).
    for user in ("bob", "carol", "dave", "eve"):
        engine.directory.add("user", user)
    ids = iter(f"{n:032x}" for n in range(1, 10_000))
    store, policies, macs = FakeRequestStore(), FakePolicies(policy, groups=groups), FakeMacs()
    # As the wiring: Identity Center sessions count from the engine account and MemberAccounts only.
    policies.served = (engine.settings.account_id, *engine.settings.member_accounts)
    # As after a deploy: the first sweep has recorded the policy in effect (no PolicyChanged in tests).
    store.policy_digest = policy_digest(policy)

    def request_item(key: Mapping[str, str]) -> Mapping[str, str] | None:
        found = store.items.get(key["request_id"])
        return None if found is None else {"status": found.status.value, "approval_mac": found.approval_mac}

    engine.ledger.tables["requests"] = request_item
    engine.engine.verifiers = {
        Origin.CHANGE_MANAGER: engine.verifier,
        Origin.NATIVE: NativeVerifier(store, engine.settings, policies, macs),  # type: ignore[arg-type]
    }
    parts: dict[str, Any] = {
        "store": store,
        "policies": policies,
        "inventory": engine.inventory,
        "directory": engine.directory,
        "bus": FakeBus(),
        "notifier": FakeNotifier(),
    }
    store.outbox = parts["notifier"]
    service = NativeService(
        settings=engine.settings,
        clock=clock,
        macs=macs,  # type: ignore[arg-type]
        ids=lambda: next(ids),
        engine=engine.engine,  # the real grant core satisfies the front door's GrantCore port
        **parts,
    )
    return World(service=service, clock=clock, core=engine, **parts)
