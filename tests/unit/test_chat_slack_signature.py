"""The interactions endpoint verifies Slack's signature with slack-sdk's own code, without importing
slack-sdk's Web and webhook clients (cold start: issue 16; ``sessiongate.chat.slack._slack_signature``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox import fake_slack
from sessiongate.chat import slack

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW


def _inbound() -> slack.SlackInbound:
    return slack.SlackInbound(lambda: fake_slack.SIGNING_SECRET, _Clock())


def test_the_signature_module_is_slack_sdks_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "slack_sdk.signature", raising=False)
    module = slack._slack_signature.__wrapped__()
    package = importlib.util.find_spec("slack_sdk")
    assert package is not None
    assert package.submodule_search_locations
    location = next(iter(package.submodule_search_locations))
    assert module.__file__ == os.path.join(location, "signature", "__init__.py")
    assert module.__name__ != "slack_sdk.signature"  # (slack_sdk's own namespace is left alone)


@pytest.mark.parametrize("preloaded", [False, True])
def test_either_way_a_good_signature_verifies_and_a_bad_one_does_not(
    preloaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if preloaded:
        import slack_sdk.signature  # noqa: F401
    else:
        monkeypatch.delitem(sys.modules, "slack_sdk.signature", raising=False)
    monkeypatch.setattr(slack, "_slack_signature", slack._slack_signature.__wrapped__)
    body = fake_slack.slash_command("U0ALICE")
    headers = fake_slack.sign(body, int(NOW.timestamp()))
    assert _inbound().verify(headers, body) == headers["X-Slack-Signature"]
    assert _inbound().verify(headers, body + "&text=unlink") is None
    stale = fake_slack.sign(body, int(NOW.timestamp()) - 301)  # outside Slack's five minutes
    assert _inbound().verify(stale, body) is None


def test_verifying_does_not_import_slack_sdks_clients() -> None:
    """In a fresh process, as the interactions function's first invocation verifies."""
    code = (
        "import sys\n"
        "from tests.unit.test_chat_slack_signature import _inbound, NOW\n"
        "from sandbox import fake_slack\n"
        "body = fake_slack.slash_command('U0ALICE')\n"
        "assert _inbound().verify(fake_slack.sign(body, int(NOW.timestamp())), body)\n"
        "print(sorted(m for m in sys.modules if m.startswith('slack_sdk')))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "sessiongate"), str(ROOT)])}
    out = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
