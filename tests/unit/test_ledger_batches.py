"""The ledger's batched reads ask again for the keys DynamoDB left unprocessed, pausing longer each time."""

from __future__ import annotations

from typing import Any

import pytest

from sessiongate.adapters.ledger import Ledger
from sessiongate.errors import TransientError

ARN = "arn:aws:iam::123456789012:user/alice"


class Throttled:
    """A DynamoDB client whose BatchGetItem leaves the last key unprocessed ``rounds`` times."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.asked: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        keys = RequestItems["t"]["Keys"]
        self.asked.append(len(keys))
        if self.rounds:
            self.rounds -= 1
            done, left = keys[:-1], keys[-1:]
        else:
            done, left = keys, []
        answer: dict[str, Any] = {"Responses": {"t": [{**k, "grant_id": {"S": "g"}} for k in done]}}
        if left:
            answer["UnprocessedKeys"] = {"t": {"Keys": left}}
        return answer


def test_unprocessed_keys_are_asked_again_after_growing_pauses() -> None:
    db, pauses = Throttled(rounds=3), []
    ledger = Ledger(db, "t", sleep=pauses.append)

    holders = ledger.slot_holders([(ARN, 1), (ARN, 2)])

    assert holders == {(ARN, 1): "g", (ARN, 2): "g"}
    assert db.asked == [2, 1, 1, 1]
    assert len(pauses) == 3
    assert all(0 <= p <= cap for p, cap in zip(pauses, (0.1, 0.2, 0.4), strict=True))


def test_keys_still_unread_after_every_round_are_a_transient_error() -> None:
    ledger = Ledger(Throttled(rounds=100), "t", sleep=lambda _: None)
    with pytest.raises(TransientError, match="unread"):
        ledger.slot_holders([(ARN, 1)])
