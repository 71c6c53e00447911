"""``sessiongate chat link CODE`` / ``sessiongate chat unlink``: bind your chat user to your AWS identity.

The code comes from the chat (Slack: ``/sessiongate link``, shown only to you, valid 10 minutes, once).
The call is signed with your own AWS credentials (SigV4, like every other command): the request API
first answers whose code it is (the Slack user and workspace), which you confirm (prompt, or ``--yes``;
without a terminal and without ``--yes`` nothing is linked: someone may have sent you their code), then
records the chat user of the code -> the identity that signed, and your Approve/Reject clicks in the
chat then act as that identity until the link expires (README, "Approving from Slack").
``sessiongate chat unlink --slack-user U... --team T...`` is for the stack's deployers: it removes anyone's
link (an incident).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

CODE_RE = re.compile(r"^[A-Za-z0-9]{5}-?[A-Za-z0-9]{5}$")


def cmd_chat(ctx: Any) -> Any:
    from .client import CliError

    if ctx.args.action == "link":
        code = (ctx.args.code or "").strip()
        if not CODE_RE.fullmatch(code):
            raise CliError("give the code /sessiongate link showed you, e.g. ABCDE-FGH23", "invalid_code")
        owner = ctx.api().call("POST", "/chat/link", {"code": code})["code_of"]
        whose = (
            f"{owner['chat']} user {owner.get('user_name') or '?'} ({owner['user_id']}) in workspace "
            f"{owner.get('team_domain') or '?'} ({owner['team_id']})"
        )
        if not ctx.args.yes:
            if not _interactive():
                raise CliError(
                    f"this code belongs to {whose}; nothing linked. If that is your own {owner['chat']} "
                    "user, run again with --yes (never link a code someone sent you)",
                    "confirm_needed",
                )
            answer = _ask(
                f"This code belongs to {whose}.\nIs that YOUR OWN {owner['chat']} user? Its clicks will "
                "approve as you. Link it? [y/N] "
            )
            if answer.strip().lower() not in {"y", "yes"}:
                raise CliError("not linked", "not_confirmed")
        return {"chat": ctx.api().call("POST", "/chat/link", {"code": code, "confirm": True})}
    if ctx.args.code:
        raise CliError("unlink takes no code", "invalid_code")
    if bool(ctx.args.slack_user) != bool(ctx.args.team):
        raise CliError("--slack-user and --team go together", "invalid_user")
    if ctx.args.slack_user:
        body = {"slack_user": ctx.args.slack_user, "team": ctx.args.team}
        return {"chat": ctx.api().call("POST", "/chat/unlink", body)}
    return {"chat": ctx.api().call("POST", "/chat/unlink", {})}


def _interactive() -> bool:
    return sys.stdin.isatty()


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline()


def render(result: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=True)
    if "link" in result:
        link = result["link"]
        return (
            f"linked {link['chat']} user {link.get('user_name') or '?'} ({link['user_id']}, workspace "
            f"{link['team_id']}) to {link['identity_arn']} until {link.get('expires_at', '?')}\n"
            f"If that is not your {link['chat']} user, run `sessiongate chat unlink` now."
        )
    removed = result.get("unlinked") or []
    if not removed:
        return "no chat user was linked to you"
    return "\n".join(f"unlinked {u['chat']} user {u['user_id']} (workspace {u['team_id']})" for u in removed)


def register(add: Callable[..., Any]) -> None:
    """Add the ``chat`` command (``add``: main.build_parser's helper)."""
    p = add("chat", "link your chat (Slack) user to your AWS identity, or unlink it", cmd_chat)
    p.add_argument("action", choices=["link", "unlink"], help="link: with the code /sessiongate link showed")
    p.add_argument("code", nargs="?", help="link: the one-time code")
    p.add_argument("--yes", action="store_true", help="link: the code is your own (no prompt)")
    p.add_argument("--slack-user", help="unlink, deployers only: the Slack user id (U...) whose link ends")
    p.add_argument("--team", help="unlink, deployers only: that user's Slack workspace id (T...)")
