"""The Slack adapter: verify and read what Slack sends, post and update request messages, answer privately.

Uses slack-sdk (PyPI ``slack-sdk``, pure Python, urllib only): ``SignatureVerifier`` for the request
signature, ``WebClient`` for ``chat.postMessage`` / ``chat.update`` and ``WebhookClient`` for a private
answer through an interaction's ``response_url``. Imported by the two chat functions only (it adds
~70 ms to an import of boto3; the request API never imports it).

What Slack documents (docs.slack.dev):
- "Verifying requests from Slack": ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256 of
  ``v0:{X-Slack-Request-Timestamp}:{raw body}`` with the app's signing secret; refuse a timestamp more
  than five minutes from now (replays). ``SignatureVerifier.is_valid`` does both (constant-time compare).
- "Handling user interaction" / "block_actions payload": interactions arrive as
  ``application/x-www-form-urlencoded`` with one ``payload`` field holding JSON: ``type``
  (``block_actions``), ``user`` (``id``, ``team_id``), ``team`` (``id``), ``actions[]`` (``action_id``,
  ``value``), ``response_url``; the app acknowledges with HTTP 200 within 3 seconds and may answer
  through ``response_url`` (``response_type: ephemeral``, ``replace_original: false``).
- "Implementing slash commands": form fields ``command``, ``text``, ``team_id``, ``team_domain``,
  ``user_id``, ``user_name``, ``response_url``; the HTTP answer's JSON (``response_type: ephemeral``,
  ``text``) is shown to the caller only.
- Block Kit limits: a section's text at most 3000 characters, up to 10 fields of 2000; a button's
  ``value`` 2000, ``action_id`` 255, its text 75.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from sessiongate.chat.ports import (
    ChatUser,
    Click,
    Interaction,
    LinkCommand,
    RequestCard,
    Unsupported,
    shown,
)
from sessiongate.observability import logger, metrics

CHAT = "slack"
COMMAND = "/sessiongate"
APPROVE, REJECT = "sessiongate_approve", "sessiongate_reject"
MAX_BODY = 64 * 1024
# response_url is always a Slack webhook host ("Handling user interaction"); anything else is refused
# (it is in the signed body, so only Slack could set it: a second line of defence, not the first).
RESPONSE_HOSTS = frozenset({"hooks.slack.com"})
# The headers' shapes, checked before anything compares them: ASCII only (``str.isdigit`` admits "²",
# which ``int`` refuses; ``hmac.compare_digest`` raises TypeError on a non-ASCII str).
SIGNATURE_RE = re.compile(r"v0=[0-9a-f]{64}", re.ASCII)
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}", re.ASCII)


class SlackInbound:
    """Verifies Slack's signature (first), then reads a block_actions payload or a slash command."""

    def __init__(self, signing_secret: Callable[[], str], clock: Any) -> None:
        self._secret = signing_secret  # read on use (Secrets Manager, cached by the adapter)
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: str) -> str | None:
        from slack_sdk.signature import Clock, SignatureVerifier

        class Seconds(Clock):
            """slack-sdk's clock (``now() -> float``) over SessionGate's injectable clock."""

            def now(inner) -> float:  # (self: the enclosing adapter, whose clock it reads)
                return float(self._clock.now().timestamp())

        lower = {k.lower(): v for k, v in headers.items()}
        timestamp, signature = lower.get("x-slack-request-timestamp"), lower.get("x-slack-signature")
        if (
            not isinstance(timestamp, str)
            or not isinstance(signature, str)
            or not TIMESTAMP_RE.fullmatch(timestamp)
            or not SIGNATURE_RE.fullmatch(signature)
            or len(body) > MAX_BODY
        ):
            return None
        verifier = SignatureVerifier(self._secret(), clock=Seconds())
        return signature if verifier.is_valid(body=body, timestamp=timestamp, signature=signature) else None

    def parse(self, headers: Mapping[str, str], body: str) -> Interaction:
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                return Unsupported("payload is not JSON")
            return _interaction(payload) if isinstance(payload, dict) else Unsupported("payload")
        if form.get("command") == COMMAND:
            words = form.get("text", "").split()
            user = ChatUser(CHAT, form.get("team_id", ""), form.get("user_id", ""))
            if words[:1] == ["link"] and user.team_id and user.user_id:
                return LinkCommand(user, form.get("user_name", "")[:80], form.get("team_domain", "")[:80])
            return Unsupported(f"command text {' '.join(words)[:40]!r}")
        return Unsupported("neither an interaction nor the /sessiongate command")


def _interaction(payload: Mapping[str, Any]) -> Interaction:
    if payload.get("type") != "block_actions":
        return Unsupported(f"interaction type {str(payload.get('type'))[:40]!r}")
    user, team = payload.get("user") or {}, payload.get("team") or {}
    actions = payload.get("actions") or []
    if (
        not isinstance(user, dict)
        or not isinstance(team, dict)
        or not isinstance(actions, list)
        or not actions
    ):
        return Unsupported("block_actions without user, team or actions")
    action = actions[0] if isinstance(actions[0], dict) else {}
    verb = {APPROVE: "approve", REJECT: "reject"}.get(str(action.get("action_id")))
    team_id = str(user.get("team_id") or team.get("id") or "")
    response_url = str(payload.get("response_url") or "")
    if verb is None or not isinstance(action.get("value"), str) or not user.get("id") or not team_id:
        return Unsupported(f"action {str(action.get('action_id'))[:40]!r}")
    if urlsplit(response_url).scheme != "https" or urlsplit(response_url).hostname not in RESPONSE_HOSTS:
        return Unsupported("response_url is not a Slack webhook")
    return Click(
        ChatUser(CHAT, team_id, str(user["id"])),
        "approve" if verb == "approve" else "reject",
        action["value"],
        response_url,
    )


# -- messages --------------------------------------------------------------------------------------
def escape(text: object) -> str:
    """Slack's three control characters in mrkdwn/plain text ("Formatting text for app surfaces")."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_STATE_ICONS = {
    "PENDING": ":hourglass_flowing_sand:",
    "APPROVED": ":white_check_mark:",
    "ACTIVE": ":unlock:",
    "REJECTED": ":no_entry:",
    "REVOKED": ":lock:",
    "EXPIRED": ":lock:",
    "CANCELLED": ":heavy_multiplication_x:",
    "DENIED": ":no_entry:",
}


def summary(card: RequestCard) -> str:
    """The message's plain text (notifications, screen readers)."""
    glass = "BREAK-GLASS " if card.break_glass else ""
    return (
        f"{glass}SessionGate request {card.request_id}: {card.principal_name} on {card.instance_id} "
        f"for {card.duration_minutes} min ({card.state})"
    )[:3000]


def blocks(card: RequestCard) -> list[dict[str, Any]]:
    """The request's Block Kit message: the facts, its history, and the buttons while it is pending."""
    title = f"{_STATE_ICONS.get(card.state, '')} *{escape(card.state)}* request `{escape(card.request_id)}`"
    if card.break_glass:
        title = f":rotating_light: *BREAK-GLASS* {title}"
    tags = ", ".join(f"{k}={v}" for k, v in sorted(card.instance_tags.items())) or "-"
    fields = [
        ("Who", f"{card.principal_name} ({card.principal_arn})"),
        ("Instance", f"{card.instance_id} in {card.account}"),
        ("Tags", tags),
        ("Duration", f"{card.duration_minutes} min"),
        ("Reason", card.reason),
        ("Ticket", card.ticket or "-"),
        ("Rule", card.rule or "-"),
        ("Break-glass", "yes" if card.break_glass else "no"),
    ]
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": title[:3000]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{escape(value)}"[:2000]} for name, value in fields
            ],
        },
    ]
    if card.history:
        text = "\n".join(escape(shown(entry)) for entry in card.history[-10:])
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]})
    if card.open:
        out.append(
            {
                "type": "actions",
                "block_id": "sessiongate_decision",
                "elements": [
                    _button("Approve", APPROVE, card.request_id, "primary"),
                    _button("Reject", REJECT, card.request_id, "danger"),
                ],
            }
        )
    return out


def _button(text: str, action_id: str, value: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
        "style": style,
    }


class Web(Protocol):
    """The part of ``slack_sdk.WebClient`` used (raises ``SlackApiError`` when Slack answers ok=false)."""

    def chat_postMessage(self, **kwargs: Any) -> Any: ...

    def chat_update(self, **kwargs: Any) -> Any: ...


class Webhook(Protocol):
    def send(self, **kwargs: Any) -> Any: ...


class SlackOutbound:
    """Posts and updates request messages with the bot token; answers through ``response_url``."""

    def __init__(self, web: Callable[[], Web], webhook: Callable[[str], Webhook] | None = None) -> None:
        self._web = web  # built on use (the bot token comes from Secrets Manager)
        self._webhook = webhook or _webhook

    def post(self, channel: str, card: RequestCard) -> tuple[str, str]:
        answer = self._web().chat_postMessage(channel=channel, text=summary(card), blocks=blocks(card))
        return str(answer["channel"]), str(answer["ts"])

    def update(self, channel: str, ref: str, card: RequestCard) -> None:
        self._web().chat_update(channel=channel, ts=ref, text=summary(card), blocks=blocks(card))

    def tell(self, user_id: str, text: str) -> None:
        # chat.postMessage with a user's id as ``channel`` posts in the app's direct messages with them
        # (docs.slack.dev, "chat.postMessage"; scope chat:write, which the app already has).
        self._web().chat_postMessage(channel=user_id, text=escape(text)[:3000])

    def reply_privately(self, reply_to: str, text: str) -> None:
        if urlsplit(reply_to).hostname not in RESPONSE_HOSTS:
            raise ValueError("not a Slack response_url")
        # WebhookClient.send does not raise for an HTTP error: it answers the status and Slack's body
        # (404 expired_url after 30 minutes or 5 uses). The decision itself is recorded and shown on
        # the request's message; a lost private answer is logged and counted, not dropped silently.
        response = self._webhook(reply_to).send(
            text=text[:3000], response_type="ephemeral", replace_original=False
        )
        status = getattr(response, "status_code", None)
        if status != 200:
            logger().error(
                "chat private answer not delivered",
                extra={"status": status, "slack_error": str(getattr(response, "body", ""))[:200]},
            )
            metrics().add("ChatReplyFailures")


def _webhook(url: str) -> Any:
    from slack_sdk.webhook import WebhookClient

    return WebhookClient(url, timeout=5)


def web_client(token: str) -> Any:
    from slack_sdk.web import WebClient

    return WebClient(token=token, timeout=5)
