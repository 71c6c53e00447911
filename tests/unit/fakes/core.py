"""In-memory fakes of the grant core's ports (``sessiongate.core.ports``), for the fast unit tier.

They keep the real adapters' rules, checked against moto by ``tests/integration/test_core_contract.py``:
- Ledger: every write conditional as in ``adapters/ledger.py`` (create-if-absent, one slot per grant,
  a slot released only by its holder, the tombstone that keeps a grant from going live, reads that
  return copies, never the stored record).
- Directory: IAM's 50-tag limit per principal (``LimitExceeded`` -> TagLimitExceeded), tag keys
  compared case-insensitively, tag values of IAM's pattern, roles of IAM Identity Center unmodifiable
  (``UnmodifiableEntity`` -> PrincipalUnmodifiable, and nothing to untag), a deleted principal
  (``NoSuchEntity`` -> PrincipalGone on tag, ``False`` on untag).
- Schedules: deterministic names (``ConflictException`` -> ``False``), Scheduler's name pattern.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sessiongate.adapters.ledger import LIVE_SHARDS, usage_partition
from sessiongate.clock import ManualClock, to_iso
from sessiongate.core import slots
from sessiongate.core.binding import lock_scope
from sessiongate.core.engine import Engine
from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts, valid_tag_value
from sessiongate.core.identity import Identity, PrincipalType, parse_identity, same_principal
from sessiongate.core.model import AccessApproved, Denial, Grant, GrantStatus, Origin, Outcome
from sessiongate.core.ports import (
    Condition,
    InstanceGone,
    MemberUnavailable,
    Opened,
    PrincipalGone,
    PrincipalUnmodifiable,
    RevokeRequest,
    ServiceFailure,
    TagLimitExceeded,
)
from sessiongate.core.session_logging import Preferences, PreferencesUnreadable
from sessiongate.errors import TransientError
from sessiongate.outbox import grant_events
from sessiongate.settings import Settings

LIVE = (GrantStatus.PROVISIONING, GrantStatus.ACTIVE)
# IAM Identity Center's roles: only AWS may modify them (IAM answers UnmodifiableEntity).
RESERVED_SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
# Scheduler schedule names: ^[0-9a-zA-Z-_.]+$, 1 to 64 characters (Scheduler API Reference, CreateSchedule).
SCHEDULE_NAME_RE = re.compile(r"^[0-9a-zA-Z_.-]{1,64}$")


@dataclass
class Slot:
    holder: str
    instance_id: str = ""
    expires_at: str = ""


class FakeLedger:
    def __init__(self) -> None:
        self.grants: dict[str, Grant] = {}
        self.tombstones: dict[str, RevokeRequest] = {}
        self.slots: dict[tuple[str, int], Slot] = {}
        self.batch_gets = 0  # BatchGetItem calls the real adapter would make
        self.live_reads = 0  # live_grants() calls (each: a Query per index partition)
        # The table's stream consumer: each landed change's lifecycle events (sessiongate.outbox) go here.
        self.outbox: FakeNotifier | None = None
        # Other tables a ConditionCheck may name: table -> (key -> the item's string attributes or None).
        self.tables: dict[str, Callable[[Mapping[str, str]], Mapping[str, str] | None]] = {}
        # The index partition of revoked grants (adapters/ledger.py): "USAGE" until their sessions are
        # recorded, then "DAY#<revocation date>".
        self.usage: dict[str, str] = {}

    def _changed(self, grant_id: str, before: Grant | None) -> None:
        if self.outbox is not None:
            for event in grant_events(before, self.grants.get(grant_id)):
                self.outbox.publish(event.event_type, event.payload, subject=event.subject)

    # -- reads ------------------------------------------------------------------------------
    def get_grant(self, grant_id: str) -> Grant | None:
        stored = self.grants.get(grant_id)
        return copy.deepcopy(stored) if stored is not None else None

    def revoke_request(self, grant_id: str) -> RevokeRequest | None:
        return self.tombstones.get(grant_id)

    def slot_holder(self, principal_arn: str, slot: int) -> str | None:
        held = self.slots.get((principal_arn, slot))
        return held.holder if held else None

    def slot_holders(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """BatchGetItem reads at most 100 keys per call, and refuses duplicate keys (DynamoDB API
        Reference, "BatchGetItem": ValidationException); the adapter asks in chunks of distinct keys."""
        wanted = list(dict.fromkeys(keys))
        self.batch_gets += -(-len(wanted) // 100)
        return {k: self.slots[k].holder for k in wanted if k in self.slots}

    def get_grants(self, grant_ids: Iterable[str]) -> dict[str, Grant]:
        wanted = list(dict.fromkeys(grant_ids))
        self.batch_gets += -(-len(wanted) // 100)
        return {g: copy.deepcopy(self.grants[g]) for g in wanted if g in self.grants}

    def live_grants(self, *, expiring_before: str | None = None) -> list[Grant]:
        self.live_reads += 1
        live = [g for g in self.grants.values() if g.status in LIVE]
        if expiring_before is not None:
            live = [g for g in live if (g.expires_at or g.created_at) < expiring_before]
        return [copy.deepcopy(g) for g in sorted(live, key=lambda g: g.expires_at or g.created_at)]

    # -- writes -----------------------------------------------------------------------------
    def create(self, grant: Grant) -> bool:
        if grant.grant_id in self.grants:
            return False
        if grant.status in LIVE and grant.grant_id in self.tombstones:
            return False
        # PutItem replaces the whole item: a record that is not live replaces a lone tombstone.
        self.tombstones.pop(grant.grant_id, None)
        stored = copy.deepcopy(grant)
        if stored.status in LIVE:
            # The live-by-expiry index needs a sort key: a record without expiry yet stores its creation.
            stored.expires_at = stored.expires_at or stored.created_at
        self.grants[grant.grant_id] = stored
        self._changed(grant.grant_id, None)
        return True

    def grant_and_holder(
        self, grant_id: str, principal_arn: str, slot: int
    ) -> tuple[Grant | None, str | None]:
        self.batch_gets += 1
        return self.get_grant(grant_id), self.slot_holder(principal_arn, slot)

    def open(self, grant: Grant, conditions: Iterable[Condition] = ()) -> Opened:
        """One TransactWriteItems: the record if no item of the id exists, the lock if the slot is free,
        the origin's ConditionChecks (items of ``tables``, see there); an existing record or a lone
        tombstone is reported first, then the conditions', then the lock's (DynamoDB API Reference,
        "TransactWriteItems": ``CancellationReasons`` in item order)."""
        assert grant.slot is not None
        if grant.grant_id in self.grants:
            return Opened(existing=copy.deepcopy(self.grants[grant.grant_id]))
        if grant.grant_id in self.tombstones:
            return Opened(revoke_requested=self.tombstones[grant.grant_id])
        for condition in conditions:
            reader = self.tables.get(condition.table)
            assert reader is not None, f"no table {condition.table} (ResourceNotFoundException)"
            item = reader(condition.key)
            if item is None or any(item.get(k) != v for k, v in condition.equals.items()):
                seen = None if item is None else {k: item.get(k, "") for k in condition.equals}
                return Opened(unmet=condition.unmet(seen))
        if (lock_scope(grant), grant.slot) in self.slots:
            return Opened(slot_taken=True)
        self.grants[grant.grant_id] = copy.deepcopy(grant)
        self.slots[(lock_scope(grant), grant.slot)] = Slot(
            grant.grant_id, grant.instance_id, grant.expires_at or ""
        )
        self._changed(grant.grant_id, None)
        return Opened(created=True)

    def rebind(self, grant: Grant, activated_at: str) -> bool:
        record = self.grants.get(grant.grant_id)
        if (
            record is None
            or record.status is not GrantStatus.ACTIVE
            or record.activated_at != grant.activated_at
            or grant.grant_id in self.tombstones
        ):
            return False
        record.activated_at = grant.activated_at = activated_at
        return True

    def release_slot(self, principal_arn: str, slot: int, grant_id: str) -> None:
        if self.slot_holder(principal_arn, slot) == grant_id:
            del self.slots[(principal_arn, slot)]

    def request_revoke(self, grant_id: str, *, at: str, reason: str, by: str) -> None:
        self.tombstones.setdefault(grant_id, RevokeRequest(at, reason, by))

    def mark_denied(self, grant: Grant, denials: list[dict[str, str]], *, at: str | None = None) -> bool:
        record = self.grants.get(grant.grant_id)
        if record is None or record.status not in LIVE or record.activated_at != grant.activated_at:
            return False
        before = copy.deepcopy(record)
        record.status, record.denials, record.denied_at = GrantStatus.DENIED, copy.deepcopy(denials), at
        grant.status, grant.denials, grant.denied_at = GrantStatus.DENIED, denials, at
        self._changed(grant.grant_id, before)
        return True

    def lock_free_slot(self, principal_arn: str, slot: int, holder: str) -> bool:
        if (principal_arn, slot) in self.slots:
            return False
        self.slots[(principal_arn, slot)] = Slot(holder)
        return True

    def complete_revoke(self, grant: Grant, *, at: str, reason: str, by: str, release_slot: bool) -> bool:
        record = self.grants.get(grant.grant_id)
        if record is None or record.status not in LIVE or record.activated_at != grant.activated_at:
            return False
        frees = release_slot and grant.slot is not None
        if frees and self.slot_holder(lock_scope(grant), grant.slot or 0) != grant.grant_id:
            # The transaction's second item failed: cancelled, not a lost race on the record.
            raise TransientError(f"revoke of {grant.grant_id} cancelled: ['None', 'ConditionalCheckFailed']")
        before = copy.deepcopy(record)
        record.status, record.revoked_at, record.revoke_reason, record.revoked_by = (
            GrantStatus.REVOKED,
            at,
            reason,
            by,
        )
        if frees:
            del self.slots[(lock_scope(grant), grant.slot or 0)]
        self.usage[grant.grant_id] = "USAGE"
        grant.status, grant.revoked_at, grant.revoke_reason = GrantStatus.REVOKED, at, reason
        self._changed(grant.grant_id, before)
        return True

    # -- usage ------------------------------------------------------------------------------
    def usage_pending(self, *, limit: int, rotation: int | None = None) -> list[Grant]:
        pending = [gid for gid, state in self.usage.items() if state == "USAGE"]
        if rotation is not None:  # the real ledger's USAGE#<n> shards: read one
            pending = [gid for gid in pending if usage_partition(gid) == f"USAGE#{rotation % LIVE_SHARDS}"]
        pending.sort(key=lambda gid: self.grants[gid].expires_at or "")  # the index's sort key
        found = self.get_grants(pending[:limit]).values()
        return sorted(
            (g for g in found if g.status is GrantStatus.REVOKED),
            key=lambda g: (g.revoked_at or "", g.grant_id),
        )

    def record_usage(
        self,
        grant: Grant,
        *,
        sessions: list[dict[str, str]] | None,
        at: str,
        unknown: str | None = None,
        session_count: int | None = None,
    ) -> bool:
        if self.usage.get(grant.grant_id) != "USAGE":
            return False
        record = self.grants[grant.grant_id]
        before = copy.deepcopy(record)
        assert record.revoked_at is not None
        self.usage[grant.grant_id] = f"DAY#{record.revoked_at[:10]}"
        record.sessions = copy.deepcopy(sessions)
        record.usage_recorded_at, record.usage_unknown = at, unknown
        grant.sessions, grant.usage_recorded_at, grant.usage_unknown = sessions, at, unknown
        record.session_count = grant.session_count = session_count
        self._changed(grant.grant_id, before)
        return True

    def ended_between(self, start: str, end: str) -> list[Grant]:
        wanted = [gid for gid in self.usage if start <= (self.grants[gid].revoked_at or "") < end]
        return sorted(self.get_grants(wanted).values(), key=lambda g: (g.revoked_at or "", g.grant_id))


@dataclass
class Principal:
    kind: PrincipalType
    name: str
    arn: str
    path: str = "/"
    id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    unmodifiable: bool = False  # IAM answers UnmodifiableEntity to every write on it


class FakeDirectory:
    """IAM of one account: users and roles with tags, and who holds which managed policy."""

    TAG_LIMIT = slots.IAM_TAG_LIMIT

    def __init__(self, account: str = "123456789012", partition: str = "aws") -> None:
        self.account = account
        self.partition = partition
        self.principals: dict[tuple[PrincipalType, str], Principal] = {}
        self.policies: dict[str, set[tuple[PrincipalType, str]]] = {}
        self.writes: list[tuple[str, str, tuple[str, ...]]] = []  # (tag|untag, name, keys)
        self.authorization_detail_reads = 0

    # -- set-up ------------------------------------------------------------------------------
    def add(
        self,
        kind: PrincipalType | str,
        name: str,
        *,
        path: str = "/",
        tags: Mapping[str, str] | None = None,
        unmodifiable: bool | None = None,
    ) -> str:
        """Add a user or role; a role under IAM Identity Center's path is unmodifiable unless told."""
        kind = PrincipalType(kind)
        arn = f"arn:{self.partition}:iam::{self.account}:{kind.value}{path}{name}"
        unique = ("AIDA" if kind is PrincipalType.USER else "AROA") + f"{len(self.principals) + 1:017d}"
        if unmodifiable is None:
            unmodifiable = kind is PrincipalType.ROLE and path.startswith(RESERVED_SSO_PATH)
        self.principals[(kind, name)] = Principal(
            kind, name, arn, path, unique, dict(tags or {}), unmodifiable
        )
        return arn

    def delete(self, kind: PrincipalType | str, name: str) -> None:
        del self.principals[(PrincipalType(kind), name)]

    def attach(self, policy_arn: str, kind: PrincipalType | str, name: str) -> None:
        self.policies.setdefault(policy_arn, set()).add((PrincipalType(kind), name))

    def tags_of(self, kind: PrincipalType | str, name: str) -> dict[str, str]:
        return dict(self.principals[(PrincipalType(kind), name)].tags)

    # -- the port ----------------------------------------------------------------------------
    def get_principal(self, kind: PrincipalType, name: str) -> PrincipalFacts | None:
        found = self.principals.get((kind, name))
        if found is None:
            return None
        return PrincipalFacts(found.arn, found.name, found.path, kind.value, dict(found.tags), found.id)

    def all_principals(self) -> list[PrincipalFacts]:
        """GetAccountAuthorizationDetails (Filter User, Role): every user and role with its tags."""
        self.authorization_detail_reads += 1
        return [
            PrincipalFacts(p.arn, p.name, p.path, p.kind.value, dict(p.tags), p.id)
            for p in self.principals.values()
        ]

    def tag(self, kind: PrincipalType, name: str, tags: Mapping[str, str]) -> None:
        found = self.principals.get((kind, name))
        if found is None:
            raise PrincipalGone(name)
        if found.unmodifiable:
            raise PrincipalUnmodifiable(name)
        if not all(valid_tag_value(v) and len(v) <= 256 for v in tags.values()):
            raise ServiceFailure("1 validation error detected: tag value", code="ValidationError")
        merged = dict(found.tags)
        for key, value in tags.items():
            # Keys compared case-insensitively, as slots.py models IAM: the first spelling stays.
            same = next((k for k in merged if k.lower() == key.lower()), key)
            merged[same] = value
        if len(merged) > self.TAG_LIMIT:
            raise TagLimitExceeded(name)
        found.tags = merged
        self.writes.append(("tag", name, tuple(tags)))

    def untag(self, kind: PrincipalType, name: str, keys: Iterable[str]) -> bool:
        found = self.principals.get((kind, name))
        if found is None or found.unmodifiable:
            return False
        lowered = {k.lower() for k in keys}
        found.tags = {k: v for k, v in found.tags.items() if k.lower() not in lowered}
        self.writes.append(("untag", name, tuple(sorted(lowered))))
        return True


class FakeInventory:
    """EC2 (and SSM's managed-node view) of one account. Instance tags as EC2 keeps them: keys are
    case-sensitive (two spellings are two tags), at most 50 user tags per instance (``aws:`` tags do not
    count; ``TagLimitExceeded`` -> TagLimitExceeded, nothing written), CreateTags/DeleteTags on a missing
    instance ``InvalidInstanceID.NotFound`` (-> InstanceGone / ``False``), and DeleteTags with a value
    removes a tag only while it has that value ("Tag your Amazon EC2 resources"; EC2 API Reference,
    "DeleteTags")."""

    TAG_LIMIT = slots.EC2_TAG_LIMIT

    def __init__(self) -> None:
        self.instances: dict[str, InstanceFacts] = {}
        self.writes: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []  # (tag|untag, id, tags)

    def tags_of(self, instance_id: str) -> dict[str, str]:
        return dict(self.instances[instance_id].tags)

    def add(
        self,
        instance_id: str,
        *,
        state: str = "running",
        tags: Mapping[str, str] | None = None,
        managed: bool = True,
    ) -> None:
        self.instances[instance_id] = InstanceFacts(instance_id, state, dict(tags or {}), managed)

    def describe(self, instance_id: str, *, check_managed: bool) -> InstanceFacts | None:
        found = self.instances.get(instance_id)
        if found is None:
            return None
        return found if check_managed else replace(found, ssm_managed=None)

    def tag_instance(self, instance_id: str, tags: Mapping[str, str]) -> None:
        found = self.instances.get(instance_id)
        if found is None or found.state == "terminated":
            raise InstanceGone(instance_id)
        merged = {**found.tags, **tags}
        if sum(1 for k in merged if not k.lower().startswith("aws:")) > self.TAG_LIMIT:
            raise TagLimitExceeded(instance_id)
        self.instances[instance_id] = replace(found, tags=merged)
        self.writes.append(("tag", instance_id, tuple(tags.items())))

    def untag_instance(self, instance_id: str, tags: Mapping[str, str]) -> bool:
        found = self.instances.get(instance_id)
        if found is None or found.state == "terminated":
            return False
        kept = {k: v for k, v in found.tags.items() if tags.get(k, object()) != v}
        self.instances[instance_id] = replace(found, tags=kept)
        self.writes.append(("untag", instance_id, tuple(tags.items())))
        return True

    def tagged_instances(self) -> list[InstanceFacts]:
        return [replace(i, ssm_managed=None) for i in self.instances.values() if i.state != "terminated"]


@dataclass
class Schedule:
    when: datetime
    target_arn: str
    payload: dict[str, Any]


class FakeSchedules:
    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self.deleted: list[str] = []

    def create_once(self, name: str, when: datetime, target_arn: str, payload: dict[str, Any]) -> bool:
        if not SCHEDULE_NAME_RE.fullmatch(name):
            raise ServiceFailure(f"invalid schedule name {name!r}", code="ValidationException")
        if name in self.schedules:
            return False
        self.schedules[name] = Schedule(when, target_arn, copy.deepcopy(payload))
        return True

    def exists(self, name: str) -> bool:
        return name in self.schedules

    def delete(self, name: str) -> bool:
        if self.schedules.pop(name, None) is None:
            return False
        self.deleted.append(name)
        return True


class FakeNotifier:
    """Best effort like SNS through the adapter: ``fail`` loses every notification, never raises."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], str]] = []
        self.fail = False

    def publish(
        self, event_type: str, payload: Mapping[str, Any], *, subject: str, event_id: str | None = None
    ) -> bool:
        if self.fail:
            return False
        self.published.append((event_type, dict(payload), subject))
        return True

    def types(self) -> list[str]:
        return [event_type for event_type, _, _ in self.published]


class FakeBus:
    def __init__(self) -> None:
        self.emitted: list[AccessApproved] = []

    def emit_approved(self, request: AccessApproved) -> None:
        self.emitted.append(request)


@dataclass
class Session:
    session_id: str
    instance_id: str
    owner_arn: str  # as DescribeSessions reports it: the assumed-role ARN (with session) or the user
    started_at: str = ""
    ended_at: str = ""


class FakeSessions:
    """Session Manager of one account: open sessions, their history, and the preferences document
    (``preferences_content``: the document's JSON, None: no document, ``unreadable``: AccessDenied;
    ``failure``: a ServiceFailure the next read raises, as throttling after retries does)."""

    def __init__(self) -> None:
        self.active: list[Session] = []
        self.terminated: list[str] = []
        self.history: list[Session] = []
        self.preferences_content: str | None = None
        self.unreadable = False
        self.failure: ServiceFailure | None = None
        self.preference_reads = 0
        self.describe_calls = 0

    def start(self, session_id: str, instance_id: str, owner_arn: str, started_at: str = "") -> None:
        self.active.append(Session(session_id, instance_id, owner_arn, started_at))

    def end(self, session_id: str, ended_at: str) -> None:
        session = next(s for s in self.active if s.session_id == session_id)
        self.active.remove(session)
        self.history.append(replace(session, ended_at=ended_at))

    def set_logging(self, **inputs: Any) -> None:
        """The preferences document with these inputs (as in "Session document schema")."""
        self.preferences_content = json.dumps(
            {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": inputs}
        )

    def preferences(self) -> Preferences:
        self.preference_reads += 1
        if self.failure is not None:
            raise self.failure
        if self.unreadable:
            raise PreferencesUnreadable("SSM-SessionManagerRunShell: AccessDeniedException")
        if self.preferences_content is None:
            raise PreferencesUnreadable("SSM-SessionManagerRunShell: InvalidDocument")
        return Preferences.from_content(self.preferences_content)

    def opened(
        self, instance_id: str, owner: Identity, session_name: str | None, start: datetime, end: datetime
    ) -> list[dict[str, str]]:
        self.describe_calls += 2  # Active, then History
        if self.failure is not None:
            raise self.failure
        found = []
        for session in [*self.active, *self.history]:
            started_by = parse_identity(session.owner_arn)
            if session.instance_id != instance_id or started_by is None:
                continue
            if not same_principal(owner, started_by) or (
                session_name is not None and started_by.session != session_name
            ):
                continue
            if not session.started_at or not to_iso(start) <= session.started_at < to_iso(end):
                continue
            status = "Terminated" if session.ended_at else "Connected"
            use = {"session_id": session.session_id, "status": status, "started_at": session.started_at}
            if session.ended_at:
                use["ended_at"] = session.ended_at
            found.append(use)
        return sorted(found, key=lambda s: (s["started_at"], s["session_id"]))

    def terminate(self, instance_id: str, owner: Identity, session_name: str | None = None) -> list[str]:
        ended = []
        for session in list(self.active):
            started_by = parse_identity(session.owner_arn)
            if (
                session.instance_id != instance_id
                or started_by is None
                or not same_principal(owner, started_by)
            ):
                continue
            if session_name is not None and started_by.session != session_name:
                continue
            self.active.remove(session)
            ended.append(session.session_id)
        self.terminated += ended
        return ended


class FakeMemberAccounts:
    """Member accounts reached through their member role; ``unavailable`` ones refuse AssumeRole."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[FakeDirectory, FakeInventory, FakeSessions]] = {}
        self.unavailable: set[str] = set()

    def add(self, account: str) -> tuple[FakeDirectory, FakeInventory, FakeSessions]:
        self.members[account] = (FakeDirectory(account), FakeInventory(), FakeSessions())
        return self.members[account]

    def adapters(self, account: str, now: datetime) -> tuple[FakeDirectory, FakeInventory, FakeSessions]:
        if account in self.unavailable or account not in self.members:
            raise MemberUnavailable(
                f"cannot assume arn:aws:iam::{account}:role/sessiongate/SessionGateMember"
            )
        return self.members[account]


class FakeVerifier:
    """An origin that confirms every approval, or answers the ``denials`` it is given."""

    def __init__(self, denials: list[Denial] | None = None) -> None:
        self.denials = denials or []
        self.verified: list[str] = []

    def verify(self, request: AccessApproved, instance: InstanceFacts | None = None) -> list[Denial]:
        self.verified.append(request.grant_id)
        return list(self.denials)

    def conditions(self, request: AccessApproved) -> list[Condition]:
        return []


ACCOUNT = "123456789012"
MEMBER = "210987654321"
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
INSTANCE = "i-0123456789abcdef0"
APPROVER = f"arn:aws:iam::{ACCOUNT}:user/approver"
REVOKE_TARGET = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:sessiongate-revoke-access"


class CoreWorld:
    """An Engine on fakes: one account (``ACCOUNT``) with alice, an instance, and a verifying origin."""

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings(
            account_id=ACCOUNT,
            revoke_target_arn=REVOKE_TARGET,
            excluded_principals=("Admin*",),
            instance_denied_tag=("SessionGate", "deny"),
            **settings,
        )
        self.clock = ManualClock(START)
        self.ledger = FakeLedger()
        self.directory = FakeDirectory(ACCOUNT)
        self.inventory = FakeInventory()
        self.schedules = FakeSchedules()
        self.notifier = FakeNotifier()
        self.ledger.outbox = self.notifier  # the ledger's stream, published as the publisher does
        self.sessions = FakeSessions()
        self.accounts = FakeMemberAccounts()
        self.verifier = FakeVerifier()
        self.engine = Engine(
            settings=self.settings,
            ledger=self.ledger,
            directory=self.directory,
            inventory=self.inventory,
            schedules=self.schedules,
            notifier=self.notifier,
            clock=self.clock,
            bus=FakeBus(),
            verifiers={Origin.CHANGE_MANAGER: self.verifier, Origin.NATIVE: self.verifier},
            sessions=self.sessions,
            accounts=self.accounts,
        )
        self.alice = self.directory.add("user", "alice")
        self.inventory.add(INSTANCE)

    def approved(
        self,
        *,
        principal: str = "alice",
        kind: str = "user",
        instance: str = INSTANCE,
        minutes: int = 10,
        grant_id: str | None = None,
        account: str = ACCOUNT,
        requester: str | None = None,
    ) -> AccessApproved:
        self.serial = getattr(self, "serial", 0) + 1
        return AccessApproved(
            grant_id=grant_id or f"cm-test-{self.serial}",
            origin=Origin.CHANGE_MANAGER,
            origin_ref="oi-0123456789ab",
            account=account,
            instance_id=instance,
            principal_type=PrincipalType(kind),
            principal_name=principal,
            requester_arn=requester or f"arn:aws:iam::{account}:user/{principal}",
            approver_arns=(APPROVER,),
            duration_minutes=minutes,
            not_before=self.clock.now(),
            approved_at=self.clock.now(),
        )

    def grant(self, request: AccessApproved) -> Outcome:
        return self.engine.grant(request.to_detail())

    def status(self, grant_id: str) -> GrantStatus | None:
        grant = self.ledger.get_grant(grant_id)
        return grant.status if grant else None

    def codes(self, outcome: Outcome) -> list[str]:
        return [d["code"] for d in outcome.detail.get("denials", [])]
