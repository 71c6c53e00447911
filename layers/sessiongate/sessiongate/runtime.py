"""Wiring for the Lambda handlers: settings from the environment and adapters, built once per process."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from .clock import Clock, SystemClock
from .engine import ChangeManagerVerifier, Engine
from .model import Origin
from .settings import Settings

ClientFactory = Callable[[str], Any]

_COMMON = ("account_id", "table_name", "topic_arn", "schedule_group")
_SCHEDULING = ("scheduler_role_arn", "schedule_dlq_arn")
REQUIRED: dict[str, tuple[str, ...]] = {
    "grant": _COMMON + _SCHEDULING + ("revoke_target_arn",),
    "revoke": _COMMON,
    "adapter": _COMMON + _SCHEDULING + ("event_bus_name", "adapter_target_arn"),
    "reconcile": _COMMON + _SCHEDULING + ("revoke_target_arn", "operator_policy_arn"),
}


def build_engine(
    settings: Settings, *, clock: Clock | None = None, client: ClientFactory | None = None
) -> Engine:
    from .adapters import aws
    from .adapters.bus import Bus
    from .adapters.changes import ChangeRequests
    from .adapters.directory import Directory
    from .adapters.inventory import Inventory
    from .adapters.ledger import Ledger
    from .adapters.notifier import Notifier
    from .adapters.scheduler import Schedules
    from .adapters.sessions import Sessions

    make = client or aws.LazyClient
    clock = clock or SystemClock()
    changes = ChangeRequests(make("ssm"))
    return Engine(
        settings=settings,
        ledger=Ledger(make("dynamodb"), settings.table_name),
        directory=Directory(make("iam")),
        inventory=Inventory(make("ec2"), make("ssm")),
        schedules=Schedules(
            make("scheduler"),
            group=settings.schedule_group,
            role_arn=settings.scheduler_role_arn,
            dlq_arn=settings.schedule_dlq_arn,
        ),
        notifier=Notifier(make("sns"), settings.topic_arn),
        clock=clock,
        bus=Bus(make("events"), settings.event_bus_name),
        changes=changes,
        verifiers={Origin.CHANGE_MANAGER: ChangeManagerVerifier(changes, settings, clock)},
        sessions=Sessions(make("ssm")),
    )


# Set only by the offline sandbox (``sandbox/``), which runs these same handlers on moto with a
# virtual clock; Lambda never sets them.
_OVERRIDES: dict[str, Any] = {}


def override(*, clock: Clock | None = None, client: ClientFactory | None = None) -> None:
    """Make every engine built from now on use this clock and client factory (sandbox only)."""
    _OVERRIDES.clear()
    _OVERRIDES.update({k: v for k, v in {"clock": clock, "client": client}.items() if v is not None})
    engine.cache_clear()


@functools.cache
def engine(role: str) -> Engine:
    """The process-wide engine of a function role (``grant``, ``revoke``, ``adapter``)."""
    return build_engine(Settings.from_env(os.environ, require=REQUIRED[role]), **_OVERRIDES)
