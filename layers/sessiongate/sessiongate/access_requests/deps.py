"""What the native front door's service works with: its collaborators (ports) and limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from sessiongate.access_requests.ids import new_request_id
from sessiongate.adapters.bus import Bus
from sessiongate.adapters.kms import Macs
from sessiongate.adapters.notifier import Notifier
from sessiongate.adapters.policy_source import PolicySource
from sessiongate.adapters.request_store import RequestStore
from sessiongate.clock import Clock
from sessiongate.core.model import Grant
from sessiongate.core.ports import Directory, Inventory
from sessiongate.settings import Settings

if TYPE_CHECKING:
    from sessiongate.core.model import Outcome
    from sessiongate.core.ports import MemberAccounts

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


class GrantLedger(Protocol):
    """The part of the engine's grant ledger the front door reads (and its revocation tombstone)."""

    def get_grant(self, grant_id: str) -> Grant | None: ...

    def live_grants(self, *, expiring_before: str | None = None) -> list[Grant]: ...

    def request_revoke(self, grant_id: str, *, at: str, reason: str, by: str) -> None: ...


class GrantCore(Protocol):
    """The engine as this front door uses it: its ledger, member accounts, and revoke."""

    @property
    def ledger(self) -> GrantLedger: ...

    @property
    def accounts(self) -> MemberAccounts | None: ...

    def revoke(self, grant_id: object, *, reason: str = ..., by: str = ...) -> Outcome: ...


@dataclass
class ServiceDeps:
    """The collaborators every room of the service shares (NativeService is built with these fields)."""

    settings: Settings
    store: RequestStore
    policies: PolicySource
    inventory: Inventory
    directory: Directory
    bus: Bus
    notifier: Notifier
    engine: GrantCore
    clock: Clock
    macs: Macs | None = None  # signs approvals (ApprovalKey); None: nothing can be approved
    ids: Callable[[], str] = field(default=new_request_id)
    _recorded_policy: str = field(default="", init=False, repr=False)
