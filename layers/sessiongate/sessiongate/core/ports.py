"""What the grant core needs from AWS (narrow protocols) and the failures it reacts to.

The adapters in ``sessiongate.adapters`` implement these; ``tests/unit/fakes`` holds in-memory ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts
from sessiongate.core.identity import Identity, PrincipalType
from sessiongate.core.model import AccessApproved, Denial, Grant
from sessiongate.core.session_logging import Preferences
from sessiongate.errors import SessionGateError


class PrincipalGone(Exception):
    """The IAM user or role does not exist (any more)."""


class TagLimitExceeded(Exception):
    """IAM or EC2 refused the tags: the principal or instance would exceed 50 tags."""


class InstanceGone(Exception):
    """The EC2 instance does not exist (any more): ``InvalidInstanceID.NotFound``."""


class PrincipalUnmodifiable(Exception):
    """IAM refused the write: the role is modifiable only by AWS (``UnmodifiableEntity``), as are the
    roles IAM Identity Center provisions under ``/aws-reserved/sso.amazonaws.com/``."""


class MemberUnavailable(Exception):
    """The member account's role cannot be assumed (missing, untrusted, or account closed)."""


class AccountNotAllowed(Exception):
    """The account is neither SessionGate's own nor a configured member account."""


class ServiceFailure(SessionGateError):
    """An AWS call failed in a way the core does not tell apart (throttling after retries, 5xx, network,
    a refusal): never a decision, it propagates so the delivery is retried and alarmed; the reconciler
    counts it as an unrepaired item. ``code`` is AWS's error code when there is one. The adapters raise
    it as a botocore error too (``adapters/aws.py``), so code outside the core sees what it saw before."""

    # Whether a later try may answer differently (throttling, 5xx, network: botocore's standard retry
    # checks, ``adapters/aws.py`` ``retryable``); False for an answer a retry would repeat (AccessDenied,
    # validation). The adapters set it; a failure of unknown kind counts as retryable.
    retryable: bool = True

    def __init__(self, message: str, *, code: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class RevokeRequest:
    """A revocation asked for through the request API (the tombstone on a grant's item)."""

    at: str
    reason: str
    by: str


@dataclass(frozen=True)
class Condition:
    """An item of another table that must still say what the grant was checked against when the grant
    opens: checked in :meth:`Ledger.open`'s transaction (a DynamoDB ``ConditionCheck``), so a change
    after the check (a request cancelled, re-approved) cancels the grant atomically.

    ``table``/``key``: the item; ``equals``: attribute -> string value it must have (a missing item or
    attribute fails); ``unmet``: the denial, given the item's ``equals`` attributes as they were (None:
    no item)."""

    table: str
    key: Mapping[str, str]
    equals: Mapping[str, str]
    unmet: Callable[[Mapping[str, str] | None], Denial]


@dataclass(frozen=True)
class Opened:
    """What :meth:`Ledger.open` found: the grant opened, or why not (one of the others is set)."""

    created: bool = False
    # The grant's record exists already (a duplicate delivery, or one to resume).
    existing: Grant | None = None
    # No record, only a revocation request (tombstone): the access was revoked before it was granted.
    revoke_requested: RevokeRequest | None = None
    # Another grant holds the slot lock: try the next slot.
    slot_taken: bool = False
    # A condition of the origin no longer holds (``Condition.unmet``): the grant is denied.
    unmet: Denial | None = None


class Ledger(Protocol):
    """Grant records and slot locks; every write is conditional (see ``adapters/ledger.py``)."""

    def get_grant(self, grant_id: str) -> Grant | None: ...
    def revoke_request(self, grant_id: str) -> RevokeRequest | None: ...
    def slot_holder(self, principal_arn: str, slot: int) -> str | None: ...
    def live_grants(self, *, expiring_before: str | None = None) -> list[Grant]: ...
    def slot_holders(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]: ...
    def get_grants(self, grant_ids: Iterable[str]) -> dict[str, Grant]: ...
    def create(self, grant: Grant) -> bool: ...
    def grant_and_holder(
        self, grant_id: str, principal_arn: str, slot: int
    ) -> tuple[Grant | None, str | None]: ...
    def open(self, grant: Grant, conditions: Iterable[Condition] = ()) -> Opened: ...
    def rebind(self, grant: Grant, activated_at: str) -> bool: ...
    def release_slot(self, principal_arn: str, slot: int, grant_id: str) -> None: ...
    def request_revoke(self, grant_id: str, *, at: str, reason: str, by: str) -> None: ...
    def mark_denied(self, grant: Grant, denials: list[dict[str, str]], *, at: str | None = None) -> bool: ...
    def lock_free_slot(self, principal_arn: str, slot: int, holder: str) -> bool: ...
    def complete_revoke(self, grant: Grant, *, at: str, reason: str, by: str, release_slot: bool) -> bool: ...
    # Usage (core/usage.py): revoked grants whose sessions are not recorded yet, recording them, and the
    # grants revoked in a time range (bounded reads by day, not a scan).
    def usage_pending(self, *, limit: int, rotation: int | None = None) -> list[Grant]: ...
    def record_usage(
        self,
        grant: Grant,
        *,
        sessions: list[dict[str, str]] | None,
        at: str,
        unknown: str | None = None,
        session_count: int | None = None,
    ) -> bool: ...
    def ended_between(self, start: str, end: str) -> list[Grant]: ...


class Directory(Protocol):
    """IAM principals of one account. ``tag`` raises PrincipalGone, TagLimitExceeded or
    PrincipalUnmodifiable; ``untag`` answers ``False`` when there is nothing it could remove."""

    def get_principal(self, kind: PrincipalType, name: str) -> PrincipalFacts | None: ...
    def all_principals(self) -> list[PrincipalFacts]: ...
    def tag(self, kind: PrincipalType, name: str, tags: Mapping[str, str]) -> None: ...
    def untag(self, kind: PrincipalType, name: str, keys: Iterable[str]) -> bool: ...


class InstanceTags(Protocol):
    """EC2 tags of instances, for instance binding (``adapters/inventory.py``). ``tag_instance`` raises
    InstanceGone or TagLimitExceeded; ``untag_instance`` removes each key only while it still has the
    value given (EC2 DeleteTags with a Value) and answers ``False`` when the instance is gone;
    ``tagged_instances`` lists every instance (not terminated) with its tags, for the sweep."""

    def tag_instance(self, instance_id: str, tags: Mapping[str, str]) -> None: ...
    def untag_instance(self, instance_id: str, tags: Mapping[str, str]) -> bool: ...
    def tagged_instances(self) -> list[InstanceFacts]: ...


class Inventory(InstanceTags, Protocol):
    """EC2 and Systems Manager facts about instances, and (instance binding) their slot tags."""

    def describe(self, instance_id: str, *, check_managed: bool) -> InstanceFacts | None: ...


class Sessions(Protocol):
    """Session Manager of one account. ``preferences`` raises PreferencesUnreadable (absent, not
    readable, not a Session document); ``opened`` answers the sessions an owner started on an instance
    in a time window, as ``{"session_id", "status", "started_at", "ended_at", ...}`` (strings)."""

    def terminate(self, instance_id: str, owner: Identity, session_name: str | None = None) -> list[str]: ...
    def preferences(self) -> Preferences: ...
    def opened(
        self, instance_id: str, owner: Identity, session_name: str | None, start: datetime, end: datetime
    ) -> list[dict[str, str]]: ...


class Schedules(Protocol):
    """One-time schedules with deterministic names: ``create_once`` is ``False`` when it exists."""

    def create_once(self, name: str, when: datetime, target_arn: str, payload: dict[str, Any]) -> bool: ...
    def exists(self, name: str) -> bool: ...
    def delete(self, name: str) -> bool: ...


class Notifier(Protocol):
    """Best effort: ``publish`` never raises, it answers ``False`` when the notification was lost."""

    def publish(self, event_type: str, payload: Mapping[str, Any], *, subject: str) -> bool: ...


class Bus(Protocol):
    def emit_approved(self, request: AccessApproved) -> None: ...


class AccountAdapters(NamedTuple):
    """IAM, EC2/SSM facts and Session Manager of one account."""

    directory: Directory
    inventory: Inventory
    sessions: Sessions | None


class MemberAccounts(Protocol):
    """Adapters acting in a member account; raises MemberUnavailable when its role cannot be used."""

    def adapters(self, account: str, now: datetime) -> tuple[Directory, Inventory, Sessions]: ...


class OriginVerifier(Protocol):
    """Re-reads the origin of an approval (SSM change request, native request record)."""

    def verify(self, request: AccessApproved, instance: InstanceFacts | None = None) -> list[Denial]: ...
    def conditions(self, request: AccessApproved) -> list[Condition]:
        """What must still hold when the grant opens (checked in its one transaction)."""
        ...
