"""Scenarios: principals, instances, requests, approvals, clock advances and checks, played on a World.

``schema`` (what a file may say) and ``report`` import no AWS emulation; ``Runner`` and ``run_file``
(which build a moto World) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .report import Check, Report
from .schema import (
    CHECK_STEPS,
    INSTANCE_KEYS,
    PRINCIPAL_KEYS,
    STEP_FIELDS,
    STEP_KINDS,
    TOP_LEVEL_KEYS,
    ScenarioError,
    load,
    parse_duration,
    validate,
)

if TYPE_CHECKING:
    from .runner import Runner, run_file

__all__ = [
    "CHECK_STEPS",
    "INSTANCE_KEYS",
    "PRINCIPAL_KEYS",
    "STEP_FIELDS",
    "STEP_KINDS",
    "TOP_LEVEL_KEYS",
    "Check",
    "Report",
    "Runner",
    "ScenarioError",
    "load",
    "parse_duration",
    "run_file",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in ("Runner", "run_file"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
