"""Chat approvals (issue 19) through the deployed handlers (the sandbox world: the template's tables,
secrets and functions on moto): the Slack app's manifest matches the code and the stack, a link made
with ``sessiongate chat link`` (SigV4 through an in-process API Gateway) lands in the links table and
its code works once, and the interactions handler refuses what Slack did not sign before reading it.
The whole flow (messages, clicks, refusals) is scenarios/slack-approval.yaml (tests/integration/
test_sandbox.py plays it)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from sandbox import fake_slack
from sandbox.world import World
from sessiongate.chat.slack import COMMAND
from sessiongate_cli.main import main
from tests.support.native import BOB, Gateway

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with World() as w:
        w.client("iam").create_user(UserName="bob")
        yield w


def _slack(
    world: World, body: str, *, headers: dict[str, str] | None = None, b64: bool = False
) -> dict[str, Any]:
    """Slack POSTs ``body`` to the chat API; API Gateway hands it to the function (maybe base64)."""
    signed = headers if headers is not None else fake_slack.sign(body, int(world.clock.now().timestamp()))
    event = {
        "resource": "/slack/interactions",
        "path": "/slack/interactions",
        "httpMethod": "POST",
        "headers": signed,
        "requestContext": {"resourcePath": "/slack/interactions", "httpMethod": "POST", "identity": {}},
        "body": base64.b64encode(body.encode()).decode() if b64 else body,
        "isBase64Encoded": b64,
    }
    invocation = world.invoke(
        world.function_arn("ChatInteractionsFunction"), event, trigger="test", sync=True
    )
    assert invocation.error is None, invocation.error
    return dict(invocation.result)


def _cli(world: World, gateway: Gateway, arn: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    session = boto3.Session(**gateway.credentials(arn))
    code = main(["--endpoint", ENDPOINT, *argv], transport=gateway, session=session, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _links(world: World) -> list[dict[str, Any]]:
    table = world.stack.resources["ChatLinksTable"].physical_id
    return list(world.client("dynamodb").scan(TableName=table)["Items"])


def test_the_manifest_names_the_command_the_scopes_and_the_stacks_url() -> None:
    manifest = yaml.safe_load((ROOT / "slack" / "manifest.yaml").read_text())
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == COMMAND
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {"chat:write", "commands"}
    assert command["url"] == manifest["settings"]["interactivity"]["request_url"] == "CHAT_INTERACTIONS_URL"
    template = (ROOT / "template.yaml").read_text()
    assert "Path: /slack/interactions" in template
    assert "/v1/slack/interactions" in template  # the ChatInteractionsUrl output


def test_link_through_the_cli_once_then_unlink(world: World) -> None:
    gateway = Gateway(
        lambda event, _ctx: (
            world.invoke(world.function_arn("RequestApiFunction"), event, trigger="api", sync=True).result
        )
    )
    answer = _slack(world, fake_slack.slash_command("U0BOB"))
    text = json.loads(answer["body"])
    assert text["response_type"] == "ephemeral"
    code = text["text"].split("`")[1]
    # Not a terminal and no --yes: whose code it is, nothing linked (review finding 2).
    status, out, err = _cli(world, gateway, BOB, "chat", "link", code)
    assert status == 1
    assert "(confirm_needed)" in err
    assert "u0bob (U0BOB) in workspace sandbox" in err
    assert _links(world) == []
    status, out, err = _cli(world, gateway, BOB, "chat", "link", code, "--yes")
    assert status == 0, err
    assert "linked slack user u0bob (U0BOB" in out
    assert BOB in out
    [link] = _links(world)
    assert (link["chat_user"]["S"], link["identity_arn"]["S"]) == (f"slack/{fake_slack.TEAM}/U0BOB", BOB)
    # It expires (DynamoDB TTL on ``ttl``, and checked on read) and carries the approval key's MAC.
    assert link["ttl"]["N"] == link["expires_at"]["N"]
    assert int(link["expires_at"]["N"]) == int(world.clock.now().timestamp()) + 30 * 86400
    assert link["mac"]["S"]
    status, _, err = _cli(world, gateway, BOB, "chat", "link", code, "--yes")
    assert status == 1
    assert "(invalid_code)" in err
    status, out, _ = _cli(world, gateway, BOB, "chat", "unlink")
    assert status == 0
    assert "unlinked slack user U0BOB" in out
    assert _links(world) == []
    types = [n["attributes"]["event_type"] for n in world.notifications()]
    assert types.count("ChatLinked") == 1
    assert types.count("ChatUnlinked") == 1


def test_the_handler_refuses_what_slack_did_not_sign_and_reads_base64_bodies(world: World) -> None:
    body = fake_slack.slash_command("U0EVE")
    now = int(world.clock.now().timestamp())
    assert _slack(world, body, headers=fake_slack.sign(body, now, "guessed-secret"))["statusCode"] == 401
    assert _slack(world, body, headers=fake_slack.sign(body, now - 301))["statusCode"] == 401
    assert _slack(world, body, headers={})["statusCode"] == 401
    assert _slack(world, body, b64=True)["statusCode"] == 200  # API Gateway may pass the body in base64


def test_the_chat_tables_on_dynamodb_behave_like_the_unit_fakes(world: World) -> None:
    """adapters/chat.py on moto: a code is taken once and not after its expiry, a signature is seen once,
    a message is saved only over the version it was read at (tests/unit/fakes/chat.py does the same)."""
    from sessiongate.adapters.chat import ChatStateTable, LinksTable
    from sessiongate.chat.ports import ChatUser, CodeOwner, Link, RequestCard, StoredMessage
    from tests.unit.fakes.chat import FakeChatState, FakeLinks

    db = world.client("dynamodb")
    real_state = ChatStateTable(db, world.stack.resources["ChatStateTable"].physical_id)
    real_links = LinksTable(db, world.stack.resources["ChatLinksTable"].physical_id)
    user = ChatUser("slack", "T1", "U1")
    owner = CodeOwner(user, "bob", "acme")
    card = RequestCard("r" * 32, "alice", "arn:a", "arn:a", "123456789012", "i-0123456789abcdef0", 5, "why")
    for state, links in ((real_state, real_links), (FakeChatState(), FakeLinks())):
        state.put_code("h1", owner, expires_at=1000)
        state.put_code("h2", owner, expires_at=1000)
        assert state.peek_code("h1", now=999) == owner  # shown, not taken
        assert state.peek_code("h2", now=1000) is None  # expired
        assert state.take_code("h1", now=999) == owner
        assert state.take_code("h1", now=999) is None  # once
        assert state.take_code("h2", now=1000) is None  # expired (TTL deletes later)
        assert state.first_seen("sig-a", now=1, keep_until=2) is True
        assert state.first_seen("sig-a", now=1, keep_until=2) is False
        assert state.save_message("r1", StoredMessage("C1", "1.1", card, 1, ("e1",))) is True
        assert state.save_message("r1", StoredMessage("C1", "1.1", card, 1, ("e1",))) is False
        assert state.save_message("r1", StoredMessage("C1", "1.1", card, 3)) is False
        assert state.save_message("r1", StoredMessage("C1", "1.1", card, 2, ("e1", "e2"))) is True
        stored = state.message_of("r1")
        assert stored is not None
        assert (stored.version, stored.seen, stored.card) == (2, ("e1", "e2"), card)
        assert links.put(Link(user, "arn:x", "t0", 5, "m0")) is None
        assert links.put(Link(user, "arn:y", "t1", 6, "m1")) == Link(user, "arn:x", "t0", 5, "m0")
        assert links.get(user) == Link(user, "arn:y", "t1", 6, "m1")
        assert links.of_identity("arn:y") == [Link(user, "arn:y", "")]  # (a keys-only index)
        assert links.delete(user) == Link(user, "arn:y", "t1", 6, "m1")
        assert links.get(user) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chat", "link", "not a code"], "give the code /sessiongate link showed you"),
        (["chat", "link"], "give the code /sessiongate link showed you"),
        (["chat", "unlink", "ABCDE-FGH23"], "unlink takes no code"),
        (["chat", "unlink", "--slack-user", "U0BOB"], "--slack-user and --team go together"),
    ],
)
def test_chat_usage_mistakes_are_refused_before_calling_the_api(argv: list[str], message: str) -> None:
    err = io.StringIO()

    class NoCalls:
        def send(self, request: Any) -> Any:
            raise AssertionError("the API was called")

    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x", region_name="us-east-1"
    )
    assert main(["--endpoint", ENDPOINT, *argv], transport=NoCalls(), session=session, err=err) == 1
    assert message in err.getvalue()


def test_the_request_api_wiring_passes_the_link_age_the_deployers_and_the_approval_key() -> None:
    from datetime import UTC, datetime, timedelta

    from sessiongate import wiring
    from sessiongate.clock import ManualClock
    from sessiongate.settings import Settings

    key = "arn:aws:kms:us-east-1:123456789012:key/0b0c0d0e-1111-2222-3333-444455556666"
    deployer = "arn:aws:iam::123456789012:role/Deployers"
    settings = Settings(
        chat_state_table="state",
        chat_links_table="links",
        chat_link_max_age_days=7,
        deployer_arns=(deployer,),
        approval_key_id=key,
    )
    linking = wiring.linking(
        settings, ManualClock(datetime(2026, 1, 5, tzinfo=UTC)), lambda _service: object()
    )
    assert linking is not None
    assert (linking.max_age, linking.deployers) == (timedelta(days=7), (deployer,))
    assert linking.seal is not None
    assert linking.seal.key_id == key


@pytest.mark.parametrize(("answer", "linked"), [("n\n", False), ("\n", False), ("y\n", True)])
def test_at_a_terminal_the_cli_asks_before_linking(
    world: World, monkeypatch: pytest.MonkeyPatch, answer: str, linked: bool
) -> None:
    from sessiongate_cli import chat as cli_chat

    asked: list[str] = []
    monkeypatch.setattr(cli_chat, "_interactive", lambda: True)
    monkeypatch.setattr(cli_chat, "_ask", lambda prompt: asked.append(prompt) or answer)
    gateway = Gateway(
        lambda event, _ctx: (
            world.invoke(world.function_arn("RequestApiFunction"), event, trigger="api", sync=True).result
        )
    )
    text = json.loads(_slack(world, fake_slack.slash_command("U0MALLORY"))["body"])["text"]
    status, _, err = _cli(world, gateway, BOB, "chat", "link", text.split("`")[1])
    assert "u0mallory (U0MALLORY)" in asked[0]
    assert (status == 0) is linked, err
    assert [lk["chat_user"]["S"] for lk in _links(world)] == (
        [f"slack/{fake_slack.TEAM}/U0MALLORY"] if linked else []
    )
    if linked:
        _cli(world, gateway, BOB, "chat", "unlink")
