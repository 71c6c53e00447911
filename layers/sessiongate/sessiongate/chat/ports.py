"""What SessionGate needs from any chat, and from the store behind the chat features.

The core (:mod:`.interactions`, :mod:`.messages`, :mod:`.links`) speaks only these types; a chat is an
adapter that implements :class:`Inbound` (verify and read what the chat sends) and :class:`Outbound`
(post and update a request's message, answer one person privately). Slack is :mod:`.slack`; Microsoft
Teams would be another pair of adapters (README, "Approving from Slack": what Teams would need).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class ChatUser:
    """A person as the chat knows them: the chat (``slack``), the workspace and the user id."""

    chat: str
    team_id: str
    user_id: str

    @property
    def key(self) -> str:
        return f"{self.chat}/{self.team_id}/{self.user_id}"


@dataclass(frozen=True)
class Click:
    """Someone clicked Approve or Reject on a request's message."""

    user: ChatUser
    action: Literal["approve", "reject"]
    request_id: str
    reply_to: str  # where a private answer goes (Slack: the interaction's response_url)


@dataclass(frozen=True)
class LinkCommand:
    """Someone asked for a one-time code to link their chat user to their AWS identity (``user_name``,
    ``team_domain``: their handle and workspace as the chat sent them, shown to whoever redeems the code)."""

    user: ChatUser
    user_name: str = ""
    team_domain: str = ""


@dataclass(frozen=True)
class CodeOwner:
    """Who asked for a link code: the chat user, and their handle and workspace as the chat named them."""

    user: ChatUser
    user_name: str = ""
    team_domain: str = ""


@dataclass(frozen=True)
class Unsupported:
    """A verified interaction SessionGate does not act on (another button, another command)."""

    what: str


Interaction = Click | LinkCommand | Unsupported


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to the chat: a status and, for a command, the private text shown to the caller."""

    status: int
    text: str | None = None


@dataclass(frozen=True)
class RequestCard:
    """A request's message in a channel: the facts an approver judges, and where the request stands."""

    request_id: str
    principal_name: str
    principal_arn: str
    requester_arn: str
    account: str
    instance_id: str
    duration_minutes: int
    reason: str
    ticket: str = ""
    break_glass: bool = False
    rule: str = ""
    instance_tags: Mapping[str, str] = field(default_factory=dict)
    state: str = "PENDING"  # what the card says: PENDING, APPROVED, ACTIVE, REJECTED, REVOKED, EXPIRED, ...
    history: tuple[str, ...] = ()  # one entry per move, in order (:func:`history_entry`, :func:`shown`)

    @property
    def open(self) -> bool:
        """Whether the buttons are shown (only while the request waits for a decision)."""
        return self.state == "PENDING"


def history_entry(at: str, order: int, text: str) -> str:
    """A history entry that sorts by time, then by the move's place in a request's life (``order``:
    events of the same second arrive in any order)."""
    return f"{at}\t{order}\t{text}"


def shown(entry: str) -> str:
    """How a history entry reads: ``<time> <text>``."""
    at, _, rest = entry.partition("\t")
    return f"{at} {rest.partition(chr(9))[2]}" if "\t" in rest else entry


class Inbound(Protocol):
    """What the chat sends to the interactions endpoint."""

    def verify(self, headers: Mapping[str, str], body: str) -> str | None:
        """The request's proof (its signature) when the chat signed it now, else None. Checked first."""
        ...

    def parse(self, headers: Mapping[str, str], body: str) -> Interaction:
        """What a verified request asks for."""
        ...


class Outbound(Protocol):
    """What SessionGate sends to the chat."""

    def post(self, channel: str, card: RequestCard) -> tuple[str, str]:
        """Post a request's message in ``channel``: the channel's id and the message's reference (Slack:
        the channel id and the message ``ts``, which ``chat.update`` needs)."""
        ...

    def update(self, channel: str, ref: str, card: RequestCard) -> None: ...

    def reply_privately(self, reply_to: str, text: str) -> None:
        """Answer the person who clicked, visible to them only."""
        ...

    def tell(self, user_id: str, text: str) -> None:
        """A direct message to one chat user (the app's conversation with them)."""
        ...


class ChatState(Protocol):
    """One-time link codes, the signatures already seen, and the messages posted (the chat state table)."""

    def put_code(self, code_hash: str, owner: CodeOwner, *, expires_at: int) -> None: ...

    def peek_code(self, code_hash: str, *, now: int) -> CodeOwner | None:
        """The code's owner, leaving the code in place (None: unknown, used or expired)."""
        ...

    def take_code(self, code_hash: str, *, now: int) -> CodeOwner | None:
        """Delete the code and answer its owner, once (None: unknown, used or expired)."""
        ...

    def first_seen(self, proof: str, *, now: int, keep_until: int) -> bool:
        """Remember ``proof``; False when it was seen before (a replay)."""
        ...

    def message_of(self, request_id: str) -> StoredMessage | None:
        """A request's message, as last posted or updated."""
        ...

    def save_message(self, request_id: str, message: StoredMessage) -> bool:
        """Record a request's message (``version`` 1: a new one); False when another writer got there
        first (a redelivered or concurrent event: read again)."""
        ...


@dataclass(frozen=True)
class StoredMessage:
    channel: str
    ref: str
    card: RequestCard
    version: int = 1
    seen: tuple[str, ...] = ()  # the event ids already shown (deliveries are at least once)


@dataclass(frozen=True)
class Link:
    """A chat user acts as ``identity_arn`` until ``expires_at`` (epoch seconds; also the table's TTL),
    sealed by ``mac`` (the approval key's MAC, made by the request API: :mod:`.links`)."""

    user: ChatUser
    identity_arn: str
    linked_at: str
    expires_at: int = 0
    mac: str = ""


class Links(Protocol):
    """Chat user -> AWS identity (the links table; only the request API writes it)."""

    def get(self, user: ChatUser) -> Link | None: ...

    def put(self, link: Link) -> Link | None:
        """Store the link; the one it replaced, if any."""
        ...

    def delete(self, user: ChatUser) -> Link | None: ...

    def of_identity(self, identity_arn: str) -> list[Link]: ...
