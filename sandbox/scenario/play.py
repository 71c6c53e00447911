"""One run's state, handed to every step: the world, the names the scenario declared, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sessiongate.clock import to_iso

from .report import Check, Report
from .schema import ScenarioError

if TYPE_CHECKING:
    from ..faults import Fault
    from ..policy import SessionChecker
    from ..world import World


@dataclass
class Play:
    world: World
    report: Report
    checker: SessionChecker
    # name -> {"type": user|role|session, "arn", and for a session "role" and "userid"}
    principals: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)  # name -> instance id
    # id -> {"execution_id"} (Change Manager) or {"api_id", "by"} (request API), and "grant_id"
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: list[dict[str, Any]] = field(default_factory=list)  # opened by connect: principal, instance, id
    faults: list[Fault] = field(default_factory=list)  # injected by fault steps, as report.faults lists them

    def now(self) -> datetime:
        return self.world.clock.now()

    def say(self, actor: str, text: str) -> None:
        self.report.timeline.append({"at": to_iso(self.now()), "actor": actor, "text": text})

    def check(self, index: int, what: str, expected: Any, actual: Any) -> None:
        check = Check(index, what, expected, actual)
        self.report.checks.append(check)
        mark = "ok  " if check.passed else "FAIL"
        self.say("check", f"{mark} {what}: expected {expected!r}, got {actual!r}")

    def principal(self, name: str, index: int) -> dict[str, Any]:
        if name not in self.principals:
            raise ScenarioError(f"step {index}: unknown principal {name!r} (declare it under principals)")
        return self.principals[name]

    def instance(self, name: str, index: int) -> str:
        if name not in self.instances:
            raise ScenarioError(f"step {index}: unknown instance {name!r} (declare it under instances)")
        return self.instances[name]

    def request_of(self, spec: dict[str, Any], index: int) -> dict[str, Any]:
        if spec["request"] not in self.requests:
            raise ScenarioError(f"step {index}: unknown request {spec['request']!r}")
        return self.requests[spec["request"]]

    def value(self, value: object) -> object:
        """Scenario names stand for what AWS holds: instance name -> id, session name -> aws:userid."""
        if str(value) in self.instances:
            return self.instances[str(value)]
        principal = self.principals.get(str(value))
        if principal is not None and principal["type"] == "session":
            return principal["userid"]
        return value

    def userid(self, value: object) -> object:
        """A principal name stands for its aws:userid (an IAM user's UserId, a session's
        ``<RoleId>:<session>``); anything else as :meth:`value` reads it."""
        principal = self.principals.get(str(value))
        if principal is not None and principal["type"] == "user":
            return self.world.client("iam").get_user(UserName=str(value))["User"]["UserId"]
        return self.value(value)

    def arns(self, value: object) -> object:
        """A policy document with principal names replaced by their ARNs."""
        if isinstance(value, dict):
            return {k: self.arns(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.arns(v) for v in value]
        if isinstance(value, str) and value in self.principals:
            return self.principals[value]["arn"]
        return value
