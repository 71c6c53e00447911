"""In-memory fakes of the chat state and links tables (behaving like ``adapters/chat.py`` on DynamoDB:
conditional writes answer False/None instead of ConditionalCheckFailedException; a code past its
``expires_at`` is refused even before TTL removes it), and a chat world: the native front door's unit
world (``fakes/access.py``) with the interactions endpoint and the request messages over a fake Slack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox import fake_slack
from sessiongate.chat.interactions import ChatInteractions
from sessiongate.chat.links import Linking, LinkSeal
from sessiongate.chat.messages import RequestMessages
from sessiongate.chat.ports import Answer, ChatUser, CodeOwner, Link, StoredMessage
from sessiongate.chat.slack import SlackInbound, SlackOutbound
from tests.unit.fakes.access import FakeMacs, World, world

DEPLOYER = "arn:aws:iam::123456789012:role/Deployers"


@dataclass
class FakeChatState:
    codes: dict[str, tuple[CodeOwner, int]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    messages: dict[str, StoredMessage] = field(default_factory=dict)

    def put_code(self, code_hash: str, owner: CodeOwner, *, expires_at: int) -> None:
        assert code_hash not in self.codes  # attribute_not_exists(pk)
        self.codes[code_hash] = (owner, expires_at)

    def peek_code(self, code_hash: str, *, now: int) -> CodeOwner | None:
        found = self.codes.get(code_hash)
        return None if found is None or found[1] <= now else found[0]

    def take_code(self, code_hash: str, *, now: int) -> CodeOwner | None:
        found = self.codes.get(code_hash)
        if found is None or found[1] <= now:
            return None
        del self.codes[code_hash]
        return found[0]

    def first_seen(self, proof: str, *, now: int, keep_until: int) -> bool:
        if proof in self.seen:
            return False
        self.seen[proof] = keep_until
        return True

    def message_of(self, request_id: str) -> StoredMessage | None:
        return self.messages.get(request_id)

    def save_message(self, request_id: str, message: StoredMessage) -> bool:
        current = self.messages.get(request_id)
        if (current.version if current else 0) != message.version - 1:
            return False
        self.messages[request_id] = message
        return True


@dataclass
class FakeLinks:
    links: dict[str, Link] = field(default_factory=dict)

    def get(self, user: ChatUser) -> Link | None:
        return self.links.get(user.key)

    def put(self, link: Link) -> Link | None:
        old = self.links.get(link.user.key)
        self.links[link.user.key] = link
        return old

    def delete(self, user: ChatUser) -> Link | None:
        return self.links.pop(user.key, None)

    def of_identity(self, identity_arn: str) -> list[Link]:
        # The by-identity index projects the keys only: no linked_at, expiry or MAC.
        return [
            Link(lk.user, lk.identity_arn, "")
            for lk in self.links.values()
            if lk.identity_arn == identity_arn
        ]


@dataclass
class ChatWorld:
    w: World
    slack: fake_slack.FakeSlack
    state: FakeChatState
    links: FakeLinks
    linking: Linking
    chat: ChatInteractions
    messages: RequestMessages

    def send(self, body: str, *, age_seconds: int = 0, secret: str = fake_slack.SIGNING_SECRET) -> Answer:
        """Slack sends ``body``, signed ``age_seconds`` ago."""
        timestamp = int(self.w.clock.now().timestamp()) - age_seconds
        return self.chat.handle(fake_slack.sign(body, timestamp, secret), body)

    def link(self, slack_user: str, arn: str) -> None:
        """``/sessiongate link`` in Slack, then ``sessiongate chat link CODE`` as ``arn``."""
        from tests.unit.access_world import caller

        answer = self.send(fake_slack.slash_command(slack_user))
        code = str(answer.text).split("`")[1]
        self.linking.link(caller(arn), {"code": code, "confirm": True})

    def deliver(self) -> list[str]:
        """The lifecycle events published so far (the topic) -> the chat notifier, once each: what it
        did with those it acted on."""
        out = []
        for event_type, payload in self.w.notifier.sent[self._delivered :]:
            out.append(self.messages.on_event({"event_type": event_type, **payload}))
        self._delivered = len(self.w.notifier.sent)
        return [o for o in out if o != "ignored"]

    _delivered: int = 0


def chat_world(policy: dict[str, Any]) -> ChatWorld:
    w = world(policy)
    slack = fake_slack.FakeSlack()
    state, links = FakeChatState(), FakeLinks()
    seal = LinkSeal(FakeMacs(), "approval-key")
    linking = Linking(state, links, w.clock, w.notifier, seal=seal, deployers=(DEPLOYER,))  # type: ignore[arg-type]
    outbound = SlackOutbound(lambda: slack, slack.webhook)
    chat = ChatInteractions(
        inbound=SlackInbound(lambda: fake_slack.SIGNING_SECRET, w.clock),
        outbound=outbound,
        state=state,
        links=links,
        linking=linking,
        decisions=w.service,
        clock=w.clock,
    )
    tags = {"i-0123456789abcdef0": {"Environment": "dev", "Name": "web-1"}}
    messages = RequestMessages(
        state, outbound, lambda _account, instance: tags.get(instance, {}), w.store.get
    )
    return ChatWorld(w, slack, state, links, linking, chat, messages)
