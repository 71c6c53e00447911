"""Offline evaluation of an approval policy against test cases (pure): what ``sessiongate policy test``
runs, so that a policy change is tested in CI before a deployer signs it.

A case gives a request's facts and the decision expected; the evaluation is the request API's own, in
its order: the rule that covers the instance (none: refused), the rule's requesters, duration cap and
ticket, break-glass, then auto-approval (forbid, then permit, then the manual levels):

    cases:
      - name: on-call on a dev box in office hours approves itself
        request:
          instance_id: i-0123456789abcdef0         # optional (default i-00000000000000000)
          tags: {Environment: dev}
          requester: arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_OnCall_0123/alice
          minutes: 30                               # optional (default 10)
          at: "2026-01-05T10:00:00Z"                # optional (default now), ISO 8601 with zone
          ticket: OPS-12                            # optional
          break_glass: false                        # optional; reason: ... for its length check
        expect: auto_approved                       # auto_approved | manual | break_glass | refused
        rule: dev                                   # optional: the rule that must apply
        permit: dev in office hours                 # optional: the permit that must approve
        forbid: never PCI                           # optional: the forbid that must stop it
        error: ticket_required                      # optional (refused): the refusal's code
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sessiongate.access_requests.auto_approval import Facts, decide
from sessiongate.access_requests.errors import Refused
from sessiongate.access_requests.policy import ApprovalPolicy, check_break_glass, check_duration
from sessiongate.access_requests.rule_limits import check_ticket
from sessiongate.core.identity import INSTANCE_ID_RE

DECISIONS = ("auto_approved", "manual", "break_glass", "refused")
DEFAULT_INSTANCE = "i-00000000000000000"
_REQUEST_KEYS = {"instance_id", "tags", "requester", "minutes", "at", "ticket", "break_glass", "reason"}
_CASE_KEYS = {"name", "request", "expect", "rule", "permit", "forbid", "error"}


class CaseError(Exception):
    """The cases file is malformed (a usage error, not a failed case)."""


@dataclass(frozen=True)
class Outcome:
    decision: str
    rule: str | None = None
    permit: str | None = None
    forbid: str | None = None
    error: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool
    outcome: Outcome
    expected: dict[str, str] = field(default_factory=dict)
    mismatches: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "expected": self.expected,
            "got": {k: v for k, v in vars(self.outcome).items() if v not in (None, "")},
            "mismatches": list(self.mismatches),
        }

    def line(self) -> str:
        got = self.outcome
        detail = ", ".join(
            f"{k} {v!r}"
            for k, v in (
                ("rule", got.rule),
                ("permit", got.permit),
                ("forbid", got.forbid),
                ("error", got.error),
            )
            if v
        )
        head = f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {got.decision}" + (
            f" ({detail})" if detail else ""
        )
        if self.passed:
            return head
        return head + "".join(f"\n        {m}" for m in self.mismatches) + f"\n        why: {got.why}"


def evaluate(policy: ApprovalPolicy, request: Mapping[str, Any], now: datetime) -> Outcome:
    """The request API's decision on ``request`` (a case's facts) under ``policy``."""
    instance_id = request.get("instance_id", DEFAULT_INSTANCE)
    tags = dict(request.get("tags") or {})
    requester = str(request["requester"])
    minutes = int(request.get("minutes", 10))
    at = request.get("at", now)
    break_glass = bool(request.get("break_glass", False))
    rule = policy.rule_for(instance_id, tags)
    if rule is None:
        return Outcome("refused", error="no_matching_rule", why=f"no rule covers {instance_id} with {tags}")
    try:
        if not rule.may_request(requester):
            return Outcome(
                "refused", rule.name, error="not_a_requester", why="not among the rule's requesters"
            )
        check_duration(rule, minutes)
        check_ticket(rule.name, rule.ticket, str(request.get("ticket", "")))
        if break_glass:
            check_break_glass(rule, requester, minutes, str(request.get("reason", "x" * 300)))
            return Outcome("break_glass", rule.name, why="break-glass: the requester approves alone")
    except Refused as refusal:
        return Outcome("refused", rule.name, error=refusal.code, why=refusal.message)
    decision = decide(policy, Facts(rule, instance_id, tags, requester, minutes, at))
    return Outcome(
        "auto_approved" if decision.auto_approved else "manual",
        rule.name,
        decision.permit if decision.auto_approved else None,
        decision.forbid,
        why=decision.why,
    )


def run_cases(policy: ApprovalPolicy, document: object, now: datetime) -> list[Result]:
    """Every case of ``document`` (the parsed cases file) evaluated and compared with its expectation."""
    cases = document.get("cases") if isinstance(document, Mapping) else None
    if not isinstance(cases, list) or not cases:
        raise CaseError("the cases file must be a mapping with a non-empty list `cases`")
    return [_run(policy, case, i, now) for i, case in enumerate(cases)]


def _run(policy: ApprovalPolicy, case: object, index: int, now: datetime) -> Result:
    where = f"cases[{index}]"
    if not isinstance(case, Mapping) or set(case) - _CASE_KEYS:
        raise CaseError(f"{where} must be a mapping of {sorted(_CASE_KEYS)}")
    name = str(case.get("name") or where)
    expected = {k: str(case[k]) for k in ("expect", "rule", "permit", "forbid", "error") if k in case}
    if expected.get("expect") not in DECISIONS:
        raise CaseError(f"{where} ({name}): expect must be one of {list(DECISIONS)}")
    outcome = evaluate(policy, _request(case.get("request"), f"{where}.request", now), now)
    got = {
        "expect": outcome.decision,
        "rule": outcome.rule,
        "permit": outcome.permit,
        "forbid": outcome.forbid,
        "error": outcome.error,
    }
    mismatches = tuple(
        f"expected {key} {want!r}, got {got[key]!r}" for key, want in expected.items() if got[key] != want
    )
    return Result(name, not mismatches, outcome, expected, mismatches)


def _request(value: object, where: str, now: datetime) -> dict[str, Any]:
    if not isinstance(value, Mapping) or set(value) - _REQUEST_KEYS:
        raise CaseError(f"{where} must be a mapping of {sorted(_REQUEST_KEYS)}")
    request = dict(value)
    if not isinstance(request.get("requester"), str) or not request["requester"].startswith("arn:"):
        raise CaseError(f"{where}.requester must be the requester's ARN")
    instance = request.get("instance_id", DEFAULT_INSTANCE)
    if not isinstance(instance, str) or not INSTANCE_ID_RE.fullmatch(instance):
        raise CaseError(f"{where}.instance_id must be an instance id")
    tags = request.get("tags", {})
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        raise CaseError(f"{where}.tags must map tag keys to string values")
    minutes = request.get("minutes", 10)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
        raise CaseError(f"{where}.minutes must be a positive integer")
    at = request.get("at", now)
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise CaseError(f"{where}.at must be an ISO 8601 time, e.g. 2026-01-05T10:00:00Z") from None
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise CaseError(f"{where}.at must be an ISO 8601 time with its zone (Z or +hh:mm)")
    request["at"] = at
    return request
