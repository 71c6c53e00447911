"""Free text (reasons, comments, change request names) is one visible line, and chat escapes Markdown.

Issue item 11: line/paragraph separators, bidi overrides, zero-width characters and Markdown must not
reach e-mail and chat as they were typed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sessiongate.access_requests import policy as ap
from sessiongate.access_requests.errors import Refused
from sessiongate.access_requests.http import status_of
from sessiongate.access_requests.inputs import parse_comment, parse_create, parse_extend
from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.interpretation import interpret
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import AccessApproved, Origin
from sessiongate.core.notifications import render
from sessiongate.errors import InvalidInput
from sessiongate.text import escape_markdown, visible_length
from tests.support.people import ALICE, POLICY
from tests.support.values import ACCOUNT, change_request, settings

HOSTILE = {
    "line separator": "restart\u2028APPROVED BY SECURITY",
    "paragraph separator": "restart\u2029x",
    "newline": "restart\nx",
    "tab": "restart\tx",
    "bidi override": "restart \u202enigol",
    "bidi isolate": "restart \u2066x\u2069",
    "zero-width space": "re\u200bstart",
    "zero-width joiner": "re\u200dstart",
    "byte order mark": "\ufeffrestart",
    "soft hyphen": "re\u00adstart",
    "escape": "restart\x1b[31m",
    "private use": "restart\ue000",
}
BODY = {"instance_id": "i-0a1b2c3d4e5f60718"}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_invisible_and_control_characters_are_refused_in_every_text_field(text: str) -> None:
    calls = [
        (
            lambda: parse_create({**BODY, "reason": text}, default_minutes=10, max_minutes=60),
            "invalid_reason",
        ),
        (lambda: parse_extend({"reason": text}, default_minutes=10, max_minutes=60), "invalid_reason"),
        (lambda: parse_comment({"comment": text}, required=False), "invalid_comment"),
        (lambda: parse_comment({"comment": text}, required=True), "invalid_comment"),
        (lambda: parse_comment({"reason": text}, required=False, name="reason"), "invalid_reason"),
    ]
    for call, code in calls:
        with pytest.raises(Refused) as err:
            call()
        assert (status_of(err.value), err.value.code) == (400, code)
        assert "U+" in err.value.message


def test_ordinary_text_in_any_script_passes() -> None:
    for text in ("restart nginx", "Neustart für Müller", "重启 nginx", "café", "fix #42 (see INC-1)"):
        assert parse_create({**BODY, "reason": text}, default_minutes=10, max_minutes=60).reason == text


def test_a_reason_of_nothing_visible_is_missing() -> None:
    for text in ("\u3000", " \u00a0 ", "\u0301\u0301"):
        with pytest.raises(Refused) as err:
            parse_create({**BODY, "reason": text}, default_minutes=10, max_minutes=60)
        assert err.value.code == "missing_reason"


def test_break_glass_minimum_counts_visible_characters() -> None:
    prod = ap.ApprovalPolicy.parse(POLICY).rules[0]  # min_reason_length 20
    assert visible_length("a" + "\u0301" * 19) == 1
    for padded in ("a" + "\u0301" * 25, "a" + "\u00a0" * 25, "a b c d e f g h i j"):
        with pytest.raises(Refused) as err:
            ap.check_break_glass(prod, ALICE, 5, padded)
        assert err.value.code == "break_glass_reason_too_short"
    ap.check_break_glass(prod, ALICE, 5, "database is down, customers cannot pay")


def test_the_engine_refuses_such_a_reason_on_the_bus() -> None:
    detail = {
        "schema_version": "1",
        "grant_id": "rq-0123456789abcdef0123456789abcdef",
        "origin": "native",
        "origin_ref": "0123456789abcdef0123456789abcdef",
        "account": "123456789012",
        "instance_id": "i-0a1b2c3d4e5f60718",
        "principal_type": "user",
        "principal_name": "alice",
        "requester_arn": ALICE,
        "approver_arns": [],
        "duration_minutes": 10,
        "not_before": "2026-11-24T09:00:00Z",
        "approved_at": "2026-11-24T09:00:00Z",
        "reason": "ok",
    }
    AccessApproved.from_detail(detail)
    with pytest.raises(InvalidInput) as err:
        AccessApproved.from_detail({**detail, "reason": "ok\u2028forged line"})
    assert err.value.field == "reason"


def test_a_change_request_name_with_a_bidi_override_is_denied() -> None:
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    request = AccessApproved(
        grant_id="cm-01234567-89ab-cdef-0123-456789abcdef",
        origin=Origin.CHANGE_MANAGER,
        origin_ref="oi-0123456789ab",
        account=ACCOUNT,
        instance_id="i-0a1b2c3d4e5f60718",
        principal_type=PrincipalType.USER,
        principal_name="alice",
        requester_arn=ALICE,
        approver_arns=(f"arn:aws:iam::{ACCOUNT}:user/bob",),
        duration_minutes=10,
        not_before=now,
        approved_at=now,
        reason="restart nginx",
    )
    execution = change_request(request)
    ref = ChangeRequestRef(request.origin_ref, None, "Approved", None, None)
    config = settings(approver_type="IamUser", approver_name="bob")
    assert not isinstance(interpret(ref, execution, config, account=ACCOUNT, now=now), list)
    execution["ChangeRequestName"] = "restart \u202enigol"
    denials = interpret(ref, execution, config, account=ACCOUNT, now=now)
    assert isinstance(denials, list)
    assert [d.code for d in denials] == ["invalid_reason"]


def test_chat_escapes_markdown_and_email_shows_one_line() -> None:
    payload = {
        "request_id": "0123456789abcdef0123456789abcdef",
        "grant_id": "rq-0123456789abcdef0123456789abcdef",
        "instance_id": "i-0a1b2c3d4e5f60718",
        "principal_arn": ALICE,
        "requester_arn": ALICE,
        "duration_minutes": 15,
        # An older record (or a trigger nobody checked) may still carry such text.
        "reason": "[approve here](https://evil.example) *now* <!channel>\u2028Approved: yes",
        "account": "123456789012",
    }
    messages = render("AccessRequested", payload)
    description = json.loads(messages["https"])["content"]["description"]
    assert r"\[approve here\]\(https://evil\.example\) \*now\* \<\!channel\>" in description
    assert "\u2028" not in description
    email = messages["email"]
    assert "Reason: [approve here](https://evil.example) *now* <!channel>\ufffdApproved: yes" in email
    assert "\u2028" not in email
    assert json.loads(messages["sqs"])["reason"] == payload["reason"]  # programs get it as recorded


def test_escaped_markdown_reads_as_typed() -> None:
    import re

    for text in ("a_b*c", "`rm -rf /`", "# title", "1. item", r"back\slash", "~~x~~ | y"):
        escaped = escape_markdown(text)
        assert re.sub(r"\\(.)", r"\1", escaped) == text
