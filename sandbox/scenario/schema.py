"""What a scenario file may say: the key tables and ``validate()``, run once before anything plays.

Pure (no AWS, no moto). A step that passes ``validate()`` has every field it needs, so the steps read
their fields without checking them again. What each key means: the README's sandbox section.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

# Free-form mappings (parameters, approval_policy, tags, a tags step's expect) are not listed: their
# content is checked where it is used.
TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "description",
        "start",
        "parameters",
        "principals",
        "instances",
        "approval_policy",
        "identity_center",
        "expect_failed_invocations",
        "steps",
    }
)
PRINCIPAL_KEYS = frozenset(
    {"type", "role", "path", "tags", "operator", "groups", "user", "permission_set", "account"}
)
PRINCIPAL_TYPES = ("user", "role", "session", "sso")
# An IAM Identity Center user's session of a permission set's role (AWSReservedSSO_<set>_<hash>).
SSO_KEYS = frozenset({"type", "user", "permission_set", "account"})
# The role session name IdC sets (the user name): STS RoleSessionName, 2..64 of [\w+=,.@-].
SSO_USER = re.compile(r"^[\w+=,.@-]{2,64}$")
# Permission set names (IAM Identity Center CreatePermissionSet): 1..32 of [\w+=,.@-].
PERMISSION_SET = re.compile(r"^[\w+=,.@-]{1,32}$")
IDENTITY_CENTER_KEYS = frozenset({"groups", "permission_sets"})
PERMISSION_SET_KEYS = frozenset({"managed_policies"})
GROUP_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
INSTANCE_KEYS = frozenset({"tags", "managed"})
# Each step kind with its fields; None: the step's value is not a mapping (advance: a duration).
STEP_FIELDS: dict[str, frozenset[str] | None] = {
    "request": frozenset(
        {
            "id",
            "by",
            "for",
            "instance",
            "minutes",
            "reason",
            "start_in",
            "via",
            "break_glass",
            "ticket",
            "documents",
            "expect_error",
        }
    ),
    "approve": frozenset({"request", "by", "comment", "expect_error", "ssm_lag"}),
    "reject": frozenset({"request", "by", "comment", "expect_error"}),
    "advance": None,
    "tamper": frozenset({"principal", "tags", "recorded"}),
    "insider": frozenset({"by", "action", "request", "approvers", "instance", "tags", "policy"}),
    "fault": frozenset({"operation", "code", "times"}),
    "drop_schedule": frozenset({"request"}),
    "redeliver": frozenset({"request", "what"}),
    "reconcile": frozenset(),
    "revoke": frozenset({"request", "by", "reason", "expect_error"}),
    "extend": frozenset({"request", "id", "by", "minutes", "reason", "expect_error"}),
    "cancel": frozenset({"request", "by", "expect_error"}),
    "status": frozenset({"request", "by", "expect"}),
    "session": frozenset({"principal", "instance", "expect", "document"}),
    "connect": frozenset({"principal", "instance"}),
    "live_sessions": frozenset({"principal", "instance", "expect"}),
    "tags": frozenset({"principal", "expect"}),
    "instance_tags": frozenset({"instance", "expect"}),
    "grant": frozenset({"request", "expect", "denial"}),
    "schedules": frozenset({"expect"}),
    "notified": frozenset({"event_type", "request", "expect", "count"}),
    # Issue 17: Session Manager preferences, a grant's recorded usage, the weekly usage report.
    "session_preferences": frozenset({"inputs", "delete"}),
    "usage": frozenset({"request", "expect", "destination"}),
    "usage_report": frozenset({"expect"}),
    "history_exported": frozenset({"request", "transition", "expect", "count"}),
    # Slack (issue 19: sandbox/scenario/chat.py)
    "chat_link": frozenset({"by", "slack_user", "code", "expect_error"}),
    "chat_approve": frozenset({"request", "slack_user", "signature", "expect_error"}),
    "chat_reject": frozenset({"request", "slack_user", "signature", "expect_error"}),
    "chat_message": frozenset({"request", "channel", "expect", "buttons"}),
}
STEP_KINDS = tuple(STEP_FIELDS)
# The fields a step cannot do without (a kind not listed needs none).
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "request": frozenset({"id", "by", "instance"}),
    "approve": frozenset({"request", "by"}),
    "reject": frozenset({"request", "by"}),
    "tamper": frozenset({"principal"}),
    "insider": frozenset({"by", "action"}),
    "fault": frozenset({"operation"}),
    "drop_schedule": frozenset({"request"}),
    "redeliver": frozenset({"request"}),
    "revoke": frozenset({"request", "by"}),
    "extend": frozenset({"request", "id", "by"}),
    "cancel": frozenset({"request", "by"}),
    "status": frozenset({"request", "expect"}),
    "session": frozenset({"principal", "instance", "expect"}),
    "connect": frozenset({"principal", "instance"}),
    "live_sessions": frozenset({"principal", "instance", "expect"}),
    "tags": frozenset({"principal"}),
    "instance_tags": frozenset({"instance"}),
    "grant": frozenset({"request", "expect"}),
    "schedules": frozenset({"expect"}),
    "notified": frozenset({"event_type"}),
    "usage": frozenset({"request", "expect"}),
    "usage_report": frozenset({"expect"}),
    "chat_link": frozenset({"by", "slack_user"}),
    "chat_approve": frozenset({"request", "slack_user"}),
    "chat_reject": frozenset({"request", "slack_user"}),
    "chat_message": frozenset({"request"}),
}
# What an insider step's action needs besides by and action.
INSIDER_ACTIONS: dict[str, frozenset[str]] = {
    "forge_approval": frozenset({"request", "approvers"}),
    "retag_instance": frozenset({"instance"}),
    "write_policy": frozenset({"policy"}),
}
# Fields with a closed set of values: (kind, field) -> the values (the first is the default).
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("request", "via"): ("change_manager", "api"),
    ("redeliver", "what"): ("approval", "revoke"),
    ("insider", "action"): tuple(INSIDER_ACTIONS),
    ("chat_approve", "signature"): ("good", "bad", "stale", "replayed"),
    ("chat_reject", "signature"): ("good", "bad", "stale", "replayed"),
    ("chat_link", "code"): ("new", "last"),
}
DURATION_FIELDS = ("start_in", "ssm_lag")
# Steps that check something (so does any step with expect_error): a scenario needs at least one.
CHECK_STEPS = frozenset(
    {
        "status",
        "session",
        "connect",
        "live_sessions",
        "tags",
        "instance_tags",
        "grant",
        "schedules",
        "notified",
        "usage",
        "usage_report",
        "history_exported",
        "chat_approve",
        "chat_reject",
        "chat_message",
    }
)
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_OPERATION = re.compile(r"[a-z0-9-]+:[A-Za-z]+")


class ScenarioError(Exception):
    """The scenario file is wrong (a user mistake): reported without a traceback."""


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a scenario file; its name defaults to the file's stem."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ScenarioError(f"{path}: a scenario is a mapping with a 'steps' list")
    try:
        validate(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    data.setdefault("name", Path(path).stem)
    return data


def validate(data: dict[str, Any], *, require_checks: bool = True) -> None:
    """Refuse what the format does not know or a step lacks (with its place) and, for a file, a
    scenario without checks."""
    _known(data, TOP_LEVEL_KEYS, "top level")
    if "start" in data:
        parse_time(data["start"])
    if "approval_policy" in data and not isinstance(data["approval_policy"], dict):
        raise ScenarioError("approval_policy must be a mapping (the policy document, see the README)")
    principals = _section(data, "principals", PRINCIPAL_KEYS)
    _principals(principals)
    _identity_center(data.get("identity_center"), principals)
    _section(data, "instances", INSTANCE_KEYS)
    checks = sum(_step(index, step) for index, step in enumerate(data.get("steps") or [], start=1))
    if require_checks and not checks:
        raise ScenarioError(
            "the scenario checks nothing: add a check step ("
            + ", ".join(sorted(CHECK_STEPS))
            + ") or an expect_error"
        )


def parse_duration(text: object) -> timedelta:
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ScenarioError(f"duration {text!r} must look like 90s, 11m, 2h or 1d")
    n, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def parse_time(value: object) -> datetime:
    """An ISO-8601 time (YAML may have parsed it already); UTC when it names no zone."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"start {value!r} is not an ISO-8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _known(keys: object, allowed: frozenset[str], where: str) -> None:
    for key in keys if isinstance(keys, dict) else ():
        if key not in allowed:
            raise ScenarioError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _section(data: dict[str, Any], section: str, allowed: frozenset[str]) -> dict[str, dict[str, Any]]:
    """The named entries of ``principals`` or ``instances`` (an entry without keys as ``{}``)."""
    entries = data.get(section) or {}
    if not isinstance(entries, dict):
        raise ScenarioError(f"{section} must be a mapping of names")
    for name, spec in entries.items():
        if spec is not None and not isinstance(spec, dict):
            raise ScenarioError(f"{section[:-1]} {name}: needs a mapping")
        _known(spec, allowed, f"{section[:-1]} {name}")
    return {str(name): spec or {} for name, spec in entries.items()}


def _principals(principals: dict[str, dict[str, Any]]) -> None:
    roles: set[str] = set()
    for name, spec in principals.items():
        kind = spec.get("type", "user")
        if kind not in PRINCIPAL_TYPES:
            raise ScenarioError(f"principal {name}: type must be user, role, session or sso")
        if kind == "sso":
            _sso_principal(name, spec)
            continue
        extra = sorted(set(spec) & (SSO_KEYS - {"type"}))
        if extra:
            raise ScenarioError(f"principal {name}: {', '.join(extra)} belong to type: sso principals only")
        if kind == "session" and not (isinstance(spec.get("role"), str) and spec["role"] in roles):
            # One person's session of a (shared) role, e.g. an IAM Identity Center user.
            raise ScenarioError(f"principal {name}: a session needs 'role' naming a role declared before it")
        if spec.get("groups") and kind != "user":
            raise ScenarioError(f"principal {name}: only users belong to IAM groups")
        if kind == "role":
            roles.add(name)


def _sso_principal(name: str, spec: dict[str, Any]) -> None:
    """``{type: sso, user, permission_set, account?}``: the user's session of the permission set's role."""
    extra = sorted(set(spec) - SSO_KEYS)
    if extra:
        raise ScenarioError(
            f"principal {name}: a type: sso principal takes user, permission_set and account only, not "
            f"{', '.join(extra)} (IAM Identity Center owns its roles: no path, tags or policies of its own)"
        )
    if not isinstance(spec.get("user"), str) or not SSO_USER.fullmatch(spec["user"]):
        raise ScenarioError(
            f"principal {name}: user must be the Identity Center user name (2..64 of letters, digits and "
            "_+=,.@-), e.g. alice@example.com"
        )
    if not isinstance(spec.get("permission_set"), str) or not PERMISSION_SET.fullmatch(
        spec["permission_set"]
    ):
        raise ScenarioError(
            f"principal {name}: permission_set must name a permission set (1..32 of letters, digits and "
            "_+=,.@-), e.g. Operators"
        )
    if "account" in spec and not re.fullmatch(r"\d{12}", str(spec["account"])):
        raise ScenarioError(f"principal {name}: account must be a 12-digit account id")


def _identity_center(value: object, principals: dict[str, dict[str, Any]]) -> None:
    """``identity_center: {groups: {NAME: [user names]}, permission_sets: {NAME: {managed_policies}}}``."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ScenarioError("identity_center must be a mapping with groups and permission_sets")
    _known(value, IDENTITY_CENTER_KEYS, "identity_center")
    users = {str(p["user"]) for p in principals.values() if p.get("type") == "sso"}
    groups = value.get("groups") or {}
    if not isinstance(groups, dict):
        raise ScenarioError("identity_center.groups must map group names to lists of user names")
    for group, members in groups.items():
        where = f"identity_center.groups.{group}"
        if not isinstance(group, str) or not GROUP_NAME.fullmatch(group):
            raise ScenarioError(f"{where}: a group name is 1..128 printable characters")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ScenarioError(f"{where}: members must be a list of user names")
        unknown = sorted(set(members) - users)
        if unknown:
            raise ScenarioError(
                f"{where}: {', '.join(unknown)} is no user of a type: sso principal (members are Identity "
                "Center user names, e.g. alice@example.com)"
            )
    sets = value.get("permission_sets") or {}
    if not isinstance(sets, dict):
        raise ScenarioError("identity_center.permission_sets must map permission set names to their policies")
    for name, spec in sets.items():
        where = f"identity_center.permission_sets.{name}"
        if not isinstance(name, str) or not PERMISSION_SET.fullmatch(name):
            raise ScenarioError(f"{where}: a permission set name is 1..32 of letters, digits and _+=,.@-")
        if not isinstance(spec, dict):
            raise ScenarioError(f"{where}: needs a mapping with managed_policies")
        _known(spec, PERMISSION_SET_KEYS, where)
        policies = spec.get("managed_policies", [])
        if not isinstance(policies, list) or not all(isinstance(p, str) and p for p in policies):
            raise ScenarioError(
                f"{where}.managed_policies: a list of policy names or ARNs ('operator': SessionGate's "
                "operator policy)"
            )


def _step(index: int, step: object) -> bool:
    """Check one step's shape; True when the step checks something."""
    if not isinstance(step, dict) or len(step) != 1:
        raise ScenarioError(f"step {index}: each step is a mapping with one key of {', '.join(STEP_KINDS)}")
    ((kind, spec),) = step.items()
    if kind not in STEP_FIELDS:
        raise ScenarioError(f"step {index}: unknown step {kind!r} (expected one of {', '.join(STEP_KINDS)})")
    fields = STEP_FIELDS[kind]
    if fields is None:
        _duration(index, spec)
        return False
    if not isinstance(spec, dict):
        raise ScenarioError(f"step {index}: {kind} needs a mapping")
    for key in spec:
        if key not in fields:
            hint = f"allowed: {', '.join(sorted(fields))}" if fields else "it takes none"
            raise ScenarioError(f"step {index} ({kind}): unknown field {key!r} ({hint})")
    _require(index, kind, spec, REQUIRED_FIELDS.get(kind, frozenset()))
    for (choice_kind, key), values in CHOICES.items():
        if choice_kind == kind and spec.get(key, values[0]) not in values:
            raise ScenarioError(f"step {index} ({kind}): {key} must be {_one_of(values)}")
    for key in DURATION_FIELDS:
        if key in spec:
            _duration(index, spec[key])
    _EXTRA_CHECKS.get(kind, _nothing)(index, spec)
    return kind in CHECK_STEPS or "expect_error" in spec


def _require(index: int, kind: str, spec: dict[str, Any], required: frozenset[str]) -> None:
    for key in sorted(required):
        if key not in spec:
            raise ScenarioError(f"step {index} ({kind}): missing {key!r}")


def _duration(index: int, text: object) -> None:
    try:
        parse_duration(text)
    except ScenarioError as exc:
        raise ScenarioError(f"step {index}: {exc}") from None


def _insider(index: int, spec: dict[str, Any]) -> None:
    _require(index, f"insider {spec['action']}", spec, INSIDER_ACTIONS[spec["action"]])
    if spec["action"] == "forge_approval" and not spec["approvers"]:
        raise ScenarioError(f"step {index} (insider forge_approval): approvers is empty")


def _fault(index: int, spec: dict[str, Any]) -> None:
    if not _OPERATION.fullmatch(str(spec["operation"])):
        raise ScenarioError(f"step {index} (fault): operation must look like iam:TagUser")


def _nothing(index: int, spec: dict[str, Any]) -> None:
    """No check beyond the tables."""


_EXTRA_CHECKS: dict[str, Callable[[int, dict[str, Any]], None]] = {"insider": _insider, "fault": _fault}


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]
