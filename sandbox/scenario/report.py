"""The report of a run: its checks, timeline, lifecycle events and the state read back at the end.

``Report.as_dict()`` is the ``--json`` output. Pure: filled by the runner, never by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What a lifecycle notification's message contributes to its event in the report (when not empty).
EVENT_KEYS = (
    "grant_id",
    "principal_arn",
    "instance_id",
    "expires_at",
    "reason",
    "denials",
    "problem",
    "repairs",
    "digest",
    "source",
    # Issue 17: where a grant's sessions' logs went, the sessions recorded, the weekly report's counts.
    "log_destination",
    "sessions",
    "usage_unknown",
    "grants",
    "used_grants",
    "unused_grants",
    "per_person",
    "unused",
)


@dataclass
class Check:
    step: int
    what: str
    expected: Any
    actual: Any

    @property
    def passed(self) -> bool:
        return bool(self.expected == self.actual)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "check": self.what,
            "expected": self.expected,
            "actual": self.actual,
            "passed": self.passed,
        }


@dataclass
class Report:
    scenario: str
    description: str
    checks: list[Check] = field(default_factory=list)
    timeline: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    principals: dict[str, dict[str, str]] = field(default_factory=dict)
    grants: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    revocations: list[dict[str, Any]] = field(default_factory=list)
    failed_invocations: list[dict[str, Any]] = field(default_factory=list)
    invariant_violations: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    aws_calls: dict[str, int] = field(default_factory=dict)
    expect_failed_invocations: bool = False
    # IAM Identity Center, read back: each type: sso principal's role, session and groups (if any).
    identity_center: dict[str, Any] = field(default_factory=dict)
    # Issue 17, read back: each grant's log destination and recorded sessions (when any has them).
    usage: list[dict[str, Any]] = field(default_factory=list)
    # The history export (issue 17): its records in the bucket at the end (key, transition, ids, at).
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            all(c.passed for c in self.checks)
            and not self.invariant_violations
            and (self.expect_failed_invocations or not self.failed_invocations)
        )

    def as_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"identity_center": self.identity_center} if self.identity_center else {}
        if self.usage:
            extra["usage"] = self.usage
        if self.history:
            extra["history"] = self.history
        return {
            "scenario": self.scenario,
            "description": self.description,
            "passed": self.passed,
            "checks": [c.as_dict() for c in self.checks],
            "checks_passed": sum(c.passed for c in self.checks),
            "checks_failed": sum(not c.passed for c in self.checks),
            "events": self.events,
            "principals": self.principals,
            "active_grants": self.grants,
            "schedules": self.schedules,
            "revocations": self.revocations,
            "failed_invocations": self.failed_invocations,
            "invariant_violations": self.invariant_violations,
            "faults": self.faults,
            "timeline": self.timeline,
            "aws_calls": self.aws_calls,
            **extra,
        }


def event_of(note: dict[str, Any], now: str) -> dict[str, Any]:
    """A lifecycle notification (as the world's topic tap received it) as the report lists it."""
    message = note["message"]
    event = {"at": message.get("at") or now, "event_type": note["attributes"].get("event_type")}
    for key in EVENT_KEYS:
        if message.get(key) not in (None, "", []):
            event[key] = message[key]
    return event


def describe(event: dict[str, Any], instances: dict[str, str]) -> str:
    """An event's timeline line, with the scenario's instance names for their ids."""
    names = {v: k for k, v in instances.items()}
    principal = str(event.get("principal_arn", "")).rsplit("/", 1)[-1]
    instance = names.get(event.get("instance_id", ""), event.get("instance_id", ""))
    kind = event["event_type"]
    if kind == "AccessGranted":
        return f"GRANTED {principal} -> {instance} until {event.get('expires_at')}"
    if kind == "AccessRevoked":
        return f"REVOKED {principal} -> {instance} ({event.get('reason')})"
    if kind == "AccessDenied":
        codes = ", ".join(d["code"] for d in event.get("denials", []))
        return f"DENIED {principal or '?'} -> {instance or '?'}: {codes}"
    if kind == "ReconcilerRepaired":
        done = {k: len(v) for k, v in event.get("repairs", {}).items() if v}
        return "RECONCILER repaired " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in done.items())
    if kind == "PolicyChanged":
        return f"POLICY in effect: {str(event.get('digest', '?'))[:12]} from {event.get('source', '?')}"
    if kind == "SessionsRecorded":
        sessions = event.get("sessions")
        count = "unknown" if sessions is None else len(sessions)
        return f"SESSIONS of {principal} on {instance} recorded: {count}"
    if kind == "UsageReport":
        return f"USAGE REPORT: {event.get('grants', 0)} grants, {event.get('unused_grants', 0)} never used"
    if kind in ("ChatLinked", "ChatUnlinked"):  # issue 19
        verb = "linked to" if kind == "ChatLinked" else "unlinked from"
        return f"CHAT {event.get('chat')} user {event.get('user_id')} {verb} {principal}"
    if event.get("problem"):
        return f"{kind}: {event['problem']}"
    return f"{kind} {principal or '?'} -> {instance or '?'}"  # the request API's lifecycle
