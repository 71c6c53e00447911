"""Slack, played offline: the signed requests Slack sends (slash command, block_actions click) and a
workspace that records the messages SessionGate posts and updates and the private answers it sends.

The shapes are Slack's documented ones (docs.slack.dev): "Verifying requests from Slack" (``v0=`` +
hex HMAC-SHA256 of ``v0:{timestamp}:{body}``, headers ``X-Slack-Signature`` and
``X-Slack-Request-Timestamp``), "Implementing slash commands" (form fields), "block_actions payload"
(form field ``payload`` = JSON with ``type``, ``user``, ``team``, ``actions[]``, ``response_url``),
``chat.postMessage`` / ``chat.update`` (arguments and the ``channel``/``ts`` answer; ``invalid_blocks``,
``channel_not_found``, ``message_not_found``, ``msg_too_long`` errors) and Block Kit's limits. What
SessionGate sends is checked against them: a bad message fails here as it would fail in Slack.
No slack-sdk import: the fake stands in for it (and signs with the standard library, independently of
the code under test).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

SIGNING_SECRET = "sandbox-signing-secret-0123456789abcdef"  # noqa: S105 - the sandbox's own, not a secret
BOT_TOKEN = "xoxb-sandbox"  # noqa: S105 - the sandbox's own, not a secret
# What the deployers put in the stack's secrets after creating the Slack app (README, "Setting up the
# Slack app"); the sandbox's world is deployed with them in place.
SECRETS = {"SlackSigningSecret": SIGNING_SECRET, "SlackBotToken": BOT_TOKEN}
TEAM = "T0SANDBOX1"
RESPONSE_URL = "https://hooks.slack.com/actions/T0SANDBOX1/1/sandbox"
BLOCK_TYPES = frozenset({"section", "context", "actions", "header", "divider"})
_TRIGGERS = iter(range(1, 1_000_000))


def _trigger_id() -> str:
    """Each interaction has its own ``trigger_id`` (so two requests are never the same bytes)."""
    return f"{next(_TRIGGERS)}.2.sandbox"


class SlackError(Exception):
    """Slack answered ``ok: false`` (slack-sdk raises SlackApiError then)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """The headers Slack sends with ``body`` at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
    }


def slash_command(user_id: str, text: str = "link", team_id: str = TEAM) -> str:
    """A ``/sessiongate`` slash command's form body ("Implementing slash commands")."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": team_id,
            "team_domain": "sandbox",
            "channel_id": "D0SANDBOX1",
            "channel_name": "directmessage",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/sessiongate",
            "text": text,
            "api_app_id": "A0SANDBOX1",
            "response_url": "https://hooks.slack.com/commands/T0SANDBOX1/1/sandbox",
            "trigger_id": _trigger_id(),
        }
    )


def click(
    user_id: str,
    action_id: str,
    request_id: str,
    *,
    team_id: str = TEAM,
    channel: str = "C0SANDBOX01",
    ts: str = "1.000001",
    response_url: str = RESPONSE_URL,
) -> str:
    """A ``block_actions`` payload of a button click, form-encoded ("block_actions payload")."""
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": "A0SANDBOX1",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": _trigger_id(),
        "team": {"id": team_id, "domain": "sandbox"},
        "channel": {"id": channel, "name": "approvals"},
        "message": {"type": "message", "ts": ts, "text": "SessionGate request"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "sessiongate_decision",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": request_id,
                "type": "button",
                "action_ts": "2.000002",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def check_blocks(blocks: Any) -> None:
    """Block Kit's documented limits for what SessionGate sends (raises ``invalid_blocks``)."""
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        raise SlackError("invalid_blocks")
    for block in blocks:
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            raise SlackError("invalid_blocks")
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                raise SlackError("invalid_blocks")
            if text is not None and not _text(text, 3000):
                raise SlackError("invalid_blocks")
            if fields is not None and (len(fields) > 10 or not all(_text(f, 2000) for f in fields)):
                raise SlackError("invalid_blocks")
        elif kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10 or not all(_text(e, 3000) for e in elements):
                raise SlackError("invalid_blocks")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 25:
                raise SlackError("invalid_blocks")
            for button in elements:
                if (
                    button.get("type") != "button"
                    or not _text(button.get("text"), 75, plain=True)
                    or not 1 <= len(str(button.get("action_id", ""))) <= 255
                    or not 1 <= len(str(button.get("value", ""))) <= 2000
                    or button.get("style", "primary") not in ("primary", "danger")
                ):
                    raise SlackError("invalid_blocks")


def _text(obj: Any, limit: int, *, plain: bool = False) -> bool:
    if not isinstance(obj, dict) or obj.get("type") not in (
        ("plain_text",) if plain else ("mrkdwn", "plain_text")
    ):
        return False
    text = obj.get("text")
    return isinstance(text, str) and 1 <= len(text) <= limit


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    updates: int = 0

    @property
    def buttons(self) -> list[str]:
        return [e["action_id"] for b in self.blocks if b["type"] == "actions" for e in b["elements"]]

    @property
    def all_text(self) -> str:
        return json.dumps(self.blocks)


@dataclass
class FakeSlack:
    """A workspace: channels by name and id, the bot's messages, the private answers sent."""

    channels: dict[str, str] = field(default_factory=lambda: {"#approvals": "C0SANDBOX01"})
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    private: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    direct: list[tuple[str, str]] = field(default_factory=list)  # (user id, text): the app's DMs
    expired_urls: set[str] = field(default_factory=set)  # response_urls past their 30 minutes / 5 uses
    _ts: int = 0

    token: str = BOT_TOKEN  # the bot token the app was installed with

    def web(self, token: str) -> Any:
        """slack-sdk's ``WebClient(token=...)``: Slack refuses a wrong token on every call."""
        return self if token == self.token else _Refusing()

    # -- slack-sdk's WebClient, the two methods SessionGate calls ----------------------------------
    def chat_postMessage(
        self, *, channel: str, text: str = "", blocks: Any = None, **extra: Any
    ) -> dict[str, Any]:
        if re.fullmatch(r"[UW][A-Z0-9]{2,}", channel):  # a user's id: the app's DM with them
            if not text:
                raise SlackError("no_text")
            self.direct.append((channel, text))
            self._ts += 1
            return {"ok": True, "channel": f"D{channel[1:]}", "ts": f"1700000000.{self._ts:06d}"}
        channel_id = self.channels.get(channel, channel if channel in self.channels.values() else "")
        if not channel_id:
            raise SlackError("channel_not_found")
        if not text and not blocks:
            raise SlackError("no_text")
        if len(text) > 40_000:
            raise SlackError("msg_too_long")
        check_blocks(blocks)
        self._ts += 1
        ts = f"1700000000.{self._ts:06d}"
        self.messages[(channel_id, ts)] = Message(channel_id, ts, text, list(blocks))
        return {"ok": True, "channel": channel_id, "ts": ts}

    def chat_update(
        self, *, channel: str, ts: str, text: str = "", blocks: Any = None, **extra: Any
    ) -> dict[str, Any]:
        message = self.messages.get((channel, ts))
        if channel not in self.channels.values():
            raise SlackError("channel_not_found")  # chat.update takes the channel's id, not its name
        if message is None:
            raise SlackError("message_not_found")
        check_blocks(blocks)
        message.text, message.blocks, message.updates = text, list(blocks), message.updates + 1
        return {"ok": True, "channel": channel, "ts": ts}

    # -- slack-sdk's WebhookClient (response_url) ----------------------------------------------------
    def webhook(self, url: str) -> _Webhook:
        return _Webhook(self, url)

    def in_channel(self, name: str = "#approvals") -> list[Message]:
        channel = self.channels.get(name, name)
        return [m for (c, _), m in sorted(self.messages.items()) if c == channel]


@dataclass
class _Webhook:
    """slack_sdk's WebhookClient: ``send`` answers a WebhookResponse and never raises for an HTTP
    error (slack_sdk/webhook/client.py: an HTTPError becomes the response's status_code and body);
    Slack answers 400 ``invalid_payload``, and 404 ``expired_url``/``used_url`` for a response_url past
    its 30 minutes or 5 uses ("Handling user interaction in your Slack apps")."""

    slack: FakeSlack
    url: str

    def send(self, *, text: str | None = None, response_type: str | None = None, **extra: Any) -> Any:
        from slack_sdk.webhook import WebhookResponse

        def answer(status: int, body: str) -> WebhookResponse:
            return WebhookResponse(url=self.url, status_code=status, body=body, headers={})

        if self.url in self.slack.expired_urls:
            return answer(404, "expired_url")
        if not self.url.startswith("https://hooks.slack.com/") or not text or len(text) > 3000:
            return answer(400, "invalid_payload")
        if response_type not in (None, "ephemeral", "in_channel"):
            return answer(400, "invalid_payload")
        self.slack.private.append((self.url, {"text": text, "response_type": response_type, **extra}))
        return answer(200, "ok")


class _Refusing:
    """A client with a token Slack does not know ("invalid_auth" on every method)."""

    def __getattr__(self, name: str) -> Any:
        def call(**_: Any) -> Any:
            raise SlackError("invalid_auth")

        return call
