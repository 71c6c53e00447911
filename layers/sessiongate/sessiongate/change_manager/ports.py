"""What the Change Manager front door needs from the rest of SessionGate: narrow interfaces.

``adapters/`` implements them on AWS (``ChangeRequests``, ``Bus``, ``Schedules``, ``Directory``), the
core engine records denials; unit tests pass in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Protocol

from sessiongate.core.model import AccessApproved, Denial, Grant, Outcome
from sessiongate.core.ports import AccountAdapters
from sessiongate.errors import InvalidInput


class ChangeRequestReader(Protocol):
    """SSM's change requests, as ``GetAutomationExecution`` returns them (``AutomationExecution``)."""

    def find(self, ops_item_id: str) -> Mapping[str, Any] | None:
        """The one change request of an OpsItem; ``None`` when there is none or more than one."""
        ...

    def get(self, execution_id: str) -> Mapping[str, Any] | None:
        """The change request of that execution id; ``None`` when it does not exist."""
        ...


class ApprovalBus(Protocol):
    def emit_approved(self, request: AccessApproved) -> None:
        """Put ``AccessApproved`` on SessionGate's event bus (the grant function's trigger)."""
        ...


class StartSchedules(Protocol):
    def create_once(self, name: str, when: datetime, target_arn: str, payload: dict[str, Any]) -> bool:
        """A one-time schedule sending ``payload`` to ``target_arn`` at ``when``; ``False`` if it exists."""
        ...


class GroupDirectory(Protocol):
    def group_user_names(self, group: str) -> Collection[str]:
        """The (lower-case) names of the IAM users in ``group`` now."""
        ...


class TargetAccounts(Protocol):
    """The engine's way into an account (``Context.adapters_in``): the adapter only reads its inventory."""

    def adapters_in(self, account: str) -> AccountAdapters:
        """This account's adapters or a member's; raises AccountNotAllowed or MemberUnavailable."""
        ...


class DenialRecorder(Protocol):
    """The core's way to refuse (the engine), so both front doors refuse alike."""

    def reject(self, what: str, exc: InvalidInput) -> Outcome:
        """A malformed trigger: logged, counted and notified; no grant record, never retried."""
        ...

    def deny_new(self, record: Grant, denials: list[Denial]) -> Outcome:
        """Record ``record`` as DENIED with ``denials`` (``duplicate`` if it exists) and notify."""
        ...
