"""The native front door's request records and their state machine (pure, no AWS).

A request moves through these states; every move is one conditional write (``version``) in the
requests table, so two approvers clicking at once cannot both make the move:

    PENDING --approve (last level met)--> APPROVED --grant ACTIVE--> ACTIVE --revoke/expiry--> REVOKED|EXPIRED
      |--reject--> REJECTED   |--engine denies the grant--> DENIED
      |--cancel--> CANCELLED  |--revoked before the grant--> REVOKED
      '--pending TTL passed--> EXPIRED

APPROVED -> ACTIVE/REVOKED/EXPIRED/DENIED follow the engine's grant record (``rq-<request id>``), the
source of truth: reads derive them and write nothing; the scheduled sweep or the next write path of
the request writes them.

A request may name a target ``account`` (SessionGate's own or a member account): the access is then for
the principal of the caller's type and name there (:mod:`.caller`: identities come from the signature).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sessiongate.access_requests.errors import Conflict
from sessiongate.access_requests.ids import grant_id_for
from sessiongate.access_requests.inputs import MAX_COMMENT
from sessiongate.clock import parse_iso, to_iso
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import MAX_REASON, AccessApproved, Origin

MAX_EXTENSIONS = 20
BREAK_GLASS_MARK = "[BREAK-GLASS] "
AUTO_APPROVED_MARK = "[AUTO-APPROVED] "
AUTO_LEVEL = -2  # the level of the request API's auto-approval (a policy statement, not a person)
# Domain of the request API's approval MAC (KMS ApprovalKey): bumped whenever the bound facts change.
APPROVAL_DOMAIN = "sessiongate-approval-v2"  # v2: ticket, created_at, auto_approval


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


@dataclass(frozen=True)
class Approval:
    approver_arn: str
    level: int  # 0-based index into the rule's levels; -1 break-glass self-approval; -2 auto-approval
    at: str
    comment: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "approver_arn": self.approver_arn,
            "level": self.level,
            "at": self.at,
            "comment": self.comment,
        }
        if self.level == AUTO_LEVEL:
            out["kind"] = "AutoApproved"  # the policy approved it, not a person
        return out

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
    # The auto-approval statement (permit) that approved the request without a person (issue 18).
    auto_approval: str = ""
    # A scheduled start (issue 18): the grant is handed to the engine then, not at the approval.
    start_at: str | None = None
    # Reminders sent and the escalation of a pending request (issue 18; the sweep writes them).
    reminders_sent: int = 0
    escalated_at: str | None = None
    reminded_at: str | None = None  # when the last reminder was sent (its AccessRequestReminder's time)
    # Session Manager documents the requester asked for (issue 18), as the rule allowed them.
    documents: tuple[str, ...] = ()
    # The approval rule as the last writer that decided under one saw it (name, levels, groups,
    # documents, escalate_to): what that write's lifecycle notification describes
    # (sessiongate.outbox.rule_snapshot).
    notice_rule: dict[str, Any] | None = None

    @property
    def not_before(self) -> str | None:
        """When the access may start: the approval, or the scheduled start if that is later."""
        if self.approved_at is None or self.start_at is None:
            return self.approved_at
        return max(self.approved_at, self.start_at, key=parse_iso)

    @property
    def grant_id(self) -> str:
        return grant_id_for(self.request_id)

    def transition(self, to: RequestStatus, *, at: datetime, by: str, **changes: Any) -> Request:
        """The next version of this record in state ``to``; raises :class:`Refused` for an illegal move."""
        if to not in TRANSITIONS.get(self.status, frozenset()):
            raise Conflict(
                "invalid_state", f"request {self.request_id} is {self.status.value}, not {to.value}"
            )
        entry = {"at": to_iso(at), "status": to.value, "by": by}
        if changes.get("comment"):
            entry["comment"] = str(changes["comment"])[:MAX_COMMENT]
        return replace(self, status=to, history=(*self.history, entry), **changes)

    def approval_message(self) -> bytes:
        """What the approval MAC binds: every fact the grant uses (domain-separated, canonical)."""
        return signed_message(APPROVAL_DOMAIN, canonical_json(self.approval_facts()))

    def approval_facts(self) -> dict[str, Any]:
        """The facts the approval MAC binds (:meth:`approval_message`), as JSON values."""
        facts: dict[str, Any] = {
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
            "not_before": self.not_before,
            "approved_at": self.approved_at,
            "break_glass": self.break_glass,
            "rule": self.rule,
            "instance_tags": [list(t) for t in self.instance_tags],
            "extends": self.extends,
            # What the grant re-checks (issue 18): the rule's ticket, the escalation's clock.
            "ticket": self.ticket,
            "created_at": self.created_at,
        }
        if self.auto_approval:  # (only when set)
            facts["auto_approval"] = self.auto_approval
        return facts

    @classmethod
    def from_approval(cls, approval: Mapping[str, Any]) -> Request:
        """The APPROVED record an ``AccessApproved`` event's ``approval`` (``{"facts": approval_facts(),
        "mac": approval_mac}``) stands for; only the signed facts are set (the others are empty). Raises
        ``ValueError`` for anything malformed. Nothing here is trusted until the MAC is verified over
        :meth:`approval_message` of the result, which re-derives the facts from it (a fact outside
        the signed set, or of another type, changes the message)."""
        try:
            facts, mac = approval["facts"], approval["mac"]
            if not isinstance(facts, Mapping) or not isinstance(mac, str):
                raise ValueError("approval must hold facts (an object) and mac (a string)")
            record = cls(
                request_id=str(facts["request_id"]),
                status=RequestStatus.APPROVED,
                account=str(facts["account"]),
                instance_id=str(facts["instance_id"]),
                principal_type=PrincipalType(facts["principal_type"]),
                principal_name=str(facts["principal_name"]),
                principal_arn=str(facts["principal_arn"]),
                requester_arn=str(facts["requester_arn"]),
                duration_minutes=int(facts["duration_minutes"]),
                reason="",
                created_at=str(facts["created_at"]),
                pending_expires_at="",
                rule=str(facts["rule"]),
                ticket=str(facts["ticket"]),
                auto_approval=str(facts.get("auto_approval", "")),
                break_glass=bool(facts["break_glass"]),
                approvals=tuple(Approval(str(a), int(level), "") for a, level in facts["approvals"]),
                approver_arns=tuple(str(a) for a in facts["approver_arns"]),
                approved_at=str(facts["approved_at"]),
                extends=None if facts["extends"] is None else str(facts["extends"]),
                instance_tags=tuple((str(k), str(v)) for k, v in facts["instance_tags"]),
                approval_mac=mac,
            )
            if facts["not_before"] != facts["approved_at"]:  # a scheduled start (not_before's later time)
                record = replace(record, start_at=str(facts["not_before"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed approval: {exc}") from None
        if record.approval_facts() != dict(facts):
            raise ValueError("malformed approval: facts outside the signed set or of another type")
        return record

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
            "auto_approval": self.auto_approval,
            "start_at": self.start_at,
            "documents": list(self.documents),
        }
        out.update({k: v for k, v in optional.items() if v})
        return out

    def to_access_approved(self) -> AccessApproved:
        """The normalized event the engine grants from (``origin=native``, ``grant_id=rq-<id>``)."""
        assert self.approved_at is not None
        approved = parse_iso(self.approved_at)
        not_before = parse_iso(self.not_before or self.approved_at)
        reason = self.reason + (f" (ticket {self.ticket})" if self.ticket else "")
        if self.break_glass:
            reason = BREAK_GLASS_MARK + reason
        elif self.auto_approval:
            reason = AUTO_APPROVED_MARK + reason
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
            not_before=not_before,
            approved_at=approved,
            reason=reason[:MAX_REASON],
            # The signed facts travel with the event: the grant verifies them without reading this
            # record, and checks in its one transaction that the record is still APPROVED with this MAC.
            approval={"facts": self.approval_facts(), "mac": self.approval_mac}
            if self.approval_mac
            else None,
        )


def canonical_json(value: object) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_message(domain: str, canonical: bytes) -> bytes:
    """What SessionGate MACs with KMS: ``domain`` (a versioned purpose), a newline and the SHA-256 of
    the canonical bytes. A MAC made for one purpose never verifies for another, and the message stays
    within KMS's 4096-byte limit whatever the size of what it binds."""
    return f"{domain}\n{hashlib.sha256(canonical).hexdigest()}".encode()


def pending_deadline(created: datetime, ttl_minutes: int) -> str:
    return to_iso(created + timedelta(minutes=ttl_minutes))


@dataclass(frozen=True)
class Page:
    """A list answer."""

    requests: list[Request] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"requests": [r.view() for r in self.requests], "count": len(self.requests)}
