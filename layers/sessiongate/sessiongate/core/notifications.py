"""What each kind of subscriber receives (SNS ``MessageStructure=json``): pure formatting.

- ``email``: a readable text: who, what, when, why, and the command to use next.
- ``https``: an AWS Chatbot custom notification (Slack, Microsoft Teams, Chime).
- ``sqs``, ``lambda``, ``default``: the raw JSON event, for programs.
Message attributes (``event_type``, ``instance_id``, ``principal_arn``, ``account``) are set by the
notifier, so subscriptions can filter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sessiongate.text import escape_markdown, one_line

_TITLES = {
    "AccessGranted": "Access granted",
    "AccessRevoked": "Access revoked",
    "AccessDenied": "Access denied",
    "EventRejected": "Malformed trigger rejected",
    "ReconcilerRepaired": "Reconciler repaired drift",
    # Native front door (request API).
    "AccessRequested": "Access requested",
    "ApprovalRecorded": "Approval recorded, more needed",
    "AccessApproved": "Access approved",
    "AccessRejected": "Access request rejected",
    "AccessRequestCancelled": "Access request cancelled",
    "AccessRequestExpired": "Access request expired unapproved",
    "BreakGlassUsed": "BREAK-GLASS access self-approved",
    "AutoApproved": "Access AUTO-APPROVED by the approval policy",
    "AccessRequestReminder": "Reminder: an access request waits for approval",
    "AccessRequestEscalated": "ESCALATED: an access request still waits for approval",
    # The approval policy (checked before the native branch below).
    "PolicyChanged": "Approval policy changed",
    "PolicyRejected": "Approval policy REJECTED - every request refused",
    # Usage (issue 17: core/usage.py).
    "SessionsRecorded": "Sessions of a grant recorded",
    "UsageReport": "Weekly usage report",
}
_NATIVE = frozenset(list(_TITLES)[5:])


# Text that people (or malformed triggers) supply: shown as one line in e-mail, escaped in chat.
FREE_TEXT = ("reason", "comment", "ticket", "problem", "trigger", "field", "revoked_by", "auto_approval")


def render(event_type: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """The per-protocol messages of one lifecycle event."""
    raw = json.dumps({"event_type": event_type, **payload}, default=str, sort_keys=True)
    return {
        "default": raw,
        "sqs": raw,
        "lambda": raw,
        "email": _email(event_type, _displayed(payload, one_line)),
        "https": json.dumps(_chatbot(event_type, _displayed(payload, escape_markdown)), default=str),
    }


def _displayed(payload: Mapping[str, Any], show: Callable[[object], str]) -> dict[str, Any]:
    """``payload`` with its free text made safe to show (input checks refuse such text; this also
    covers older records and triggers that were never checked)."""
    shown = dict(payload)
    for key in FREE_TEXT:
        if payload.get(key):
            shown[key] = show(payload[key])
    if isinstance(payload.get("denials"), list):
        shown["denials"] = [
            {"code": show(d.get("code")), "message": show(d.get("message"))}
            for d in payload["denials"]
            if isinstance(d, Mapping)
        ]
    return shown


def _who(payload: Mapping[str, Any]) -> str:
    return str(payload.get("principal_arn") or payload.get("principal_name") or "?")


def _lines(event_type: str, payload: Mapping[str, Any]) -> list[str]:
    body = _BODIES.get(event_type)
    if body is not None:
        lines = body(payload, payload.get("instance_id") or "?")
    elif event_type in _NATIVE:
        lines = _native_lines(event_type, payload)
    else:
        lines = [f"{payload.get('trigger')}: {payload.get('problem')} (field {payload.get('field')})."]
    lines += ["", f"Grant: {payload.get('grant_id') or '-'}   Account: {payload.get('account') or '-'}"]
    if payload.get("origin"):
        lines.append(f"Origin: {payload.get('origin')} {payload.get('origin_ref') or ''}".rstrip())
    return lines


def _granted(payload: Mapping[str, Any], instance: str) -> list[str]:
    return [
        f"{_who(payload)} may start Session Manager sessions on {instance}"
        f" until {payload.get('expires_at')} UTC.",
        f"Requested by {payload.get('requester_arn')};"
        f" approved by {', '.join(payload.get('approver_arns') or [])}.",
        "",
        "Connect:",
        f"  aws ssm start-session --target {instance}",
    ]


def _revoked(payload: Mapping[str, Any], instance: str) -> list[str]:
    return [
        f"Access of {_who(payload)} to {instance} was revoked at {payload.get('at')} UTC "
        f"({payload.get('reason')}, by {payload.get('revoked_by')}).",
        "New sessions are refused; open sessions end at the Session Manager limits"
        " (or now, if SessionGate terminates them).",
        *_log_lines(payload),
    ]


def _log_lines(payload: Mapping[str, Any]) -> list[str]:
    where = payload.get("log_destination") or {}
    lines = []
    if where.get("s3_bucket"):
        lines.append(f"Session logs: s3://{where['s3_bucket']}/{where.get('s3_prefix') or ''}")
    if where.get("log_group"):
        lines.append(f"Session logs: CloudWatch Logs group {where['log_group']}")
    return lines


def _sessions_recorded(payload: Mapping[str, Any], instance: str) -> list[str]:
    sessions = payload.get("sessions")
    if sessions is None:
        return [f"The sessions of {_who(payload)} on {instance} are unknown: {payload.get('usage_unknown')}."]
    count = payload.get("session_count", len(sessions))
    lines = [f"{_who(payload)} opened {count} session(s) on {instance} during the grant."]
    if payload.get("sessions_truncated"):
        lines.append(f"The first {len(sessions)} (the ledger record keeps more):")
    lines += [
        f"  - {s.get('session_id')}: {s.get('started_at', '?')} - {s.get('ended_at', 'open')}"
        f" ({s.get('status')})"
        for s in sessions
        if isinstance(s, Mapping)
    ]
    return lines + _log_lines(payload)


def _usage_report(payload: Mapping[str, Any], instance: str) -> list[str]:
    lines = [
        f"From {payload.get('from')} to {payload.get('to')}: {payload.get('grants')} grants,"
        f" {payload.get('unused_grants')} approved but never used"
        f" ({payload.get('usage_pending', 0) + payload.get('usage_unknown', 0)} not known yet).",
        "Grants per person:",
    ]
    lines += [
        f"  - {p.get('principal_arn')}: {p.get('grants')} grants, {p.get('sessions')} sessions,"
        f" {p.get('unused')} unused"
        for p in payload.get("per_person") or []
    ]
    if payload.get("unused"):
        lines.append("Approved but never used:")
        lines += [
            f"  - {u.get('grant_id')}: {u.get('principal_arn')} on {u.get('instance_id')}"
            f" ({u.get('granted_at')} - {u.get('revoked_at')})"
            for u in payload["unused"]
        ]
    return lines


def _denied(payload: Mapping[str, Any], instance: str) -> list[str]:
    lines = [f"The request {payload.get('grant_id')} for {_who(payload)} on {instance} was denied:"]
    lines += [f"  - {d.get('code')}: {d.get('message')}" for d in payload.get("denials") or []]
    lines.append(f"Requested by {payload.get('requester_arn') or '?'}. Nothing was changed in IAM.")
    return lines


def _repaired(payload: Mapping[str, Any], instance: str) -> list[str]:
    repairs = payload.get("repairs") or {}
    lines = ["The reconciler repaired what lost or failed deliveries left behind:"]
    lines += [f"  - {k.replace('_', ' ')}: {', '.join(v)}" for k, v in repairs.items() if v]
    lines.append("Check the DLQs and the function logs for the cause.")
    return lines


def _policy_changed(payload: Mapping[str, Any], instance: str) -> list[str]:
    lines = [
        f"A new verified approval policy is in effect ({payload.get('source')}, version "
        f"{payload.get('parameter_version') or '-'}, sha256 {payload.get('digest')}):"
    ]
    for rule in payload.get("rules") or []:
        levels = " then ".join(
            f"{lv.get('min_approvals')} of {', '.join(lv.get('approvers') or [])}"
            for lv in rule.get("levels") or []
        )
        glass = ", break-glass allowed" if rule.get("break_glass") else ""
        lines.append(f"  - {rule.get('name')}: {levels}{glass}")
    lines.append("If no deployer of SessionGate signed this change, treat it as an incident.")
    return lines


def _policy_rejected(payload: Mapping[str, Any], instance: str) -> list[str]:
    return [
        f"The approval policy parameter {payload.get('parameter')} failed verification:",
        f"  {payload.get('problem')}",
        "Every native request is refused until a deployer signs a policy again:",
        "  sessiongate policy sign POLICY.json --key-id KEY_ARN --put PARAMETER",
        "Find who wrote the parameter in CloudTrail (ssm:PutParameter).",
    ]


_BODIES: dict[str, Callable[[Mapping[str, Any], str], list[str]]] = {
    "AccessGranted": _granted,
    "AccessRevoked": _revoked,
    "AccessDenied": _denied,
    "ReconcilerRepaired": _repaired,
    "PolicyChanged": _policy_changed,
    "PolicyRejected": _policy_rejected,
    "SessionsRecorded": _sessions_recorded,
    "UsageReport": _usage_report,
}


def _native_lines(event_type: str, payload: Mapping[str, Any]) -> list[str]:
    request_id = payload.get("request_id")
    lines = [
        f"{payload.get('requester_arn')} asks for {payload.get('duration_minutes')} min of Session Manager"
        f" access to {payload.get('instance_id')} as {_who(payload)}.",
        f"Reason: {payload.get('reason')}"
        + (f" (ticket {payload['ticket']})" if payload.get("ticket") else ""),
    ]
    if payload.get("extends"):
        lines.append(f"This extends request {payload.get('extends')}.")
    if event_type == "BreakGlassUsed":
        lines.insert(0, "BREAK-GLASS: the requester approved their own access under the emergency rule.")
        lines.append("Review it now; revoke with:")
        lines.append(f"  sessiongate revoke {request_id}")
    elif event_type == "AutoApproved":
        statement = payload.get("auto_approval")
        lines.insert(0, f"AUTO-APPROVED by the approval policy's statement {statement!r}: no person did.")
        lines.append("Revoke it if it should not have been:")
        lines.append(f"  sessiongate revoke {request_id}")
    elif event_type in (
        "AccessRequested",
        "ApprovalRecorded",
        "AccessRequestReminder",
        "AccessRequestEscalated",
    ):
        if payload.get("escalate_to"):
            lines.insert(0, f"ESCALATED to {', '.join(payload['escalate_to'])}: nobody approved it in time.")
        for level in payload.get("approval_progress") or []:
            count = f"{level.get('approved')}/{level.get('required')}"
            lines.append(f"  level {level.get('level')} ({level.get('name')}): {count}")
        lines += [
            "",
            "Decide with:",
            f"  sessiongate approve {request_id}",
            f"  sessiongate reject {request_id} --comment ...",
        ]
    elif event_type == "AccessApproved":
        lines.append(
            f"Approved by {', '.join(payload.get('approver_arns') or [])}; the grant follows shortly."
        )
    elif payload.get("comment"):
        lines.append(f"Comment: {payload.get('comment')}")
    return lines


def _email(event_type: str, payload: Mapping[str, Any]) -> str:
    return (
        f"SessionGate - {_TITLES.get(event_type, event_type)}\n\n"
        + "\n".join(_lines(event_type, payload))
        + "\n"
    )


def _chatbot(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """AWS Chatbot custom notification schema (version 1.0)."""
    lines = _lines(event_type, payload)
    next_steps = []
    if event_type == "AccessGranted":
        next_steps.append(f"`aws ssm start-session --target {payload.get('instance_id')}`")
    if event_type in ("ReconcilerRepaired", "EventRejected"):
        next_steps.append("Check the SessionGate dead-letter queues and function logs")
    return {
        "version": "1.0",
        "source": "custom",
        "id": str(payload.get("grant_id") or event_type),
        "content": {
            "textType": "client-markdown",
            "title": f"SessionGate: {_TITLES.get(event_type, event_type)}",
            "description": "\n".join(line for line in lines if line),
            "nextSteps": next_steps,
            "keywords": [k for k in (event_type, payload.get("instance_id"), payload.get("account")) if k],
        },
        "metadata": {
            "threadId": str(payload.get("grant_id") or event_type),
            "summary": f"{_TITLES.get(event_type, event_type)}: {_who(payload)}"
            f" -> {payload.get('instance_id') or '-'}",
            "eventType": event_type,
            "relatedResources": [r for r in (payload.get("principal_arn"), payload.get("instance_id")) if r],
            # Chatbot's additionalContext is a map of strings: absent values are left out, not null.
            "additionalContext": {
                k: str(payload[k]) for k in ("grant_id", "expires_at", "request_id") if payload.get(k)
            },
        },
    }
