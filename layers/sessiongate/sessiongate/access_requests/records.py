"""The native front door's domain: request records, their state machine and input rules (pure, no AWS).

A request moves through these states; every move is one conditional write (``version``) in the
requests table, so two approvers clicking at once cannot both make the move:

    PENDING --approve (last level met)--> APPROVED --grant ACTIVE--> ACTIVE --revoke/expiry--> REVOKED|EXPIRED
      |--reject--> REJECTED   |--engine denies the grant--> DENIED
      |--cancel--> CANCELLED  |--revoked before the grant--> REVOKED
      '--pending TTL passed--> EXPIRED

APPROVED -> ACTIVE/REVOKED/EXPIRED/DENIED follow the engine's grant record (``rq-<request id>``), the
source of truth: reads derive them and write nothing; the scheduled sweep or the next write path of
the request writes them.

Identities always come from the signed caller (API Gateway's IAM authorizer), never from a body. A
request may name a target ``account`` (SessionGate's own or a configured member account): the access is
then for the principal of the caller's type and name in that account.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.identity import ACCOUNT_RE, INSTANCE_ID_RE, Identity, PrincipalType, parse_identity
from sessiongate.core.model import GRANT_ID_RE, MAX_REASON, AccessApproved, Origin
from sessiongate.text import forbidden_characters, visible_length

GRANT_PREFIX = "rq-"
# Request ids: 32 hex digits; an extension of request R is ``R-x<n>``. ``rq-`` + id stays within the
# 48 characters model.GRANT_ID_RE allows (3 + 32 + 6 = 41).
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}(?:-x[1-9][0-9]{0,3})?$")
TICKET_RE = re.compile(r"^[A-Za-z0-9#:/._-]{1,64}$")
MAX_REQUEST_REASON = 300  # + ticket and a break-glass marker still fit AccessApproved's MAX_REASON
MAX_COMMENT = 500
MAX_EXTENSIONS = 20
BREAK_GLASS_MARK = "[BREAK-GLASS] "
# Domain of the request API's approval MAC (KMS ApprovalKey): bumped whenever the bound facts change.
APPROVAL_DOMAIN = "sessiongate-approval-v1"


class RequestStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    DENIED = "DENIED"  # approved, but the engine's guardrails refused the grant


TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.PENDING: frozenset(
        {RequestStatus.APPROVED, RequestStatus.REJECTED, RequestStatus.CANCELLED, RequestStatus.EXPIRED}
    ),
    RequestStatus.APPROVED: frozenset(
        {RequestStatus.ACTIVE, RequestStatus.REVOKED, RequestStatus.EXPIRED, RequestStatus.DENIED}
    ),
    RequestStatus.ACTIVE: frozenset({RequestStatus.REVOKED, RequestStatus.EXPIRED}),
}
LIVE = frozenset({RequestStatus.APPROVED, RequestStatus.ACTIVE})
OPEN = frozenset({RequestStatus.PENDING, *LIVE})


class ApiError(Exception):
    """A decision or a user mistake, answered as ``{"error": code, "message": ...}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def forbidden(code: str, message: str) -> ApiError:
    return ApiError(403, code, message)


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


# ---------------------------------------------------------------------------------------- callers
@dataclass(frozen=True)
class Caller:
    """The signed caller, as API Gateway's IAM authorizer saw it."""

    arn: str
    identity: Identity
    principal_type: PrincipalType
    principal_name: str

    @property
    def account(self) -> str:
        return self.identity.account


def caller_from_context(request_context: object) -> Caller:
    """The caller of an HTTP API (payload 2.0) request: ``requestContext.authorizer.iam.userArn``.

    IAM users sign as ``arn:...:iam::A:user/path/name``; role sessions as
    ``arn:...:sts::A:assumed-role/Role/session`` (the principal that receives access is the role).
    Anything else (root, federated users, no IAM identity) cannot use the native path.

    The IAM authorizer context carries ``accessKey``, ``accountId``, ``callerId``, ``cognitoIdentity``,
    ``principalOrgId``, ``userArn`` and ``userId`` (AWS doc "Create AWS Lambda proxy integrations for
    HTTP APIs in API Gateway", payload format 2.0), and no ``sts:SourceIdentity``: the API cannot see a
    caller's source identity, so people are told apart by :func:`identity.may_be_same` on the ARN.
    """
    iam = {}
    if isinstance(request_context, Mapping):
        authorizer = request_context.get("authorizer")
        if isinstance(authorizer, Mapping) and isinstance(authorizer.get("iam"), Mapping):
            iam = authorizer["iam"]
    arn = iam.get("userArn")
    if not isinstance(arn, str) or not arn:
        raise ApiError(401, "unauthenticated", "the request carries no IAM identity (sign it with SigV4)")
    identity = parse_identity(arn)
    if identity is None or identity.kind not in ("user", "role"):
        raise forbidden(
            "unsupported_caller",
            "only IAM users and IAM role sessions can use SessionGate requests (not root or federated users)",
        )
    if identity.kind == "role" and identity.session is None:
        raise forbidden("unsupported_caller", "a role must call as an assumed-role session")
    account = iam.get("accountId")
    if isinstance(account, str) and account and account != identity.account:
        raise forbidden("unsupported_caller", "the caller's account does not match its ARN")
    return Caller(arn, identity, PrincipalType(identity.kind), identity.name)


def same_caller(a: str, b: str) -> bool:
    """Exactly the same principal (and role session): who may act *as* the requester."""
    x, y = parse_identity(a), parse_identity(b)
    if x is None or y is None:
        return False
    return (x.partition, x.account, x.kind, x.name.lower(), x.session) == (
        y.partition,
        y.account,
        y.kind,
        y.name.lower(),
        y.session,
    )


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Approval:
    approver_arn: str
    level: int  # 0-based index into the rule's levels; -1 for a break-glass self-approval
    at: str
    comment: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "approver_arn": self.approver_arn,
            "level": self.level,
            "at": self.at,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Approval:
        return cls(
            str(data["approver_arn"]), int(data["level"]), str(data["at"]), str(data.get("comment", ""))
        )


@dataclass(frozen=True)
class Request:
    """One request for a time-boxed shell (DynamoDB item ``request_id`` in the requests table)."""

    request_id: str
    status: RequestStatus
    account: str
    instance_id: str
    principal_type: PrincipalType
    principal_name: str
    principal_arn: str
    requester_arn: str
    duration_minutes: int
    reason: str
    created_at: str
    pending_expires_at: str
    rule: str
    ticket: str = ""
    break_glass: bool = False
    approvals: tuple[Approval, ...] = ()
    approver_arns: tuple[str, ...] = ()  # the approvers of record handed to the engine
    approved_at: str | None = None
    emitted_at: str | None = None
    decided_by: str | None = None
    comment: str = ""
    expires_at: str | None = None
    extends: str | None = None
    extension_count: int = 0
    denials: tuple[dict[str, str], ...] = ()
    history: tuple[dict[str, str], ...] = ()
    version: int = 0
    # The instance's tags when the request was made (the rule was chosen from them): a different rule
    # at approval or grant time refuses (the instance was re-tagged or the policy changed).
    instance_tags: tuple[tuple[str, str], ...] = ()
    # The request API's KMS HMAC (ApprovalKey) over :meth:`approval_message`, set when APPROVED: only
    # the request API role can make one, so a record written straight into DynamoDB is never granted.
    approval_mac: str = ""

    @property
    def grant_id(self) -> str:
        return grant_id_for(self.request_id)

    def transition(self, to: RequestStatus, *, at: datetime, by: str, **changes: Any) -> Request:
        """The next version of this record in state ``to``; raises :class:`ApiError` for an illegal move."""
        if to not in TRANSITIONS.get(self.status, frozenset()):
            raise conflict(
                "invalid_state", f"request {self.request_id} is {self.status.value}, not {to.value}"
            )
        entry = {"at": to_iso(at), "status": to.value, "by": by}
        if changes.get("comment"):
            entry["comment"] = str(changes["comment"])[:MAX_COMMENT]
        return replace(self, status=to, history=(*self.history, entry), **changes)

    def approval_message(self) -> bytes:
        """What the approval MAC binds: every fact the grant uses (domain-separated, canonical)."""
        facts = {
            "request_id": self.request_id,
            "grant_id": self.grant_id,
            "account": self.account,
            "instance_id": self.instance_id,
            "principal_type": self.principal_type.value,
            "principal_name": self.principal_name,
            "principal_arn": self.principal_arn,
            "requester_arn": self.requester_arn,
            "approver_arns": list(self.approver_arns),
            "approvals": [[a.approver_arn, a.level] for a in self.approvals],
            "duration_minutes": self.duration_minutes,
            "not_before": self.approved_at,
            "approved_at": self.approved_at,
            "break_glass": self.break_glass,
            "rule": self.rule,
            "instance_tags": [list(t) for t in self.instance_tags],
            "extends": self.extends,
        }
        return signed_message(APPROVAL_DOMAIN, canonical_json(facts))

    def view(self) -> dict[str, Any]:
        """The API's representation of the request."""
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "status": self.status.value,
            "account": self.account,
            "instance_id": self.instance_id,
            "principal_type": self.principal_type.value,
            "principal_name": self.principal_name,
            "principal_arn": self.principal_arn,
            "requester_arn": self.requester_arn,
            "duration_minutes": self.duration_minutes,
            "reason": self.reason,
            "ticket": self.ticket,
            "rule": self.rule,
            "break_glass": self.break_glass,
            "approvals": [a.as_dict() for a in self.approvals],
            "created_at": self.created_at,
            "pending_expires_at": self.pending_expires_at,
            "grant_id": self.grant_id,
            "history": list(self.history),
        }
        optional = {
            "approved_at": self.approved_at,
            "expires_at": self.expires_at,
            "decided_by": self.decided_by,
            "comment": self.comment,
            "extends": self.extends,
            "denials": list(self.denials),
            "instance_tags": dict(self.instance_tags),
        }
        out.update({k: v for k, v in optional.items() if v})
        return out

    def to_access_approved(self) -> AccessApproved:
        """The normalized event the engine grants from (``origin=native``, ``grant_id=rq-<id>``)."""
        assert self.approved_at is not None
        approved = parse_iso(self.approved_at)
        reason = self.reason + (f" (ticket {self.ticket})" if self.ticket else "")
        if self.break_glass:
            reason = BREAK_GLASS_MARK + reason
        return AccessApproved(
            grant_id=self.grant_id,
            origin=Origin.NATIVE,
            origin_ref=self.request_id,
            account=self.account,
            instance_id=self.instance_id,
            principal_type=self.principal_type,
            principal_name=self.principal_name,
            requester_arn=self.requester_arn,
            approver_arns=self.approver_arns,
            duration_minutes=self.duration_minutes,
            not_before=approved,
            approved_at=approved,
            reason=reason[:MAX_REASON],
        )


def canonical_json(value: object) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_message(domain: str, canonical: bytes) -> bytes:
    """What SessionGate MACs with KMS: ``domain`` (a versioned purpose), a newline and the SHA-256 of
    the canonical bytes. A MAC made for one purpose never verifies for another, and the message stays
    within KMS's 4096-byte limit whatever the size of what it binds."""
    return f"{domain}\n{hashlib.sha256(canonical).hexdigest()}".encode()


def grant_id_for(request_id: str) -> str:
    grant_id = GRANT_PREFIX + request_id
    assert GRANT_ID_RE.fullmatch(grant_id), grant_id
    return grant_id


def request_id_of(grant_id: str) -> str | None:
    """The request behind a native grant id, or ``None`` if it is not one."""
    if not grant_id.startswith(GRANT_PREFIX):
        return None
    request_id = grant_id[len(GRANT_PREFIX) :]
    return request_id if REQUEST_ID_RE.fullmatch(request_id) else None


def root_id(request_id: str) -> str:
    """The first request of an access: extensions are ``<root>-x<n>``."""
    return request_id.split("-x", 1)[0]


def extension_id(parent_id: str, n: int) -> str:
    return f"{root_id(parent_id)}-x{n}"


def check_request_id(value: object) -> str:
    if not isinstance(value, str) or not REQUEST_ID_RE.fullmatch(value):
        raise ApiError(404, "not_found", "no such request")
    return value


def pending_deadline(created: datetime, ttl_minutes: int) -> str:
    return to_iso(created + timedelta(minutes=ttl_minutes))


# ---------------------------------------------------------------------------------------- input
@dataclass(frozen=True)
class CreateInput:
    instance_id: str
    duration_minutes: int
    reason: str
    ticket: str = ""
    break_glass: bool = False
    account: str | None = None  # the target account; None: the caller's
    default_duration: bool = False  # duration_minutes was not given: the service caps the default


@dataclass(frozen=True)
class ExtendInput:
    duration_minutes: int
    reason: str
    default_duration: bool = False


_CREATE_FIELDS = frozenset({"instance_id", "duration_minutes", "reason", "ticket", "break_glass", "account"})
_IDENTITY_FIELDS = frozenset(
    {
        "requester",
        "requester_arn",
        "principal",
        "principal_name",
        "principal_arn",
        "principal_type",
        "approver",
    }
)


def parse_create(body: object, *, default_minutes: int, max_minutes: int) -> CreateInput:
    data = _object(body, _CREATE_FIELDS)
    instance_id = data.get("instance_id")
    if not isinstance(instance_id, str) or not INSTANCE_ID_RE.fullmatch(instance_id):
        raise bad_request(
            "instance_id must be an EC2 instance id like i-0123456789abcdef0", "invalid_instance_id"
        )
    duration = _duration(data.get("duration_minutes", default_minutes), max_minutes)
    reason = _text(data.get("reason"), "reason", MAX_REQUEST_REASON, required=True)
    account = data.get("account")
    if account is not None and (not isinstance(account, str) or not ACCOUNT_RE.fullmatch(account)):
        raise bad_request("account must be a 12-digit AWS account id", "invalid_account")
    ticket = data.get("ticket", "")
    if ticket != "" and (not isinstance(ticket, str) or not TICKET_RE.fullmatch(ticket)):
        raise bad_request(
            "ticket must be 1-64 characters of letters, digits and # : / . _ -", "invalid_ticket"
        )
    break_glass = data.get("break_glass", False)
    if not isinstance(break_glass, bool):
        raise bad_request("break_glass must be true or false", "invalid_break_glass")
    return CreateInput(
        instance_id,
        duration,
        reason,
        ticket,
        break_glass,
        account=account,
        default_duration="duration_minutes" not in data,
    )


def parse_extend(body: object, *, default_minutes: int, max_minutes: int) -> ExtendInput:
    data = _object(body, frozenset({"duration_minutes", "reason"}))
    return ExtendInput(
        _duration(data.get("duration_minutes", default_minutes), max_minutes),
        _text(data.get("reason"), "reason", MAX_REQUEST_REASON, required=True),
        default_duration="duration_minutes" not in data,
    )


def parse_comment(body: object, *, required: bool, name: str = "comment") -> str:
    data = _object(body, frozenset({name}))
    return _text(data.get(name, ""), name, MAX_COMMENT, required=required)


def _object(body: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise bad_request("the request body must be a JSON object", "invalid_body")
    named = set(body) & _IDENTITY_FIELDS
    if named:
        raise bad_request(
            f"{sorted(named)} cannot be given: identities come from the request signature", "identity_in_body"
        )
    unknown = set(body) - allowed
    if unknown:
        raise bad_request(
            f"unknown field(s) {sorted(unknown)[:5]}; allowed: {sorted(allowed)}", "unknown_field"
        )
    return body


def _duration(value: object, max_minutes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_minutes:
        raise bad_request(f"duration_minutes must be an integer from 1 to {max_minutes}", "invalid_duration")
    return value


def _text(value: object, name: str, limit: int, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", f"invalid_{name}")
    value = value.strip()
    bad = forbidden_characters(value)
    if bad:
        # One visible line: these would hide or reorder text in e-mail and chat (see text.py).
        raise bad_request(
            f"{name} must be one line of visible text: control, format (bidi, zero-width) and line or "
            f"paragraph separator characters are refused ({', '.join(bad)})",
            f"invalid_{name}",
        )
    if required and not visible_length(value):
        raise bad_request(f"{name} is required", f"missing_{name}")
    if len(value) > limit:
        raise bad_request(f"{name} must be at most {limit} characters", f"invalid_{name}")
    return value


@dataclass(frozen=True)
class Page:
    """A list answer."""

    requests: list[Request] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"requests": [r.view() for r in self.requests], "count": len(self.requests)}
