"""Per-protocol notification messages."""

from __future__ import annotations

import json

from sessiongate.core.notifications import render
from tests.support.stack import ACCOUNT, Stack

GRANTED = {
    "at": "2026-11-24T09:00:00Z",
    "grant_id": "cm-1",
    "account": ACCOUNT,
    "instance_id": "i-0123456789abcdef0",
    "principal_arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
    "requester_arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
    "approver_arns": [f"arn:aws:iam::{ACCOUNT}:user/bob"],
    "expires_at": "2026-11-24T09:10:00Z",
    "origin": "change-manager",
    "origin_ref": "oi-0123456789ab",
}


def test_email_says_who_what_until_when_and_how_to_connect() -> None:
    email = render("AccessGranted", GRANTED)["email"]
    assert (
        "user/alice may start Session Manager sessions on i-0123456789abcdef0 until 2026-11-24T09:10:00Z"
        in email
    )
    assert "approved by arn:aws:iam::123456789012:user/bob" in email
    assert "aws ssm start-session --target i-0123456789abcdef0" in email


def test_denial_email_lists_every_reason() -> None:
    denied = {**GRANTED, "denials": [{"code": "self_approval", "message": "approver may be the requester"}]}
    email = render("AccessDenied", denied)["email"]
    assert "  - self_approval: approver may be the requester" in email
    assert "Nothing was changed in IAM." in email


def test_chatbot_payload_follows_the_custom_notification_schema() -> None:
    chat = json.loads(render("AccessGranted", GRANTED)["https"])
    assert chat["version"] == "1.0"
    assert chat["source"] == "custom"
    assert chat["content"]["textType"] == "client-markdown"
    assert chat["content"]["title"] == "SessionGate: Access granted"
    assert chat["content"]["nextSteps"] == ["`aws ssm start-session --target i-0123456789abcdef0`"]
    assert chat["metadata"]["threadId"] == "cm-1"
    assert chat["metadata"]["additionalContext"] == {"grant_id": "cm-1", "expires_at": "2026-11-24T09:10:00Z"}


def test_chatbot_context_holds_strings_only() -> None:
    """Chatbot's additionalContext is a string map: a denial has no expiry, and says nothing of it."""
    denied = {k: v for k, v in GRANTED.items() if k != "expires_at"}
    chat = json.loads(render("AccessDenied", denied)["https"])
    assert chat["metadata"]["additionalContext"] == {"grant_id": "cm-1"}
    assert all(isinstance(v, str) for v in chat["metadata"]["additionalContext"].values())


def test_programs_get_the_raw_event() -> None:
    messages = render("AccessGranted", GRANTED)
    assert json.loads(messages["sqs"]) == {"event_type": "AccessGranted", **GRANTED}
    assert messages["lambda"] == messages["default"] == messages["sqs"]


def test_sqs_subscribers_receive_the_raw_json_through_sns(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    stack.engine().grant(request.to_detail())
    [note] = stack.notifications()
    assert note["message"]["event_type"] == "AccessGranted"
    assert note["message"]["grant_id"] == request.grant_id
    assert note["subject"].startswith("SessionGate: alice may open a session on")
