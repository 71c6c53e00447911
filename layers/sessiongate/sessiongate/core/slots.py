"""The tag model (DESIGN section 3): slot k of a principal is a pair of IAM tags.

Slot 1 keeps the original design's key ``SecurityAllowSessionInstance``; slot k > 1 is
``SecurityAllowSessionInstance<k>``. ``SecurityAllowSessionUser<k>`` optionally binds the slot to one
role session (``aws:userid``). IAM tag keys are case-insensitive, so every comparison here is too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

INSTANCE_KEY = "SecurityAllowSessionInstance"
USER_KEY = "SecurityAllowSessionUser"
MAX_SLOTS = 10
IAM_TAG_LIMIT = 50
# The slot lock the reconciler holds while it removes a drifted tag.
REPAIR_HOLDER = "reconciler-repair"


def instance_key(slot: int) -> str:
    _check(slot)
    return INSTANCE_KEY if slot == 1 else f"{INSTANCE_KEY}{slot}"


def user_key(slot: int) -> str:
    _check(slot)
    return f"{USER_KEY}{slot}"


def slot_keys(slot: int) -> tuple[str, str]:
    return instance_key(slot), user_key(slot)


def all_keys(slot_count: int) -> list[str]:
    return [key for slot in range(1, slot_count + 1) for key in slot_keys(slot)]


def slot_of_key(key: str, slot_count: int) -> int | None:
    """The slot a tag key belongs to, or ``None`` for keys SessionGate does not own."""
    lowered = key.lower()
    for slot in range(1, slot_count + 1):
        if lowered in (k.lower() for k in slot_keys(slot)):
            return slot
    return None


def slot_preference(slot_count: int, current_tags: Mapping[str, str]) -> list[int]:
    """Slots to try, those without a tag first.

    Tags are only a hint (they can be stale or drifted); the ledger's conditional claim decides.
    """
    used = {slot_of_key(key, slot_count) for key in current_tags}
    free = [s for s in range(1, slot_count + 1) if s not in used]
    busy = [s for s in range(1, slot_count + 1) if s in used]
    return free + busy


def tags_for(slot: int, instance_id: str, bound_user_id: str | None) -> dict[str, str]:
    tags = {instance_key(slot): instance_id}
    if bound_user_id:
        tags[user_key(slot)] = bound_user_id
    return tags


def foreign_tag_count(current_tags: Iterable[str], slot_count: int) -> int:
    return sum(1 for key in current_tags if slot_of_key(key, slot_count) is None)


def _check(slot: int) -> None:
    if not 1 <= slot <= MAX_SLOTS:
        raise ValueError(f"slot must be 1..{MAX_SLOTS}, got {slot}")
