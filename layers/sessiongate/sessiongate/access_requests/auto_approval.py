"""Auto-approval of the approval policy (issue 18, pure): ``permit`` statements that approve a request
without a person, and ``forbid`` statements that always override them.

Mirrors the semantics of Systems Manager just-in-time node access (its Cedar auto-approval and
deny-access policies, AWS docs "Create node approval policies for just-in-time node access" and
"Statement structure and built-in operators for auto-approval and deny-access policies"): forbid
statements are evaluated first, then permit statements, then the manual levels. A request is
auto-approved when at least one ``permit`` matches and no ``forbid`` matches; otherwise it waits for the
rule's approvers as before (a forbid never refuses a request, it only takes away auto-approval). No
statement, no auto-approval. Break-glass requests (self-approved under their own caps) and extensions
(a new approval of live access) are never auto-approved.

    "auto_approval": [
      {"name": "dev in office hours", "effect": "permit", "rules": ["dev"],
       "requesters": ["arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_OnCall_*/*"],
       "instances": {"tags": {"Environment": "dev"}},
       "hours": {"time_zone": "Europe/Paris", "days": ["mon", "tue", "wed", "thu", "fri"],
                 "from": "08:00", "to": "19:00"},
       "max_duration_minutes": 60},
      {"name": "never the payment hosts", "effect": "forbid", "instances": {"tags": {"PCI": "*"}}},
      {"name": "not where break-glass is off", "effect": "forbid", "break_glass_enabled": false}
    ]

Every condition a statement names must hold (and); a list inside a condition matches any of its
entries (or). ``hours.to`` is exclusive; ``from`` after ``to`` spans midnight (the day is the local day
at the request's time). The request's time is when its access starts: when it is made, or its
``start_at`` if later (and, at grant time, its ``not_before``, the later of the approval time and
``start_at``, both bound by the approval MAC): a request made in office hours for a start outside
them is not auto-approved (review B, M1). The instance's tags are its tags when the request is made,
and at grant time its tags then (the grant reads them): a forbid tag put on the instance before a
scheduled start stops the grant (review B, M2).

An auto-approved request is recorded as such, never as a person's approval: its one approval has level
:data:`AUTO_LEVEL` by the request API's role, the record names the permit (``auto_approval``, bound by
the approval MAC), it is notified as ``AutoApproved``, and the native verifier grants it only when the
current policy still auto-approves it under the same permit (:func:`auto_approval_holds`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sessiongate.access_requests.policy import (
    ApprovalPolicy,
    PolicyError,
    Rule,
    _instances,  # a rule's and a statement's `instances` are the same object
    arn_matches,
)
from sessiongate.access_requests.records import AUTO_LEVEL, Request
from sessiongate.clock import parse_iso

MAX_STATEMENTS = 50
MAX_PATTERNS = 50
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_KEYS = {
    "name",
    "description",
    "effect",
    "rules",
    "requesters",
    "instances",
    "hours",
    "max_duration_minutes",
    "break_glass_enabled",
}


@dataclass(frozen=True)
class Hours:
    zone: str
    days: tuple[int, ...]  # 0 = Monday
    start: time
    end: time

    def contain(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.zone))
        if local.weekday() not in self.days:
            return False
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


@dataclass(frozen=True)
class Statement:
    name: str
    effect: str  # "permit" | "forbid"
    rules: tuple[str, ...] = ()
    requesters: tuple[str, ...] = ()
    instance_ids: tuple[str, ...] = ()
    instance_tags: tuple[tuple[str, str], ...] = ()
    hours: Hours | None = None
    max_duration_minutes: int | None = None
    break_glass_enabled: bool | None = None

    def matches(self, facts: Facts) -> bool:
        if self.rules and facts.rule.name not in self.rules:
            return False
        if self.requesters and not arn_matches(facts.requester_arn, self.requesters):
            return False
        if self.instance_ids and facts.instance_id not in self.instance_ids:
            return False
        if not all(
            key in facts.tags and fnmatch.fnmatchcase(facts.tags[key], pattern)
            for key, pattern in self.instance_tags
        ):
            return False
        if self.hours is not None and not self.hours.contain(facts.at):
            return False
        if self.max_duration_minutes is not None and facts.duration_minutes > self.max_duration_minutes:
            return False
        return not (
            self.break_glass_enabled is not None
            and facts.rule.break_glass.enabled is not self.break_glass_enabled
        )


@dataclass(frozen=True)
class Facts:
    """What a decision is made from: the request, the rule that covers its instance, and the time."""

    rule: Rule
    instance_id: str
    tags: Mapping[str, str]
    requester_arn: str
    duration_minutes: int
    at: datetime
    break_glass: bool = False
    extension: bool = False


@dataclass(frozen=True)
class Decision:
    auto_approved: bool
    permit: str | None = None  # the first permit that matched
    forbid: str | None = None  # the first forbid that matched (it wins)
    why: str = ""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"decision": "auto_approved" if self.auto_approved else "manual"}
        if self.permit:
            out["permit"] = self.permit
        if self.forbid:
            out["forbid"] = self.forbid
        out["why"] = self.why
        return out


def decide(policy: ApprovalPolicy, facts: Facts) -> Decision:
    """Whether ``facts`` are auto-approved under ``policy`` (forbid, then permit, then manual)."""
    if facts.break_glass:
        return Decision(False, why="break-glass requests are self-approved, never auto-approved")
    if facts.extension:
        return Decision(False, why="extensions are approved by people")
    statements: Sequence[Statement] = policy.auto_approval
    forbid = next((s for s in statements if s.effect == "forbid" and s.matches(facts)), None)
    permit = next((s for s in statements if s.effect == "permit" and s.matches(facts)), None)
    if forbid is not None:
        return Decision(
            False,
            permit.name if permit else None,
            forbid.name,
            f"forbid {forbid.name!r} matches (it overrides any permit)",
        )
    if permit is None:
        return Decision(False, why="no permit statement matches")
    return Decision(True, permit.name, why=f"permit {permit.name!r} matches and no forbid does")


def facts_of(request: Request, rule: Rule, at: datetime, tags: Mapping[str, str] | None = None) -> Facts:
    """The facts of a request record under ``rule`` at time ``at`` (the instance's ``tags``: those the
    record holds unless given)."""
    return Facts(
        rule,
        request.instance_id,
        dict(request.instance_tags if tags is None else tags),
        request.requester_arn,
        request.duration_minutes,
        at,
        break_glass=request.break_glass,
        extension=request.extends is not None,
    )


def auto_approval_holds(
    policy: ApprovalPolicy,
    rule: Rule,
    record: Request,
    *,
    api_role: str,
    tags: Mapping[str, str] | None = None,
) -> str | None:
    """Why an auto-approved record may not be granted now (``None``: it may): the record must be one
    auto-approval by the request API's role, and the current policy must still auto-approve its facts
    (at its ``not_before``, with the instance's current ``tags``) under the same permit."""
    if (
        record.break_glass
        or record.extends is not None
        or record.approver_arns != (api_role,)
        or [(a.approver_arn, a.level) for a in record.approvals] != [(api_role, AUTO_LEVEL)]
        or record.approved_at is None
    ):
        return f"auto-approved request {record.request_id} is not recorded as one"
    start = parse_iso(record.not_before or record.approved_at)
    decision = decide(policy, facts_of(record, rule, start, tags))
    if not decision.auto_approved:
        return f"the policy no longer auto-approves this request: {decision.why}"
    if decision.permit != record.auto_approval:
        return (
            f"request {record.request_id} was auto-approved by permit {record.auto_approval!r}, "
            f"the policy now names {decision.permit!r}"
        )
    return None


# ------------------------------------------------------------------------------------------- parsing
def parse_statements(value: object, rule_names: Sequence[str]) -> tuple[Statement, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_STATEMENTS:
        raise PolicyError(f"policy.auto_approval must be a list of up to {MAX_STATEMENTS} statements")
    parsed = tuple(_statement(s, f"auto_approval[{i}]", rule_names) for i, s in enumerate(value))
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        raise PolicyError("auto_approval statement names must be unique")
    return parsed


def _statement(value: object, where: str, rule_names: Sequence[str]) -> Statement:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where} must be an object")
    unknown = set(value) - _KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = value.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise PolicyError(f"{where}.name must be a string of 1..64 characters")
    effect = value.get("effect")
    if effect not in ("permit", "forbid"):
        raise PolicyError(f"{where}.effect must be 'permit' or 'forbid'")
    rules = value.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise PolicyError(f"{where}.rules must be a list of rule names")
    missing = [r for r in rules if r not in rule_names]
    if missing:
        raise PolicyError(f"{where}.rules names no rule of this policy: {missing}")
    requesters = value.get("requesters", [])
    if (
        not isinstance(requesters, list)
        or len(requesters) > MAX_PATTERNS
        or not all(isinstance(p, str) and p.startswith("arn:") and len(p) <= 2048 for p in requesters)
    ):
        raise PolicyError(f"{where}.requesters must be a list of up to {MAX_PATTERNS} ARN patterns")
    ids, tags = _instances(value.get("instances", {}), where)
    minutes = value.get("max_duration_minutes")
    if minutes is not None and (
        isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440
    ):
        raise PolicyError(f"{where}.max_duration_minutes must be an integer from 1 to 1440")
    glass = value.get("break_glass_enabled")
    if glass is not None and not isinstance(glass, bool):
        raise PolicyError(f"{where}.break_glass_enabled must be true or false")
    statement = Statement(
        name,
        str(effect),
        tuple(rules),
        tuple(requesters),
        ids,
        tags,
        _hours(value.get("hours"), where),
        minutes,
        glass,
    )
    if effect == "permit" and statement == Statement(name, "permit"):
        raise PolicyError(
            f"{where}: a permit with no condition would auto-approve every request; name at least one "
            "condition (rules, requesters, instances, hours, max_duration_minutes)"
        )
    return statement


def _hours(value: object, where: str) -> Hours | None:
    if value is None:
        return None
    w = f"{where}.hours"
    if not isinstance(value, Mapping) or set(value) - {"time_zone", "days", "from", "to"}:
        raise PolicyError(f"{w} must be an object {{time_zone, days, from, to}}")
    zone = value.get("time_zone")
    if not isinstance(zone, str) or not zone:
        raise PolicyError(f"{w}.time_zone must be an IANA time zone name, e.g. 'Europe/Paris'")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"{w}.time_zone {zone!r} is not a known IANA time zone") from None
    days = value.get("days", list(DAYS))
    if not isinstance(days, list) or not days or not all(isinstance(d, str) and d in DAYS for d in days):
        raise PolicyError(f"{w}.days must be a non-empty list of {list(DAYS)}")
    start, end = _clock(value.get("from"), f"{w}.from"), _clock(value.get("to"), f"{w}.to")
    if start == end:
        raise PolicyError(f"{w}: from and to must differ")
    return Hours(zone, tuple(sorted({DAYS.index(d) for d in days})), start, end)


def _clock(value: object, where: str) -> time:
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise PolicyError(f"{where} must be a time of day HH:MM (24-hour)")
    return time(int(match.group(1)), int(match.group(2)))
