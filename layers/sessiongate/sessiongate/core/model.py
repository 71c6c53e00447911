"""Domain records and the normalized ``AccessApproved`` contract shared by both front doors."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.identity import (
    ACCOUNT_RE,
    INSTANCE_ID_RE,
    PRINCIPAL_NAME_RE,
    PrincipalType,
    parse_identity,
)
from sessiongate.errors import InvalidInput
from sessiongate.text import forbidden_characters

SCHEMA_VERSION = "1"
EVENT_SOURCE = "sessiongate"
ACCESS_APPROVED = "AccessApproved"
# Grant ids become part of Scheduler schedule names (^[0-9a-zA-Z-_.]+$, <= 64 characters).
GRANT_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")
MAX_REASON = 512
MAX_APPROVERS = 25


class GrantStatus(StrEnum):
    PROVISIONING = "PROVISIONING"
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    DENIED = "DENIED"


class Origin(StrEnum):
    CHANGE_MANAGER = "change-manager"
    NATIVE = "native"


@dataclass(frozen=True)
class Denial:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class AccessApproved:
    """One approved request for a shell on one instance, whichever front door it came through."""

    grant_id: str
    origin: Origin
    origin_ref: str
    account: str
    instance_id: str
    principal_type: PrincipalType
    principal_name: str
    requester_arn: str
    approver_arns: tuple[str, ...]
    duration_minutes: int
    not_before: datetime
    approved_at: datetime
    reason: str = ""
    bound_user_id: str | None = None
    # The origin's signed approval, when it hands one over (native: the approval facts and the request
    # API's MAC over them, ``access_requests/records.py``): the verifier checks it instead of reading it.
    approval: Mapping[str, Any] | None = None

    def to_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "grant_id": self.grant_id,
            "origin": self.origin.value,
            "origin_ref": self.origin_ref,
            "account": self.account,
            "instance_id": self.instance_id,
            "principal_type": self.principal_type.value,
            "principal_name": self.principal_name,
            "requester_arn": self.requester_arn,
            "approver_arns": list(self.approver_arns),
            "duration_minutes": self.duration_minutes,
            "not_before": to_iso(self.not_before),
            "approved_at": to_iso(self.approved_at),
            "reason": self.reason,
        }
        if self.bound_user_id:
            detail["bound_user_id"] = self.bound_user_id
        if self.approval is not None:
            detail["approval"] = dict(self.approval)
        return detail

    @classmethod
    def from_detail(cls, detail: object) -> AccessApproved:
        """Validate an ``AccessApproved`` event detail. Raises :class:`InvalidInput` with the field."""
        if not isinstance(detail, Mapping):
            raise InvalidInput("event detail must be an object", field="detail")
        if detail.get("schema_version") != SCHEMA_VERSION:
            raise InvalidInput(
                f"unsupported schema_version {detail.get('schema_version')!r}", field="schema_version"
            )
        approvers = _approvers(detail)
        try:
            origin = Origin(_str(detail, "origin"))
        except ValueError:
            raise InvalidInput(f"unknown origin {detail.get('origin')!r}", field="origin") from None
        try:
            principal_type = PrincipalType.parse(detail.get("principal_type"))
        except ValueError as exc:
            raise InvalidInput(str(exc), field="principal_type") from None
        bound, reason = _bound_user_id(detail), _reason(detail)
        return cls(
            grant_id=_match(detail, "grant_id", GRANT_ID_RE),
            origin=origin,
            origin_ref=_str(detail, "origin_ref", limit=128),
            account=_match(detail, "account", ACCOUNT_RE),
            instance_id=_match(detail, "instance_id", INSTANCE_ID_RE),
            principal_type=principal_type,
            principal_name=_match(detail, "principal_name", PRINCIPAL_NAME_RE),
            requester_arn=_arn(detail, "requester_arn"),
            approver_arns=approvers,
            duration_minutes=_int(detail, "duration_minutes"),
            not_before=_time(detail, "not_before"),
            approved_at=_time(detail, "approved_at"),
            reason=reason,
            bound_user_id=bound,
            approval=_approval(detail),
        )


@dataclass
class Grant:
    """The ledger's record of one grant (DynamoDB item ``GRANT#<grant_id>``)."""

    grant_id: str
    status: GrantStatus
    origin: str
    origin_ref: str
    account: str
    instance_id: str
    principal_type: str
    principal_name: str
    principal_arn: str
    requester_arn: str
    approver_arns: list[str]
    duration_minutes: int
    created_at: str
    expires_at: str | None = None
    slot: int | None = None
    schedule_name: str | None = None
    bound_user_id: str | None = None
    reason: str = ""
    denials: list[dict[str, str]] = field(default_factory=list)
    revoked_at: str | None = None
    revoke_reason: str | None = None
    revoked_by: str | None = None
    # When the grant was (re)bound to its principal: it may tag only within ``grant.BIND_WINDOW`` of it.
    activated_at: str | None = None
    # When the record became DENIED (its AccessDenied's time; older records: created_at).
    denied_at: str | None = None
    # Where the slot tag lives (core/slots.py BindingMode): "principal" (records of earlier releases
    # have no value: principal) or "instance".
    binding: str = "principal"
    # Where the grant's sessions' logs go (RequireSessionLogging on: read from the target account's
    # Session Manager preferences when the grant was checked): s3_bucket/s3_prefix and/or log_group.
    log_destination: dict[str, Any] | None = None
    # The Session Manager sessions the principal opened on the instance during the grant (recorded after
    # the revocation, out of band: core/usage.py); None until recorded.
    sessions: list[dict[str, Any]] | None = None
    # When the sessions were recorded, and why they could not be (then ``sessions`` stays None).
    usage_recorded_at: str | None = None
    usage_unknown: str | None = None
    # How many sessions were found, when more than ``sessions`` keeps (core/usage.py MAX_SESSIONS).
    session_count: int | None = None

    @property
    def expires(self) -> datetime | None:
        return parse_iso(self.expires_at) if self.expires_at else None


class Result(StrEnum):
    """What a trigger ended in (``Outcome.result``); the values are what callers and logs see."""

    GRANTED = "granted"
    DENIED = "denied"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    IGNORED = "ignored"
    RECONCILED = "reconciled"
    EMITTED = "emitted"
    DEFERRED = "deferred"


@dataclass(frozen=True, init=False)
class Outcome:
    """What a handler did; returned to the caller and logged."""

    result: Result
    grant_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self, result: Result | str, grant_id: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> None:
        # A plain string is accepted (the front doors pass literals) but must be a known result.
        object.__setattr__(self, "result", Result(result))
        object.__setattr__(self, "grant_id", grant_id)
        object.__setattr__(self, "detail", {} if detail is None else detail)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result}
        if self.grant_id:
            out["grant_id"] = self.grant_id
        out.update(self.detail)
        return out


def _approvers(detail: Mapping[str, Any]) -> tuple[str, ...]:
    approvers = detail.get("approver_arns")
    if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
        raise InvalidInput("approver_arns must be a list of strings", field="approver_arns")
    if len(approvers) > MAX_APPROVERS:
        raise InvalidInput(f"at most {MAX_APPROVERS} approvers", field="approver_arns")
    return tuple(approvers)


MAX_APPROVAL = 16_384


def _approval(detail: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The origin's signed approval (an object of bounded size), unchecked here: its verifier checks it."""
    approval = detail.get("approval")
    if approval is None:
        return None
    if not isinstance(approval, Mapping) or len(json.dumps(approval, default=str)) > MAX_APPROVAL:
        raise InvalidInput(f"approval must be an object of at most {MAX_APPROVAL} bytes", field="approval")
    return approval


def _bound_user_id(detail: Mapping[str, Any]) -> str | None:
    bound = detail.get("bound_user_id")
    if bound is not None and (
        not isinstance(bound, str) or not re.fullmatch(r"[A-Za-z0-9:@._-]{1,128}", bound)
    ):
        raise InvalidInput("bound_user_id is not a valid aws:userid", field="bound_user_id")
    return bound


def _reason(detail: Mapping[str, Any]) -> str:
    reason = detail.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise InvalidInput(f"reason must be a string of at most {MAX_REASON} characters", field="reason")
    if forbidden_characters(reason):
        raise InvalidInput(
            f"reason must be one line of visible text (refused: {forbidden_characters(reason)})",
            field="reason",
        )
    return reason


def _str(detail: Mapping[str, Any], name: str, *, limit: int = 256) -> str:
    value = detail.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} is required and must be a non-empty string", field=name)
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", field=name)
    return value


def _match(detail: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = _str(detail, name)
    if not pattern.fullmatch(value):
        raise InvalidInput(f"{name} {value[:80]!r} is not valid", field=name)
    return value


def _arn(detail: Mapping[str, Any], name: str) -> str:
    value = _str(detail, name, limit=2048)
    if parse_identity(value) is None:
        raise InvalidInput(f"{name} is not an IAM or STS ARN", field=name)
    return value


def _int(detail: Mapping[str, Any], name: str) -> int:
    value = detail.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer", field=name)
    return value


def _time(detail: Mapping[str, Any], name: str) -> datetime:
    value = _str(detail, name, limit=64)
    try:
        return parse_iso(value)
    except ValueError:
        raise InvalidInput(f"{name} is not an ISO-8601 timestamp with a timezone", field=name) from None


ORIGIN_FIELDS = (
    "account",
    "instance_id",
    "principal_type",
    "principal_name",
    "duration_minutes",
    "requester_arn",
)


def disagreements(truth: Any, event: AccessApproved) -> list[str]:
    """The fields on which ``event`` differs from what its origin records (no approvers: differs)."""
    differing = [name for name in ORIGIN_FIELDS if getattr(truth, name) != getattr(event, name)]
    if set(truth.approver_arns) != set(event.approver_arns) or not truth.approver_arns:
        differing.append("approver_arns")
    return differing
