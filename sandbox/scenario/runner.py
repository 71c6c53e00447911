"""The loop: a fresh World, the scenario's setup, then each step (from ``STEPS``) followed by the
invariants, then the report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..policy import SessionChecker
from ..world import ACCOUNT, REGION, World
from . import api, chat, checks, steps, usage
from .insider import insider
from .invariants import Invariants
from .play import Play
from .record import collect, finish
from .report import Report
from .schema import ScenarioError, load, parse_time, validate
from .setup import identity_center_parameters, setup

# Every step kind of schema.STEP_FIELDS: (play, step number, the step's value) -> None.
STEPS: dict[str, Callable[[Play, int, Any], None]] = {
    "request": steps.request,
    "approve": steps.approve,
    "reject": steps.reject,
    "advance": steps.advance,
    "tamper": steps.tamper,
    "insider": insider,
    "fault": steps.fault,
    "drop_schedule": steps.drop_schedule,
    "redeliver": steps.redeliver,
    "reconcile": steps.reconcile,
    "revoke": steps.revoke,
    "extend": api.extend,
    "cancel": api.cancel,
    "status": checks.status,
    "session": checks.session,
    "connect": checks.connect,
    "live_sessions": checks.live_sessions,
    "tags": checks.tags,
    "instance_tags": checks.instance_tags,
    "grant": checks.grant,
    "schedules": checks.schedules,
    "notified": checks.notified,
    "session_preferences": usage.session_preferences,
    "usage": usage.usage,
    "usage_report": usage.usage_report,
    "history_exported": checks.history_exported,
    "chat_link": chat.link,
    "chat_approve": chat.approve,
    "chat_reject": chat.reject,
    "chat_message": chat.message,
}
# Steps that collect what happened themselves (advance: before it says how much time passed).
COLLECTS_ITSELF = frozenset({"advance"})


class Runner:
    """Plays one scenario (a mapping as ``load`` returns it); ``world`` stays readable after ``run``."""

    world: World

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.report = Report(scenario["name"], str(scenario.get("description", "")).strip())
        self.report.expect_failed_invocations = bool(scenario.get("expect_failed_invocations", False))
        validate(scenario, require_checks=False)

    def run(self) -> Report:
        with self._world() as world:
            self.world = world
            play = Play(
                world, self.report, SessionChecker(world.client("iam"), REGION, ACCOUNT, world.client("ec2"))
            )
            setup(play, self.scenario)
            period = timedelta(minutes=int(world.stack.parameters.get("ReconcilerRateMinutes") or 5))
            invariants = Invariants(play, period)
            for index, step in enumerate(self.scenario["steps"], start=1):
                ((kind, spec),) = step.items()  # validate() checked every step's shape and kind
                STEPS[kind](play, index, spec)
                if kind not in COLLECTS_ITSELF:
                    collect(play)
                invariants.check(index)
            finish(play)
        return self.report

    def _world(self) -> World:
        kwargs: dict[str, Any] = {"parameters": dict(self.scenario.get("parameters") or {})}
        for key, value in identity_center_parameters(self.scenario).items():
            # Groups in the scenario: the stack reads them from the sandbox's identity store.
            kwargs["parameters"].setdefault(key, value)
        if "approval_policy" in self.scenario:
            # A custom policy lives in a parameter the deployers sign (``sessiongate policy sign``).
            kwargs["parameters"].setdefault("ApprovalPolicyParameterName", "/sandbox/approval-policy")
        if self.scenario.get("start"):
            kwargs["start"] = parse_time(self.scenario["start"])
        try:
            return World(**kwargs)
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None


def run_file(path: str | Path) -> Report:
    return Runner(load(path)).run()
