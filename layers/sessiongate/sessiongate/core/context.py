"""The core's collaborators, shared by grant, revoke and reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sessiongate.clock import Clock
from sessiongate.core.model import Origin
from sessiongate.core.ports import (
    AccountAdapters,
    AccountNotAllowed,
    Bus,
    Directory,
    Inventory,
    Ledger,
    MemberAccounts,
    Notifier,
    OriginVerifier,
    Schedules,
    Sessions,
)
from sessiongate.settings import Settings


@dataclass
class Context:
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
    # Session Manager preferences read per account (core/session_logging.py): account -> (when, what).
    logging_cache: dict[str, tuple[datetime, Any]] = field(default_factory=dict)

    def adapters_in(self, account: str) -> AccountAdapters:
        """The IAM/EC2/SSM adapters of ``account``: this one's, or a member's through its role.

        Raises AccountNotAllowed for any other account, MemberUnavailable when the role cannot be used.
        """
        if account == self.settings.account_id:
            return AccountAdapters(self.directory, self.inventory, self.sessions)
        if account not in self.settings.member_accounts or self.accounts is None:
            raise AccountNotAllowed(account)
        return AccountAdapters(*self.accounts.adapters(account, self.clock.now()))
