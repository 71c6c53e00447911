"""Slack, played (issue 19): ``chat_link`` (the slash command, then ``sessiongate chat link CODE`` through
the signed request API), ``chat_approve`` / ``chat_reject`` (a signed block_actions click to the chat
interactions endpoint, as API Gateway passes it on: no IAM identity), and the ``chat_message`` check (the
request's message in its channel, as the chat notifier left it). The requests carry Slack's documented
shapes (:mod:`sandbox.fake_slack`); ``signature`` plays what an attacker could send instead."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sessiongate.chat.slack import APPROVE, REJECT

from .. import fake_slack
from . import api

if TYPE_CHECKING:
    from .play import Play

PATH = "/slack/interactions"
SIGNATURES = ("good", "bad", "stale", "replayed")


def _send(play: Play, body: str, signature: str = "good") -> dict[str, Any]:
    """Slack POSTs ``body`` to the chat API (API Gateway: a REST proxy event, no IAM identity)."""
    now = int(play.now().timestamp())
    if signature == "stale":
        headers = fake_slack.sign(body, now - 6 * 60)
    elif signature == "bad":
        headers = fake_slack.sign(body, now, "not-the-signing-secret")
    else:
        headers = fake_slack.sign(body, now)
    event = {
        "resource": PATH,
        "path": PATH,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {
            "resourcePath": PATH,
            "httpMethod": "POST",
            "path": f"/v1{PATH}",
            "stage": "v1",
            "identity": {"sourceIp": "203.0.113.7", "userArn": None, "accountId": None},
        },
        "body": body,
        "isBase64Encoded": False,
    }
    arn = play.world.function_arn("ChatInteractionsFunction")
    answer: dict[str, Any] = {}
    for _ in range(2 if signature == "replayed" else 1):  # a replay: the same signed request again
        invocation = play.world.invoke(arn, event, trigger=f"api POST {PATH}", sync=True)
        answer = invocation.result if not invocation.error else {"statusCode": 502, "body": invocation.error}
    play.world.settle()
    return answer


def link(play: Play, index: int, spec: dict[str, Any]) -> None:
    """``/sessiongate link`` by ``slack_user``, then ``sessiongate chat link CODE`` signed by ``by``
    (``code: last``: the previous link's code again, which was used up)."""
    user = str(spec["slack_user"])
    if spec.get("code") == "last":
        code = getattr(play, "_last_code", "")
    else:
        answer = _send(play, fake_slack.slash_command(user))
        text = json.loads(answer.get("body") or "{}").get("text", "")
        code = text.split("`")[1] if "`" in text else ""
        play._last_code = code  # type: ignore[attr-defined]
    label = f"links Slack user {user} with a one-time code"
    # (``sessiongate chat link CODE --yes``: the CLI's first call, which only shows whose code it is, is
    # tests/unit/test_chat.py's and tests/integration/test_chat.py's business)
    body = {"code": code, "confirm": True}
    api.call(play, index, spec, spec["by"], "POST /chat/link", body=body, label=label)


def _decide(play: Play, index: int, spec: dict[str, Any], action_id: str, verb: str) -> None:
    request = api.native(play, spec, index, f"chat_{verb}")
    user, signature = str(spec["slack_user"]), str(spec.get("signature", "good"))
    before = len(play.world.slack.private)
    answer = _send(play, fake_slack.click(user, action_id, request["api_id"]), signature)
    status = int(answer.get("statusCode", 0))
    if status != 200:
        outcome = f"HTTP {status}"
    elif len(play.world.slack.private) > before:
        text = str(play.world.slack.private[-1][1]["text"])
        outcome = "success" if text.startswith("Done") else _refusal(text)
    else:
        outcome = "no answer"
    play.say(f"slack:{user}", f"clicks {verb.capitalize()} on [{spec['request']}] ({signature}) -> {outcome}")
    play.check(index, f"Slack {verb} by {user}", spec.get("expect_error", "success"), outcome)


def _refusal(text: str) -> str:
    """The code of a private refusal: ``Not done (code): ...``, or ``not_linked``."""
    if text.startswith("Not done (") and ")" in text:
        return text[len("Not done (") : text.index(")")]
    return "not_linked" if "not linked" in text else text[:60]


def approve(play: Play, index: int, spec: dict[str, Any]) -> None:
    _decide(play, index, spec, APPROVE, "approve")


def reject(play: Play, index: int, spec: dict[str, Any]) -> None:
    _decide(play, index, spec, REJECT, "reject")


def message(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The request's message in ``channel`` (default ``#approvals``): its state and whether it still
    shows the buttons."""
    request = api.native(play, spec, index, "chat_message")
    channel = str(spec.get("channel", "#approvals"))
    found = [m for m in play.world.slack.in_channel(channel) if request["api_id"] in m.all_text]
    if "expect" in spec:
        state = next((s for s in _STATES if f"*{s}*" in found[-1].all_text), "?") if found else "none"
        play.check(index, f"Slack message of [{spec['request']}] in {channel}", spec["expect"], state)
    if "buttons" in spec:
        shown = bool(found and found[-1].buttons)
        play.check(index, f"Slack buttons on [{spec['request']}]", bool(spec["buttons"]), shown)


_STATES = ("PENDING", "APPROVED", "ACTIVE", "REJECTED", "REVOKED", "EXPIRED", "CANCELLED", "DENIED")
