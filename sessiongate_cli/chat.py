"""``sessiongate chat link CODE`` / ``sessiongate chat unlink``: bind your chat user to your AWS identity.

The code comes from the chat (Slack: ``/sessiongate link``, shown only to you, valid 10 minutes, once).
The call is signed with your own AWS credentials (SigV4, like every other command): the request API
records the chat user of the code -> the identity that signed, and your Approve/Reject clicks in the
chat then act as that identity (README, "Approving from Slack").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

CODE_RE = re.compile(r"^[A-Za-z0-9]{5}-?[A-Za-z0-9]{5}$")


def cmd_chat(ctx: Any) -> Any:
    from .client import CliError

    if ctx.args.action == "link":
        code = (ctx.args.code or "").strip()
        if not CODE_RE.fullmatch(code):
            raise CliError("give the code /sessiongate link showed you, e.g. ABCDE-FGH23", "invalid_code")
        return {"chat": ctx.api().call("POST", "/chat/link", {"code": code})}
    if ctx.args.code:
        raise CliError("unlink takes no code", "invalid_code")
    return {"chat": ctx.api().call("POST", "/chat/unlink", {})}


def render(result: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=True)
    if "link" in result:
        link = result["link"]
        return (
            f"linked {link['chat']} user {link['user_id']} (workspace {link['team_id']}) to "
            f"{link['identity_arn']}\n"
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
