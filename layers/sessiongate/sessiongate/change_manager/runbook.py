"""The parameters of the change request's one runbook (AllowSsmSessionStartRunbook): what to grant.

SSM returns each parameter as a list of strings (``Runbooks[0].Parameters``); each must hold exactly one
valid value, except ``ValidityMinutes`` (absent: the stack's default) and ``AccountId`` (optional).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sessiongate.core.identity import ACCOUNT_RE, INSTANCE_ID_RE, PRINCIPAL_NAME_RE, PrincipalType
from sessiongate.core.model import Denial
from sessiongate.settings import Settings

P_INSTANCE, P_TYPE, P_NAME, P_MINUTES = "InstanceId", "PrincipalType", "PrincipalName", "ValidityMinutes"
P_ACCOUNT = "AccountId"  # optional: a member account (Organizations); "this", empty or absent = this one
MAX_MINUTES = 100_000


@dataclass(frozen=True)
class RunbookParameters:
    instance_id: str
    principal_type: PrincipalType
    principal_name: str
    duration_minutes: int
    account: str | None  # a member account; None = the stack's own


def runbook_parameters(
    runbooks: Sequence[Mapping[str, Any]], settings: Settings
) -> RunbookParameters | list[Denial]:
    """The parameters of the single runbook, or why they cannot be granted."""
    if len(runbooks) != 1:
        return [Denial("invalid_parameters", f"expected exactly one runbook, found {len(runbooks)}")]
    raw = runbooks[0].get("Parameters") or {}
    params, denials = _single_values(raw, settings)
    account, account_denials = _target_account(raw)
    denials += account_denials
    if denials:
        return denials
    denials = _value_denials(params)
    if denials:
        return denials
    return RunbookParameters(
        instance_id=params[P_INSTANCE],
        principal_type=PrincipalType.parse(params[P_TYPE]),
        principal_name=params[P_NAME],
        duration_minutes=int(params[P_MINUTES]),
        account=account,
    )


def _single_values(raw: Mapping[str, Any], settings: Settings) -> tuple[dict[str, str], list[Denial]]:
    """The one (stripped) value of each required parameter; ValidityMinutes defaults to the stack's."""
    params: dict[str, str] = {}
    denials: list[Denial] = []
    for name in (P_INSTANCE, P_TYPE, P_NAME, P_MINUTES):
        values = raw.get(name)
        if values is None and name == P_MINUTES:
            params[name] = str(settings.default_validity_minutes)
            continue
        if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
            denials.append(Denial("invalid_parameters", f"runbook parameter {name} must have one value"))
            continue
        params[name] = values[0].strip()
    return params, denials


def _target_account(raw: Mapping[str, Any]) -> tuple[str | None, list[Denial]]:
    """The member account named by ``AccountId``; ``None`` for this one ("this", empty or absent)."""
    value = raw.get(P_ACCOUNT)
    if value in (None, [], [""], ["this"]):
        return None, []
    if not isinstance(value, list) or len(value) != 1 or not ACCOUNT_RE.fullmatch(str(value[0])):
        return None, [Denial("invalid_parameters", f"{P_ACCOUNT} must be one 12-digit account id")]
    return str(value[0]), []


def _value_denials(params: Mapping[str, str]) -> list[Denial]:
    """Each value has the shape of what it names (an instance id, User or Role, an IAM name, minutes)."""
    denials: list[Denial] = []
    if not INSTANCE_ID_RE.fullmatch(params[P_INSTANCE]):
        denials.append(
            Denial("invalid_parameters", f"{P_INSTANCE} {params[P_INSTANCE][:40]!r} is not an instance id")
        )
    if params[P_TYPE].lower() not in ("user", "role"):
        denials.append(Denial("invalid_parameters", f"{P_TYPE} must be User or Role"))
    if not PRINCIPAL_NAME_RE.fullmatch(params[P_NAME]):
        denials.append(Denial("invalid_parameters", f"{P_NAME} {params[P_NAME][:64]!r} is not an IAM name"))
    minutes = params[P_MINUTES]
    # ASCII digits only: str.isdigit also takes "²", which int() refuses (a crash, not a denial). The
    # runbook's allowedPattern says as much, but an SSM admin can rewrite the runbook.
    if not (minutes.isascii() and minutes.isdigit()) or not 1 <= int(minutes) <= MAX_MINUTES:
        denials.append(Denial("invalid_parameters", f"{P_MINUTES} must be a positive whole number"))
    return denials
