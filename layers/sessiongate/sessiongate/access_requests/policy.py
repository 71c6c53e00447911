"""Approval policy of the native front door: who may request and approve access to which
instances (pure, no AWS).

A JSON document of ``rules``: the first rule whose ``instances`` selector matches applies (none: the
request is refused); its ``levels`` are approved in order, each by ``min_approvals`` distinct approvers
matched by case-insensitive ARN globs; ``break_glass`` lets the requester approve alone, briefly.
Nobody approves their own request or one whose access they would receive (:func:`check_not_involved`,
fail closed). A custom policy is a KMS-HMAC-signed :class:`Envelope` binding the parameter's name, its
SSM version and a growing ``serial`` (:func:`check_serial` refuses older ones). The format is in the
README ("Requesting access through the native API"); why the serial exists, SECURITY.md (row 1).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sessiongate.access_requests.errors import Conflict, NotAllowed, invalid
from sessiongate.access_requests.groups import Membership, group_names, in_groups, split_principals
from sessiongate.access_requests.records import Approval, Request, canonical_json, signed_message
from sessiongate.core.guardrails import IDENTITY_CENTER_ROLE_PATH
from sessiongate.core.identity import INSTANCE_ID_RE, Identity, may_be_same, parse_identity
from sessiongate.text import visible_length

if TYPE_CHECKING:
    from sessiongate.access_requests.auto_approval import Statement
    from sessiongate.access_requests.rule_limits import MaxActive, Reminders, SessionDocument, TicketRule

POLICY_VERSION = 1
MAX_RULES = 100
MAX_LEVELS = 5
MAX_PATTERNS = 50
MAX_MIN_APPROVALS = 10
DEFAULT_BREAK_GLASS_MINUTES = 15
DEFAULT_BREAK_GLASS_REASON = 20
DEFAULT_BREAK_GLASS_PER_DAY = 3


# Domain of the approval policy MAC (KMS ApprovalPolicyKey).
POLICY_DOMAIN = "sessiongate-approval-policy-v1"
ENVELOPE_KEYS = frozenset({"policy", "parameter", "version", "serial", "mac", "key_id"})
# The default policy's approver when NativeApproverArns is empty: an ARN nobody can hold.
NOBODY = "arn:aws:iam::000000000000:role/configure-the-sessiongate-approval-policy"


class PolicyError(Exception):
    """The policy document is invalid: the API refuses every decision until it is fixed (fail closed)."""


class PolicyRejected(PolicyError):
    """The policy parameter is not signed by SessionGate's deployers (tampered, unsigned, other key)."""


@dataclass(frozen=True)
class Level:
    name: str
    approvers: tuple[str, ...]
    min_approvals: int = 1
    # Identity Center groups whose members approve at this level (:mod:`.groups`), and who answers.
    groups: tuple[str, ...] = ()
    membership: Membership | None = field(default=None, compare=False, repr=False)
    # The accounts whose AWSReservedSSO_* sessions are Identity Center people (:func:`.groups.bind`).
    served: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def admits(self, arn: str) -> bool:
        """``arn`` approves at this level: an ARN pattern matches, or it is in one of the groups."""
        return arn_matches(arn, self.approvers) or in_groups(self.membership, arn, self.groups, self.served)


@dataclass(frozen=True)
class BreakGlass:
    enabled: bool = False
    max_duration_minutes: int = DEFAULT_BREAK_GLASS_MINUTES
    min_reason_length: int = DEFAULT_BREAK_GLASS_REASON
    requesters: tuple[str, ...] = ()
    # Self-approvals a requester may make in any 24 hours (all rules): break-glass is for emergencies,
    # not a way around approvers.
    max_per_day: int = DEFAULT_BREAK_GLASS_PER_DAY


@dataclass(frozen=True)
class Rule:
    name: str
    levels: tuple[Level, ...]
    instance_ids: tuple[str, ...] = ()
    instance_tags: tuple[tuple[str, str], ...] = ()
    requesters: tuple[str, ...] = ()
    max_duration_minutes: int | None = None
    break_glass: BreakGlass = BreakGlass()
    requester_groups: tuple[str, ...] = ()
    membership: Membership | None = field(default=None, compare=False, repr=False)
    served: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    # Issue 18 (schema and checks in :mod:`.rule_limits`): a ticket the rule requires, live grants capped.
    ticket: TicketRule | None = None
    max_active: MaxActive | None = None
    max_lead_minutes: int | None = None  # how far ahead ``start_at`` may be (unset: no scheduled start)
    reminders: Reminders | None = None  # re-notify and escalate pending requests (the sweep)
    documents: tuple[SessionDocument, ...] | None = None  # Session Manager documents (None: the shell)
    # Issue 19: whether a click in a chat may approve under this rule, and the Slack channel its
    # requests are posted in (:mod:`sessiongate.chat`).
    approve_in_chat: bool = True
    slack_channel: str | None = None

    def matches(self, instance_id: str, tags: Mapping[str, str]) -> bool:
        if self.instance_ids and instance_id not in self.instance_ids:
            return False
        return all(
            key in tags and fnmatch.fnmatchcase(tags[key], pattern) for key, pattern in self.instance_tags
        )

    def may_request(self, arn: str) -> bool:
        if not self.requesters and not self.requester_groups:
            return True
        return arn_matches(arn, self.requesters) or in_groups(
            self.membership, arn, self.requester_groups, self.served
        )

    def may_review(self, arn: str) -> bool:
        """An approver at any level (may see, reject and revoke requests under this rule)."""
        return any(level.admits(arn) for level in self.levels)


@dataclass(frozen=True)
class ApprovalPolicy:
    rules: tuple[Rule, ...]
    # Issue 18: permit/forbid statements that approve requests without a person (:mod:`.auto_approval`).
    auto_approval: tuple[Statement, ...] = ()

    def rule_for(self, instance_id: str, tags: Mapping[str, str]) -> Rule | None:
        return next((r for r in self.rules if r.matches(instance_id, tags)), None)

    def rule_named(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    @classmethod
    def parse_json(cls, text: str) -> ApprovalPolicy:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"the approval policy is not JSON: {exc}") from None
        return cls.parse(document)

    @classmethod
    def parse(cls, document: object) -> ApprovalPolicy:
        from sessiongate.access_requests.auto_approval import parse_statements  # (it imports this module)

        doc = _mapping(document, "policy", {"version", "rules", "description", "auto_approval"})
        if doc.get("version") != POLICY_VERSION:
            raise PolicyError(f"policy version must be {POLICY_VERSION}")
        rules = doc.get("rules")
        if not isinstance(rules, list) or not 1 <= len(rules) <= MAX_RULES:
            raise PolicyError(f"policy.rules must be a list of 1..{MAX_RULES} rules")
        parsed = tuple(_rule(r, i) for i, r in enumerate(rules))
        names = [r.name for r in parsed]
        if len(set(names)) != len(names):
            raise PolicyError("rule names must be unique")
        return cls(parsed, parse_statements(doc.get("auto_approval"), names))


@dataclass(frozen=True)
class VerifiedPolicy:
    """A policy whose origin was checked: the stack's default, or a parameter signed by a deployer."""

    policy: ApprovalPolicy
    digest: str  # SHA-256 of the canonical document: what PolicyChanged reports
    source: str  # the parameter name, or "stack default"
    parameter_version: int | None = None
    serial: int | None = None  # the signed serial (None: the stack default, which nobody signs)

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name,
                "levels": [
                    {
                        "approvers": [*lv.approvers, *group_names(lv.groups)],
                        "min_approvals": lv.min_approvals,
                    }
                    for lv in r.levels
                ],
                "break_glass": r.break_glass.enabled,
            }
            for r in self.policy.rules
        ]


def policy_message(document: object, parameter: str, version: int, serial: int) -> bytes:
    """What the policy MAC binds: the canonical document, the parameter and its version (SSM numbers
    every write; nobody chooses the number) and the signer's serial (only grows), domain-separated."""
    return signed_message(
        POLICY_DOMAIN,
        canonical_json({"policy": document, "parameter": parameter, "version": version, "serial": serial}),
    )


def new_serial(now_seconds: float) -> int:
    """The serial of a policy signed now: the signer's clock in milliseconds since the epoch."""
    return int(now_seconds * 1000)


def check_serial(source: str, serial: int, highest: int) -> None:
    """Refuse a verified envelope older than the newest one the request API has accepted."""
    if serial < highest:
        raise PolicyRejected(
            f"the approval policy in {source} was signed with serial {serial}, before the policy already "
            f"in effect (serial {highest}): an old signed policy written back? A deployer signs it again"
        )


def policy_digest(document: object) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class Envelope:
    """The policy parameter's value: the document, where it is meant to be, and a deployer's MAC."""

    policy: Mapping[str, Any]
    parameter: str
    version: int
    mac: str
    key_id: str
    serial: int = 0

    def message(self) -> bytes:
        return policy_message(self.policy, self.parameter, self.version, self.serial)

    def dumps(self) -> str:
        return json.dumps(
            {
                "policy": self.policy,
                "parameter": self.parameter,
                "version": self.version,
                "serial": self.serial,
                "mac": self.mac,
                "key_id": self.key_id,
            },
            indent=1,
            sort_keys=True,
        )


def open_envelope(text: str) -> Envelope:
    """The envelope in a parameter value; :class:`PolicyRejected` for anything else."""
    try:
        value = json.loads(text)
    except ValueError:
        raise PolicyRejected("the approval policy parameter is not a signed envelope (not JSON)") from None
    if (
        not isinstance(value, Mapping)
        or set(value) != ENVELOPE_KEYS
        or not isinstance(value["policy"], Mapping)
        or not isinstance(value["parameter"], str)
        or isinstance(value["version"], bool)
        or not isinstance(value["version"], int)
        or isinstance(value["serial"], bool)
        or not isinstance(value["serial"], int)
        or not isinstance(value["mac"], str)
        or not isinstance(value["key_id"], str)
    ):
        raise PolicyRejected(
            "the approval policy parameter is not a signed envelope {policy, parameter, version, serial, "
            "mac, key_id}: sign it with `sessiongate policy sign`"
        )
    return Envelope(
        value["policy"], value["parameter"], value["version"], value["mac"], value["key_id"], value["serial"]
    )


def default_document(approvers: Sequence[str]) -> dict[str, Any]:
    """The stack's default policy: one rule, every instance, one level of ``approvers``."""
    return {
        "version": POLICY_VERSION,
        "rules": [
            {
                "name": "default",
                "levels": [
                    {"name": "approvers", "approvers": list(approvers) or [NOBODY], "min_approvals": 1}
                ],
            }
        ],
    }


def approvals_satisfy(rule: Rule, request: Request, *, break_glass_approver: str) -> str | None:
    """Why the approvals of record do not satisfy ``rule`` now (``None``: they do).

    The grant re-checks this under the current verified policy, so a record whose approvers were
    never enough (or no longer are) is not granted, whoever wrote it.
    """
    if request.break_glass:
        glass = rule.break_glass
        if not glass.enabled:
            return f"rule {rule.name!r} does not allow break-glass access"
        if glass.requesters and not arn_matches(request.requester_arn, glass.requesters):
            return f"the requester may not use break-glass under rule {rule.name!r}"
        if request.duration_minutes > glass.max_duration_minutes:
            return f"break-glass access is capped at {glass.max_duration_minutes} minutes"
        if request.approver_arns != (break_glass_approver,):
            return "a break-glass request's approver of record is SessionGate's request API"
        return None
    level = current_level(rule, request.approvals)
    if level is not None:
        return f"level {level + 1} ({rule.levels[level].name}) of rule {rule.name!r} is not met"
    if rule.max_duration_minutes is not None and request.duration_minutes > rule.max_duration_minutes:
        return f"rule {rule.name!r} allows at most {rule.max_duration_minutes} minutes"
    people = [parse_identity(a.approver_arn) for a in request.approvals]
    for i, person in enumerate(people):
        if person is None or any(may_be_same(person, other) for other in people[:i]):
            return "one approver is counted twice"
    return None


# ---------------------------------------------------------------------------------------- matching
def arn_forms(arn: str) -> list[str]:
    """The ARNs a pattern may match for one caller (see the module docstring)."""
    forms = [arn]
    identity = parse_identity(arn)
    if identity is not None and identity.kind in ("role", "user"):
        forms.append(f"arn:{identity.partition}:iam::{identity.account}:{identity.kind}/{identity.name}")
    return forms


def arn_matches(arn: str, patterns: Sequence[str]) -> bool:
    forms = [f.lower() for f in arn_forms(arn)]
    return any(fnmatch.fnmatchcase(form, pattern.lower()) for form in forms for pattern in patterns)


# ---------------------------------------------------------------------------------------- decisions
def counted(rule: Rule, approvals: Sequence[Approval]) -> list[int]:
    """Approvals per level that still count under the current rule (approver still matches the level)."""
    counts = [0] * len(rule.levels)
    for approval in approvals:
        if 0 <= approval.level < len(rule.levels) and rule.levels[approval.level].admits(
            approval.approver_arn
        ):
            counts[approval.level] += 1
    return counts


def current_level(rule: Rule, approvals: Sequence[Approval]) -> int | None:
    """The first level still short of approvals; ``None`` when every level is met."""
    counts = counted(rule, approvals)
    for index, level in enumerate(rule.levels):
        if counts[index] < level.min_approvals:
            return index
    return None


def progress(rule: Rule, approvals: Sequence[Approval]) -> list[dict[str, Any]]:
    counts = counted(rule, approvals)
    return [
        {"level": index + 1, "name": level.name, "approved": counts[index], "required": level.min_approvals}
        for index, level in enumerate(rule.levels)
    ]


def approver_level(rule: Rule, request: Request, approver_arn: str) -> int:
    """The level ``approver_arn`` approves at now; raises a refusal saying why it may not."""
    check_not_involved(request, approver_arn)
    approver = parse_identity(approver_arn)
    for previous in request.approvals:
        if may_be_same(approver, parse_identity(previous.approver_arn)):
            raise Conflict("already_approved", "you have approved this request already")
    level = current_level(rule, request.approvals)
    if level is None:
        raise Conflict("invalid_state", "every approval level is already met")
    if rule.levels[level].admits(approver_arn):
        return level
    if any(later.admits(approver_arn) for later in rule.levels[level + 1 :]):
        raise NotAllowed(
            "level_not_reached",
            f"level {level + 1} ({rule.levels[level].name}) must approve before your level can",
        )
    raise NotAllowed("not_an_approver", f"you are not an approver of rule {rule.name!r}")


def check_not_involved(request: Request, approver_arn: str) -> None:
    """Separation of duties (fail closed): not the requester, and not who receives the access."""
    approver = parse_identity(approver_arn)
    if approver is None or may_be_same(approver, parse_identity(request.requester_arn)):
        raise NotAllowed("self_approval", "you cannot approve or reject your own request")
    if may_be_same(approver, receiver(request, approver.partition)):
        raise NotAllowed(
            "approver_is_operator",
            f"you would receive this access ({request.principal_type.value} {request.principal_name})",
        )


def receiver(request: Request, partition: str) -> Identity:
    """Who would receive the access: the principal, or only the requester's own session of it when the
    principal is an IAM Identity Center role (in its reserved path) and the requester one of its
    sessions. IAM refuses to tag such a role, so no grant ever goes to the whole role: with instance
    binding (``BindingMode`` auto or instance) it goes to the requester's session alone, with principal
    binding it is denied. Another person's session of it (Identity Center sets the session names)
    then receives nothing. For any other role the whole role may receive it (the grant may tag it),
    and the engine's ``check_approval`` applies the exact binding again at grant time."""
    requester = parse_identity(request.requester_arn)
    session = None
    if (
        requester is not None
        and request.principal_type.value == "role"
        and request.principal_arn.endswith(f":role{IDENTITY_CENTER_ROLE_PATH}{request.principal_name}")
        and requester.kind == "role"
        and requester.account == request.account
        and requester.name == request.principal_name
    ):
        session = requester.session
    return Identity(partition, request.account, request.principal_type.value, request.principal_name, session)


def check_break_glass(rule: Rule, requester_arn: str, duration_minutes: int, reason: str) -> None:
    glass = rule.break_glass
    if not glass.enabled:
        raise NotAllowed("break_glass_not_allowed", f"rule {rule.name!r} does not allow break-glass access")
    if glass.requesters and not arn_matches(requester_arn, glass.requesters):
        raise NotAllowed("break_glass_not_allowed", f"you may not use break-glass under rule {rule.name!r}")
    if duration_minutes > glass.max_duration_minutes:
        raise invalid(
            f"break-glass access is capped at {glass.max_duration_minutes} minutes",
            "break_glass_duration_over_cap",
        )
    if visible_length(reason) < glass.min_reason_length:
        raise invalid(
            f"break-glass needs a reason of at least {glass.min_reason_length} visible characters "
            "(spaces and combining marks do not count)",
            "break_glass_reason_too_short",
        )


def default_duration(rule: Rule, default_minutes: int, *, break_glass: bool) -> int:
    """The duration of a request that names none: the global default, within the rule's caps."""
    caps = [default_minutes]
    if rule.max_duration_minutes is not None:
        caps.append(rule.max_duration_minutes)
    if break_glass:
        caps.append(rule.break_glass.max_duration_minutes)
    return min(caps)


def check_duration(rule: Rule, duration_minutes: int) -> None:
    if rule.max_duration_minutes is not None and duration_minutes > rule.max_duration_minutes:
        raise invalid(
            f"rule {rule.name!r} allows at most {rule.max_duration_minutes} minutes", "invalid_duration"
        )


# ---------------------------------------------------------------------------------------- parsing
def _mapping(value: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where} must be an object")
    unknown = set(value) - allowed
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}")
    return value


def _patterns(value: object, where: str, *, required: bool) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if (
        not isinstance(value, list)
        or not (1 if required else 0) <= len(value) <= MAX_PATTERNS
        or not all(isinstance(p, str) and p.startswith("arn:") and len(p) <= 2048 for p in value)
    ):
        raise PolicyError(
            f"{where} must be a list of up to {MAX_PATTERNS} ARN patterns (starting with 'arn:')"
        )
    return tuple(value)


def _principals(value: object, where: str, *, required: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """ARN patterns and Identity Center groups (:mod:`.groups`) of an approvers or requesters list."""
    try:
        patterns, groups = split_principals(value, where, required=required, max_items=MAX_PATTERNS)
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    if len(set(groups)) != len(groups):
        raise PolicyError(f"{where} names an Identity Center group twice")
    return _patterns(patterns, where, required=False), tuple(groups)


def _int(value: object, where: str, low: int, high: int, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{where} must be an integer from {low} to {high}")
    return value


def _rule(value: object, index: int) -> Rule:
    from sessiongate.access_requests import rule_limits  # (it imports this module)

    where = f"rules[{index}]"
    data = _mapping(
        value,
        where,
        {
            "name",
            "description",
            "instances",
            "requesters",
            "levels",
            "max_duration_minutes",
            "break_glass",
            "ticket",
            "max_active",
            "max_lead_minutes",
            "reminders",
            "documents",
            "approve_in_chat",
            "slack_channel",
        },
    )
    name = data.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise PolicyError(f"{where}.name must be a string of 1..64 characters")
    ids, tags = _instances(data.get("instances", {}), where)
    requesters, requester_groups = _principals(data.get("requesters"), f"{where}.requesters", required=False)
    return Rule(
        name=name,
        levels=_levels(data.get("levels"), where),
        instance_ids=ids,
        instance_tags=tags,
        requesters=requesters,
        requester_groups=requester_groups,
        max_duration_minutes=_int(
            data.get("max_duration_minutes"), f"{where}.max_duration_minutes", 1, 1440, None
        ),
        break_glass=_break_glass(data.get("break_glass", {}), where),
        ticket=rule_limits.parse_ticket(data.get("ticket"), where),
        max_active=rule_limits.parse_max_active(data.get("max_active"), where),
        max_lead_minutes=rule_limits.parse_max_lead(data.get("max_lead_minutes"), where),
        reminders=rule_limits.parse_reminders(data.get("reminders"), where),
        documents=rule_limits.parse_documents(data.get("documents"), where),
        approve_in_chat=_flag(data.get("approve_in_chat"), f"{where}.approve_in_chat", default=True),
        slack_channel=_slack_channel(data.get("slack_channel"), f"{where}.slack_channel"),
    )


# A channel id (C..., G...) or a channel name ("#ops-approvals"): Slack's names are lower case letters,
# digits, hyphens and underscores, at most 80 characters ("Create a channel", Slack help).
SLACK_CHANNEL_RE = re.compile(r"^(#?[a-z0-9][a-z0-9_-]{0,79}|[CG][A-Z0-9]{8,20})$")


def _flag(value: object, where: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise PolicyError(f"{where} must be true or false")
    return value


def _slack_channel(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SLACK_CHANNEL_RE.fullmatch(value):
        raise PolicyError(f"{where} must be a Slack channel id (C0123456789) or name (#ops-approvals)")
    return value


def _instances(value: object, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    instances = _mapping(value, f"{where}.instances", {"ids", "tags"})
    ids = instances.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and INSTANCE_ID_RE.fullmatch(i) for i in ids):
        raise PolicyError(f"{where}.instances.ids must be a list of instance ids")
    tags = instances.get("tags", {})
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise PolicyError(f"{where}.instances.tags must map tag keys to (glob) values")
    return tuple(ids), tuple(sorted(tags.items()))


def _levels(levels: object, where: str) -> tuple[Level, ...]:
    if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
        raise PolicyError(f"{where}.levels must be a list of 1..{MAX_LEVELS} levels")
    parsed = []
    for k, level in enumerate(levels):
        lw = f"{where}.levels[{k}]"
        ld = _mapping(level, lw, {"name", "approvers", "min_approvals"})
        approvers, groups = _principals(ld.get("approvers"), f"{lw}.approvers", required=True)
        minimum = _int(ld.get("min_approvals"), f"{lw}.min_approvals", 1, MAX_MIN_APPROVALS, 1)
        assert minimum is not None
        level_name = ld.get("name", f"level {k + 1}")
        if not isinstance(level_name, str) or not 1 <= len(level_name) <= 64:
            raise PolicyError(f"{lw}.name must be a string of 1..64 characters")
        parsed.append(Level(level_name, approvers, minimum, groups))
    return tuple(parsed)


def _break_glass(value: object, where: str) -> BreakGlass:
    glass = _mapping(
        value,
        f"{where}.break_glass",
        {"enabled", "max_duration_minutes", "min_reason_length", "requesters", "max_per_day"},
    )
    enabled = glass.get("enabled", False)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{where}.break_glass.enabled must be true or false")
    glass_minutes = _int(
        glass.get("max_duration_minutes"), f"{where}.break_glass.max_duration_minutes", 1, 60, 15
    )
    glass_reason = _int(glass.get("min_reason_length"), f"{where}.break_glass.min_reason_length", 1, 300, 20)
    glass_per_day = _int(
        glass.get("max_per_day"), f"{where}.break_glass.max_per_day", 1, 24, DEFAULT_BREAK_GLASS_PER_DAY
    )
    assert glass_minutes is not None
    assert glass_reason is not None
    assert glass_per_day is not None
    return BreakGlass(
        enabled,
        glass_minutes,
        glass_reason,
        _patterns(glass.get("requesters"), f"{where}.break_glass.requesters", required=False),
        glass_per_day,
    )
