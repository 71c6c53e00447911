"""Chat approvals (issue 19) on fakes: Slack's signature first (bad, stale, replayed), identity links
(one-time, expiring codes; re-link and unlink audited), clicks decided through the request API's own
approve/reject (separation of duties, approve_in_chat), and the request's message kept up to date."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sandbox import fake_slack
from sessiongate.access_requests.errors import NotFound, Refused
from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError
from sessiongate.access_requests.records import RequestStatus
from sessiongate.chat.links import code_hash
from sessiongate.chat.ports import ChatUser
from sessiongate.chat.slack import APPROVE, REJECT
from sessiongate.outbox import granted, request_events
from tests.unit.access_world import ALICE, BOB, EVE, POLICY, caller, create
from tests.unit.fakes.chat import DEPLOYER, ChatWorld, chat_world

CHANNEL = "#approvals"


def policy(**default_rule: Any) -> dict[str, Any]:
    document = copy.deepcopy(POLICY)
    document["rules"][1].update({"slack_channel": CHANNEL, **default_rule})
    return document


def approved_by_click(c: ChatWorld, who: str = "U0BOB", action: str = APPROVE) -> str:
    request_id = create(c.w)
    c.send(fake_slack.click(who, action, request_id))
    return request_id


# -- signature, timestamp window, replay -------------------------------------------------------------
def test_a_good_signature_is_answered_and_a_bad_one_is_401_before_anything_is_read() -> None:
    c = chat_world(policy())
    body = fake_slack.slash_command("U0BOB")
    assert c.send(body, secret="not-the-signing-secret").status == 401
    assert c.state.codes == {}
    assert c.state.seen == {}
    answer = c.send(body)
    assert answer.status == 200
    assert "sessiongate chat link" in str(answer.text)
    assert len(c.state.codes) == 1


def test_a_body_changed_after_signing_is_refused() -> None:
    c = chat_world(policy())
    request_id = create(c.w)
    timestamp = int(c.w.clock.now().timestamp())
    headers = fake_slack.sign(fake_slack.click("U0EVE", APPROVE, request_id), timestamp)
    forged = fake_slack.click("U0BOB", APPROVE, request_id)  # same signature, someone else's click
    assert c.chat.handle(headers, forged).status == 401


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_a_timestamp_outside_five_minutes_is_refused(age: int) -> None:
    c = chat_world(policy())
    assert c.send(fake_slack.slash_command("U0BOB"), age_seconds=age).status == 401
    assert c.state.codes == {}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "1767600000"},
        # shapes that used to crash (TypeError / ValueError) instead of a 401:
        {"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": "v0=" + "\u00e9" * 64},
        {"X-Slack-Request-Timestamp": "\u00b2", "X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": "v0=" + "A" * 64},
        {"X-Slack-Request-Timestamp": "1" * 13, "X-Slack-Signature": "v0=" + "0" * 64},
    ],
)
def test_missing_or_malformed_signature_headers_are_refused(headers: dict[str, str]) -> None:
    c = chat_world(policy())
    now = str(int(c.w.clock.now().timestamp()))  # (inside the window: the signature itself is checked)
    headers = {k: now if v == "NOW" else v for k, v in headers.items()}
    assert c.chat.handle(headers, fake_slack.slash_command("U0BOB")).status == 401
    assert c.state.seen == {}


def test_the_same_signed_request_twice_is_a_replay() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    request_id = create(c.w)
    body = fake_slack.click("U0BOB", REJECT, request_id)
    headers = fake_slack.sign(body, int(c.w.clock.now().timestamp()))
    assert c.chat.handle(headers, body).status == 200
    c.w.clock.advance(timedelta(seconds=30))
    assert c.chat.handle(headers, body).status == 401
    assert len(c.slack.private) == 1  # the replay did nothing, not even an answer


# -- identity links ----------------------------------------------------------------------------------
def _code(c: ChatWorld, user: str = "U0BOB") -> str:
    return str(c.send(fake_slack.slash_command(user)).text).split("`")[1]


def test_a_code_links_once_and_only_its_hash_is_stored() -> None:
    c = chat_world(policy())
    code = _code(c)
    assert code not in str(c.state.codes)
    assert code_hash(code) in c.state.codes
    answer = c.linking.link(caller(BOB), {"code": code.lower(), "confirm": True})
    assert answer["link"] == {
        "chat": "slack",
        "team_id": fake_slack.TEAM,
        "user_id": "U0BOB",
        "user_name": "u0bob",
        "team_domain": "sandbox",
        "identity_arn": BOB,
        "linked_at": "2026-01-05T09:00:00Z",
        "expires_at": "2026-02-04T09:00:00Z",
    }
    with pytest.raises(NotFound) as again:
        c.linking.link(caller(EVE), {"code": code, "confirm": True})
    assert again.value.code == "invalid_code"
    assert c.links.links[f"slack/{fake_slack.TEAM}/U0BOB"].identity_arn == BOB


def test_a_code_expires_after_ten_minutes() -> None:
    c = chat_world(policy())
    code = _code(c)
    c.w.clock.advance(timedelta(minutes=10))
    for confirm in (False, True):
        with pytest.raises(NotFound):
            c.linking.link(caller(BOB), {"code": code, "confirm": confirm})
    assert c.links.links == {}


def test_relink_and_unlink_are_audited() -> None:
    c = chat_world(policy())
    c.link("U0BOB", EVE)
    c.link("U0BOB", BOB)  # the Slack user now proves another identity: replaced
    c.link("U0BOB2", BOB)  # one Slack user per identity: U0BOB's link ends
    assert [lk.user.user_id for lk in c.links.links.values()] == ["U0BOB2"]
    audit = [
        (t, p.get("user_id"), p.get("identity_arn")) for t, p in c.w.notifier.sent if t.startswith("Chat")
    ]
    assert audit == [
        ("ChatLinked", "U0BOB", EVE),
        ("ChatLinked", "U0BOB", BOB),
        ("ChatUnlinked", "U0BOB", BOB),
        ("ChatLinked", "U0BOB2", BOB),
    ]
    replaced = [p for t, p in c.w.notifier.sent if t == "ChatLinked"][1]
    assert replaced["previous_identity_arn"] == EVE
    assert c.linking.unlink(caller(BOB))["unlinked"][0]["user_id"] == "U0BOB2"
    assert c.links.links == {}
    assert c.w.notifier.types[-1] == "ChatUnlinked"


def test_a_code_first_shows_whose_it_is_and_links_only_when_confirmed() -> None:
    """Review finding 2: Mallory sends Bob her code; Bob sees it is hers before anything is linked."""
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    code = _code(c, "U0MALLORY")
    shown = c.linking.link(caller(BOB), {"code": code})
    assert shown == {
        "code_of": {
            "chat": "slack",
            "team_id": fake_slack.TEAM,
            "user_id": "U0MALLORY",
            "user_name": "u0mallory",
            "team_domain": "sandbox",
        },
        "confirm_needed": True,
    }
    assert [lk.user.user_id for lk in c.links.links.values()] == ["U0BOB"]  # nothing changed
    assert code_hash(code) in c.state.codes  # the code is still there for the confirmation
    with pytest.raises(Refused):
        c.linking.link(caller(BOB), {"code": code, "confirm": "yes"})


def test_a_replaced_link_is_announced_to_the_slack_user_it_replaced() -> None:
    """Review finding 2: if Bob confirms anyway, his own Slack user is told (the notifier DMs it)."""
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    c.deliver()
    c.link("U0MALLORY", BOB)
    [unlinked] = [p for t, p in c.w.notifier.sent if t == "ChatUnlinked"]
    assert (unlinked["user_id"], unlinked["replaced_by"]) == ("U0BOB", "U0MALLORY")
    linked = [p for t, p in c.w.notifier.sent if t == "ChatLinked"][-1]
    assert linked["previous_slack_user"] == "U0BOB"
    assert linked["user_name"] == "u0mallory"
    assert c.deliver() == ["told U0BOB"]
    [(channel, text)] = c.slack.direct
    assert channel == "U0BOB"
    assert "U0MALLORY" in text
    assert BOB in text
    assert "sessiongate chat unlink" in text


# -- link lifetime, seal and removal (review findings 1 and 3) -----------------------------------------
def test_a_link_expires_after_its_max_age_and_is_refused_privately() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    [link] = c.links.links.values()
    assert link.expires_at == int((c.w.clock.now() + timedelta(days=30)).timestamp())
    c.w.clock.advance(timedelta(days=30))
    request_id = approved_by_click(c)
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    text = c.slack.private[-1][1]["text"]
    assert "expired" in text
    assert "/sessiongate link" in text


@pytest.mark.parametrize(
    "forge",
    [
        lambda lk: replace(lk, mac=""),  # written without a MAC
        lambda lk: replace(lk, mac="bm90IGEgbWFj"),  # a made-up MAC
        lambda lk: replace(lk, identity_arn=BOB.replace("bob", "carol")),  # another identity, same MAC
        lambda lk: replace(lk, expires_at=lk.expires_at + 86400 * 365),  # lengthened
        lambda lk: replace(lk, user=ChatUser("slack", fake_slack.TEAM, "U0EVE")),  # moved to Eve
    ],
)
def test_a_link_not_sealed_by_the_request_api_is_refused_as_tampering(forge: Any) -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    [link] = c.links.links.values()
    forged = forge(link)
    c.links.links = {forged.user.key: forged}
    request_id = approved_by_click(c, who=forged.user.user_id)
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert "not valid" in c.slack.private[-1][1]["text"]
    assert c.w.bus.emitted == []


def test_a_deployer_removes_any_link_and_it_is_audited() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    with pytest.raises(Refused) as refused:
        c.linking.unlink(caller(EVE), {"slack_user": "U0BOB", "team": fake_slack.TEAM})
    assert refused.value.code == "not_a_deployer"
    assert len(c.links.links) == 1
    deployer = f"{DEPLOYER.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/incident"
    answer = c.linking.unlink(caller(deployer), {"slack_user": "U0BOB", "team": fake_slack.TEAM})
    assert answer == {"unlinked": [{"chat": "slack", "team_id": fake_slack.TEAM, "user_id": "U0BOB"}]}
    assert c.links.links == {}
    event_type, payload = c.w.notifier.sent[-1]
    assert event_type == "ChatUnlinked"
    assert (payload["by"], payload["reason"], payload["identity_arn"]) == (
        deployer,
        "removed by a deployer",
        BOB,
    )
    with pytest.raises(Refused):
        c.linking.unlink(caller(deployer), {"slack_user": "U0BOB", "team": "not a team"})


# -- clicks: the request API's approve/reject as the linked identity ----------------------------------
def test_a_click_approves_through_the_same_path_as_the_linked_identity() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    request_id = approved_by_click(c)
    record = c.w.store.get(request_id)
    assert record is not None
    assert record.status is RequestStatus.APPROVED
    assert [a.approver_arn for a in record.approvals] == [BOB]
    assert "Slack by U0BOB" in record.approvals[0].comment
    assert record.approval_mac  # signed like every approval: the engine verifies it
    [event] = c.w.bus.emitted
    assert event.approver_arns == (BOB,)
    assert c.w.grant().result == "granted"
    url, answer = c.slack.private[-1]
    assert url == fake_slack.RESPONSE_URL
    assert answer["response_type"] == "ephemeral"
    assert "APPROVED" in answer["text"]


def test_a_click_rejects_with_a_comment_naming_slack() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    request_id = approved_by_click(c, action=REJECT)
    record = c.w.store.get(request_id)
    assert record is not None
    assert record.status is RequestStatus.REJECTED
    assert record.decided_by == BOB
    assert "Slack" in record.comment


def test_an_unlinked_slack_user_is_refused_privately() -> None:
    c = chat_world(policy())
    request_id = approved_by_click(c, who="U0NOBODY")
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert "not linked" in c.slack.private[-1][1]["text"]


@pytest.mark.parametrize(("who", "code"), [(ALICE, "self_approval"), (EVE, "not_an_approver")])
def test_a_linked_identity_that_may_not_approve_is_refused(who: str, code: str) -> None:
    c = chat_world(policy())
    c.link("U0X", who)
    request_id = approved_by_click(c, who="U0X")
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert f"({code})" in c.slack.private[-1][1]["text"]
    assert c.w.bus.emitted == []


def test_a_rule_can_forbid_approvals_in_chat_but_not_through_the_api() -> None:
    c = chat_world(policy(approve_in_chat=False))
    c.link("U0BOB", BOB)
    request_id = approved_by_click(c)
    assert "(chat_approval_forbidden)" in c.slack.private[-1][1]["text"]
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert c.w.service.approve(caller(BOB), request_id, None)["request"]["status"] == "APPROVED"


def test_other_interactions_and_commands_do_nothing() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    request_id = create(c.w)
    assert c.send(fake_slack.click("U0BOB", "some_other_button", request_id)).status == 200
    assert c.send(fake_slack.slash_command("U0BOB", text="help")).text is not None
    bad_url = fake_slack.click("U0BOB", APPROVE, request_id, response_url="https://example.com/x")
    assert c.send(bad_url).status == 200
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]


def test_a_private_answer_slack_refuses_is_logged_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 19, finding 6: WebhookClient.send answers an HTTP error, it does not raise."""
    from sessiongate.chat import slack

    errors: list[tuple[str, dict[str, Any]]] = []
    counted: list[str] = []

    class Log:
        def error(self, message: str, extra: dict[str, Any]) -> None:
            errors.append((message, extra))

    class Metrics:
        def add(self, name: str, *_: Any, **__: Any) -> None:
            counted.append(name)

    monkeypatch.setattr(slack, "logger", Log, raising=False)
    monkeypatch.setattr(slack, "metrics", Metrics, raising=False)
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    request_id = create(c.w)
    url = "https://hooks.slack.com/actions/T0SANDBOX1/1/expired"
    c.slack.expired_urls.add(url)
    assert c.send(fake_slack.click("U0BOB", APPROVE, request_id, response_url=url)).status == 200
    assert c.w.store.get(request_id).status is RequestStatus.APPROVED  # type: ignore[union-attr]
    assert c.slack.private == []
    assert errors == [("chat private answer not delivered", {"status": 404, "slack_error": "expired_url"})]
    assert counted == ["ChatReplyFailures"]


def test_clicks_and_commands_from_another_workspace_are_refused() -> None:
    """Review of issue 19, finding 7: with SlackTeamIds set, another workspace the app is installed in
    (same signing secret) neither links nor decides."""
    from dataclasses import replace

    c = chat_world(policy())
    c.link("U0BOB", BOB)
    c.chat = replace(c.chat, team_ids=frozenset({"T0OTHER01"}))
    request_id = create(c.w)
    answer = c.send(fake_slack.click("U0BOB", APPROVE, request_id))
    assert answer.status == 200
    assert c.w.store.get(request_id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert c.slack.private == []
    assert "`" not in str(c.send(fake_slack.slash_command("U0EVE")).text)  # no code issued
    c.chat = replace(c.chat, team_ids=frozenset({fake_slack.TEAM}))
    c.send(fake_slack.click("U0BOB", APPROVE, request_id))
    assert c.w.store.get(request_id).status is RequestStatus.APPROVED  # type: ignore[union-attr]


# -- the request's message ---------------------------------------------------------------------------
def test_the_message_is_posted_with_the_facts_and_updated_as_the_request_moves() -> None:
    c = chat_world(policy())
    c.link("U0BOB", BOB)
    request_id = create(c.w, ticket="OPS-1")
    assert c.deliver() == ["posted"]
    [message] = c.slack.in_channel(CHANNEL)
    assert message.buttons == [APPROVE, REJECT]
    for fact in (request_id, "alice", "i-0123456789abcdef0", "Environment=dev", "restart nginx", "OPS-1"):
        assert fact in message.all_text
    c.send(fake_slack.click("U0BOB", APPROVE, request_id))
    assert c.deliver() == ["updated"]
    assert message.buttons == []
    assert "APPROVED" in message.all_text
    assert BOB in message.all_text
    c.w.grant()
    grant = c.w.ledger.grants[f"rq-{request_id}"]
    event = granted(grant, grant.activated_at or "")
    assert c.messages.on_event({"event_type": event.event_type, **event.payload}) == "updated"
    assert "ACTIVE" in message.all_text
    assert "granted until" in message.all_text
    # At-least-once delivery: the same event again changes nothing.
    assert c.messages.on_event({"event_type": event.event_type, **event.payload}) == "duplicate"
    assert message.updates == 2


def test_no_channel_no_message_and_the_payload_is_unchanged() -> None:
    c = chat_world(POLICY)
    create(c.w)
    assert c.deliver() == []
    assert c.slack.messages == {}
    assert "slack_channel" not in c.w.notifier.sent[0][1]


def test_events_of_a_rule_with_a_channel_name_it() -> None:
    c = chat_world(policy())
    request_id = create(c.w)
    record = c.w.store.get(request_id)
    [event] = request_events(None, record)
    assert event.payload["slack_channel"] == CHANNEL


@pytest.mark.parametrize(
    ("field", "value"),
    [("approve_in_chat", "no"), ("slack_channel", "Ops Approvals"), ("slack_channel", 7)],
)
def test_the_policy_refuses_bad_chat_settings(field: str, value: Any) -> None:
    document = policy()
    document["rules"][1][field] = value
    with pytest.raises(PolicyError, match=field):
        ApprovalPolicy.parse(document)


def forged(request_id: str, channel: str = CHANNEL) -> dict[str, Any]:
    """An AccessRequested published by someone else than SessionGate: harmless facts, real request id."""
    return {
        "event_type": "AccessRequested",
        "event_id": "forged-1",
        "request_id": request_id,
        "requester_arn": ALICE,
        "principal_name": "readonly",
        "account": "111111111111",
        "instance_id": "i-0fffffffffffffff0",
        "reason": "read the build logs",
        "ticket": "HARMLESS-1",
        "duration_minutes": 5,
        "rule": "sandbox",
        "slack_channel": channel,
        "at": "2026-01-01T00:00:00Z",
    }


def test_a_forged_event_shows_the_records_facts_in_the_records_channel_only() -> None:
    """Review finding 1: the event is a trigger; what an approver judges comes from the record."""
    c = chat_world(policy())
    request_id = create(c.w)
    assert c.messages.on_event(forged(request_id, channel="#elsewhere")) == "posted"
    assert c.slack.in_channel("#elsewhere") == []
    [message] = c.slack.in_channel(CHANNEL)
    for fact in ("restart nginx", "i-0123456789abcdef0", "Environment=dev"):
        assert fact in message.all_text
    for fake in ("read the build logs", "HARMLESS-1", "readonly", "i-0fffffffffffffff0", "sandbox"):
        assert fake not in message.all_text


def test_a_forged_event_for_a_request_without_a_channel_or_record_posts_nothing() -> None:
    c = chat_world(POLICY)  # the default rule names no channel
    request_id = create(c.w)
    assert c.messages.on_event(forged(request_id)) == "ignored"
    assert c.messages.on_event(forged("rq-does-not-exist")) == "ignored"
    assert c.slack.messages == {}


def test_a_forged_request_event_for_a_decided_request_shows_no_buttons() -> None:
    c = chat_world(policy())
    request_id = create(c.w)
    c.w.service.reject(caller(BOB), request_id, {"comment": "no"})
    assert c.messages.on_event(forged(request_id)) == "posted"
    [message] = c.slack.in_channel(CHANNEL)
    assert message.buttons == []
    assert "REJECTED" in message.all_text


def test_events_delivered_out_of_order_never_reopen_the_message() -> None:
    """SNS invokes the notifier once per event, in no set order: the approval may come first."""
    c = chat_world(policy())
    request_id = create(c.w)
    c.w.service.approve(caller(BOB), request_id, None)
    requested, approved = [{"event_type": t, **p} for t, p in c.w.notifier.sent]
    assert c.messages.on_event(approved) == "posted"
    assert c.messages.on_event(requested) == "updated"
    [message] = c.slack.in_channel(CHANNEL)
    assert "*APPROVED*" in message.all_text
    assert message.buttons == []
    history = message.blocks[2]["elements"][0]["text"]
    assert history.index("requested by") < history.index("approved by")
