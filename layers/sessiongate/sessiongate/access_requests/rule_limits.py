"""Per-rule limits of the approval policy (pure, no AWS): a ticket the rule requires, and how many grants
under the rule may be live at once per person and per instance (issue 18).

    "ticket": {"required": true, "pattern": "^OPS-[0-9]+$"}
    "max_active": {"per_person": 1, "per_instance": 2}

The request API refuses a request without the ticket (or one that does not match) when it is made, and
the native verifier re-checks it at grant time (the record and the rule are in hand: no extra call).
The concurrency limits are checked when a request is made and again when it is approved
(:mod:`.concurrency`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sessiongate.access_requests.errors import NotAllowed, invalid
from sessiongate.access_requests.policy import PolicyError, _mapping

MAX_TICKET_PATTERN = 200
MAX_ACTIVE = 1000
MAX_LEAD_MINUTES = 10080  # a week
START_SLACK = timedelta(minutes=1)  # a start_at this little in the past is "now" (clock skew)


@dataclass(frozen=True)
class TicketRule:
    required: bool = False
    pattern: str | None = None  # a Python regular expression the whole ticket must match

    def problem(self, ticket: str) -> tuple[str, str] | None:
        """``(code, message)`` when ``ticket`` does not satisfy this rule; ``None`` when it does."""
        if not ticket:
            if self.required:
                return "ticket_required", "this rule requires a ticket reference (--ticket)"
            return None
        if self.pattern is not None and not re.fullmatch(self.pattern, ticket):
            return "ticket_mismatch", f"ticket {ticket!r} does not match this rule's pattern {self.pattern!r}"
        return None


@dataclass(frozen=True)
class MaxActive:
    per_person: int | None = None  # live grants under the rule held by one person
    per_instance: int | None = None  # live grants on one instance of the rule


def check_ticket(rule_name: str, ticket_rule: TicketRule | None, ticket: str) -> None:
    """Refuse (400) a request whose ticket the rule does not accept."""
    problem = ticket_rule.problem(ticket) if ticket_rule is not None else None
    if problem is not None:
        code, message = problem
        raise invalid(f"rule {rule_name!r}: {message}", code)


def parse_ticket(value: object, where: str) -> TicketRule | None:
    if value is None:
        return None
    data = _object(value, f"{where}.ticket", {"required", "pattern"})
    required = data.get("required", False)
    if not isinstance(required, bool):
        raise PolicyError(f"{where}.ticket.required must be true or false")
    pattern = data.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not 1 <= len(pattern) <= MAX_TICKET_PATTERN:
            raise PolicyError(
                f"{where}.ticket.pattern must be a string of 1..{MAX_TICKET_PATTERN} characters"
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PolicyError(f"{where}.ticket.pattern is not a regular expression: {exc}") from None
    return TicketRule(required, pattern)


def parse_max_active(value: object, where: str) -> MaxActive | None:
    if value is None:
        return None
    data = _object(value, f"{where}.max_active", {"per_person", "per_instance"})
    if not data:
        raise PolicyError(f"{where}.max_active must set per_person, per_instance or both")
    limits = {}
    for key in ("per_person", "per_instance"):
        number = data.get(key)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_ACTIVE
        ):
            raise PolicyError(f"{where}.max_active.{key} must be an integer from 1 to {MAX_ACTIVE}")
        limits[key] = number
    return MaxActive(limits["per_person"], limits["per_instance"])


def parse_max_lead(value: object, where: str) -> int | None:
    """``max_lead_minutes``: how far ahead a request may schedule its start (``start_at``); unset, a
    request under the rule cannot schedule one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LEAD_MINUTES:
        raise PolicyError(f"{where}.max_lead_minutes must be an integer from 1 to {MAX_LEAD_MINUTES}")
    return value


@dataclass(frozen=True)
class Reminders:
    """A pending request re-notifies the approvers it waits for every ``remind_after_minutes`` and, once
    ``escalate_after_minutes`` have passed, notifies ``escalate_to`` (ARN patterns) once, who may approve
    from then on; both within the request's pending TTL (``PendingRequestTtlMinutes``)."""

    remind_after_minutes: int | None = None
    escalate_after_minutes: int | None = None
    escalate_to: tuple[str, ...] = ()


def parse_reminders(value: object, where: str) -> Reminders | None:
    if value is None:
        return None
    w = f"{where}.reminders"
    data = _object(value, w, {"remind_after_minutes", "escalate_after_minutes", "escalate_to"})
    minutes = {}
    for key in ("remind_after_minutes", "escalate_after_minutes"):
        number = data.get(key)
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_LEAD_MINUTES
        ):
            raise PolicyError(f"{w}.{key} must be an integer from 1 to {MAX_LEAD_MINUTES}")
        minutes[key] = number
    escalate_to = data.get("escalate_to", [])
    if not isinstance(escalate_to, list) or not all(
        isinstance(p, str) and p.startswith("arn:") and len(p) <= 2048 for p in escalate_to
    ):
        raise PolicyError(f"{w}.escalate_to must be a list of ARN patterns (starting with 'arn:')")
    if bool(escalate_to) != (minutes["escalate_after_minutes"] is not None):
        raise PolicyError(f"{w}: escalate_after_minutes and escalate_to go together")
    if minutes["remind_after_minutes"] is None and not escalate_to:
        raise PolicyError(
            f"{w} must set remind_after_minutes, escalate_after_minutes with escalate_to, or both"
        )
    return Reminders(minutes["remind_after_minutes"], minutes["escalate_after_minutes"], tuple(escalate_to))


# Session Manager documents a rule may allow (issue 18). StartSession authorizes the target instance and the
# document (AWS docs: "Start a session with a document by specifying the session documents in IAM
# policies"); AWS-owned documents have no account in their ARN: arn:aws:ssm:<region>::document/<name>.
SHELL_DOCUMENT = "SSM-SessionManagerRunShell"
SESSION_DOCUMENTS = frozenset(
    {
        SHELL_DOCUMENT,
        "AWS-StartSSHSession",
        "AWS-StartPortForwardingSession",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "AWS-StartInteractiveCommand",
    }
)
_FORWARDING = frozenset({"AWS-StartPortForwardingSession", "AWS-StartPortForwardingSessionToRemoteHost"})
_HOST = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$")


@dataclass(frozen=True)
class SessionDocument:
    """A document a rule allows, with the remote hosts and ports it is meant for (port forwarding).

    IAM cannot enforce ``hosts`` and ``ports``: StartSession has no condition key for the document's
    parameters, so they are shown to approvers and recorded, not enforced (a custom session document
    with ``allowedValues`` on its parameters would be the way to pin them)."""

    name: str
    hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name}
        if self.hosts:
            out["hosts"] = list(self.hosts)
        if self.ports:
            out["ports"] = list(self.ports)
        return out


def parse_documents(value: object, where: str) -> tuple[SessionDocument, ...] | None:
    if value is None:
        return None
    w = f"{where}.documents"
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{w} must be a non-empty list of Session Manager documents")
    parsed = []
    for i, entry in enumerate(value):
        data = (
            {"name": entry}
            if isinstance(entry, str)
            else _object(entry, f"{w}[{i}]", {"name", "hosts", "ports"})
        )
        name = data.get("name")
        if name not in SESSION_DOCUMENTS:
            raise PolicyError(f"{w}[{i}]: {name!r} is not one of {sorted(SESSION_DOCUMENTS)}")
        hosts, ports = data.get("hosts", []), data.get("ports", [])
        if (hosts or ports) and name not in _FORWARDING:
            raise PolicyError(f"{w}[{i}]: hosts and ports apply to port forwarding documents only")
        if hosts and name != "AWS-StartPortForwardingSessionToRemoteHost":
            raise PolicyError(f"{w}[{i}]: hosts apply to AWS-StartPortForwardingSessionToRemoteHost only")
        if not isinstance(hosts, list) or not all(isinstance(h, str) and _HOST.fullmatch(h) for h in hosts):
            raise PolicyError(f"{w}[{i}].hosts must be a list of host names or addresses")
        if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports
        ):
            raise PolicyError(f"{w}[{i}].ports must be a list of port numbers 1..65535")
        parsed.append(SessionDocument(str(name), tuple(hosts), tuple(ports)))
    names = [d.name for d in parsed]
    if len(set(names)) != len(names):
        raise PolicyError(f"{w} names a document twice")
    return tuple(parsed)


def check_documents(
    rule_name: str, allowed: tuple[SessionDocument, ...] | None, wanted: tuple[str, ...]
) -> None:
    """Refuse (403) a request for a document the rule does not list (a rule without ``documents``: the
    shell only, as the operator policy's default)."""
    names = {d.name for d in allowed} if allowed is not None else {SHELL_DOCUMENT}
    refused = [w for w in wanted if w not in names]
    if refused:
        raise NotAllowed(
            "document_not_allowed",
            f"rule {rule_name!r} does not allow the session document(s) {refused}; it allows {sorted(names)}",
        )


def check_start(
    rule_name: str, max_lead: int | None, start_at: datetime, now: datetime, *, glass: bool
) -> None:
    """Refuse (400) a scheduled start the rule does not allow."""
    if glass:
        raise invalid("break-glass access starts now: no start_at", "start_at_not_allowed")
    if max_lead is None:
        raise invalid(
            f"rule {rule_name!r} does not allow a scheduled start (no max_lead_minutes)",
            "start_at_not_allowed",
        )
    if start_at < now - START_SLACK:
        raise invalid("start_at is in the past", "start_at_in_past")
    if start_at - now > timedelta(minutes=max_lead):
        raise invalid(
            f"rule {rule_name!r} allows a start at most {max_lead} minutes ahead", "start_at_too_far"
        )


def _object(value: object, where: str, allowed: set[str]) -> Mapping[str, object]:
    return _mapping(value, where, allowed)  # the policy's own schema check (one wording of its errors)
