"""The tag model (DESIGN section 3): slot k of a principal is a pair of IAM tags.

Slot 1 keeps the original design's key ``SecurityAllowSessionInstance``; slot k > 1 is
``SecurityAllowSessionInstance<k>``. ``SecurityAllowSessionUser<k>`` optionally binds the slot to one
role session (``aws:userid``). IAM tag keys are case-insensitive, so every comparison here is too.

Instance binding (issue 15): slot k of an *instance* is one EC2 tag ``SecurityAllowSessionFor<k>`` whose
value is the ``aws:userid`` of the one person who may start a session on it (an IAM user's UserId, or
``<RoleId>:<session name>`` for a role session). EC2 tag keys are case-sensitive ("Tag your Amazon EC2
resources", tag restrictions), but IAM condition keys are not, so SessionGate treats every spelling of
its keys as its own there too, and the guard denies them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

INSTANCE_KEY = "SecurityAllowSessionInstance"
USER_KEY = "SecurityAllowSessionUser"
# Instance binding: the key on the instance, value the person's aws:userid.
FOR_KEY = "SecurityAllowSessionFor"
MAX_SLOTS = 10
IAM_TAG_LIMIT = 50
# User tags per EC2 resource ("Tag your Amazon EC2 resources": maximum of 50 tags per resource).
EC2_TAG_LIMIT = 50


class BindingMode(StrEnum):
    """Where a grant's slot tag lives (stack parameter ``BindingMode``)."""

    PRINCIPAL = "principal"  # on the IAM user or role (aws:PrincipalTag)
    INSTANCE = "instance"  # on the EC2 instance (ssm:resourceTag), value the person's aws:userid
    AUTO = "auto"  # principal for IAM users and per-person roles, instance for shared roles


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


def for_key(slot: int) -> str:
    """The instance-binding key of ``slot`` (on the instance)."""
    _check(slot)
    return f"{FOR_KEY}{slot}"


def all_for_keys(slot_count: int) -> list[str]:
    return [for_key(slot) for slot in range(1, slot_count + 1)]


def slot_of_for_key(key: str, slot_count: int) -> int | None:
    """The slot an instance tag key belongs to in any letter case, or ``None`` for other keys."""
    lowered = key.lower()
    for slot in range(1, slot_count + 1):
        if lowered == for_key(slot).lower():
            return slot
    return None


def user_tag_count(current_tags: Iterable[str]) -> int:
    """The tags of an EC2 resource that count against its 50 (``aws:`` tags do not: "Tag your Amazon
    EC2 resources", tag restrictions)."""
    return sum(1 for key in current_tags if not key.lower().startswith("aws:"))


def instance_slot_preference(slot_count: int, current_tags: Mapping[str, str]) -> list[int]:
    """Slots of an instance to try, those without a tag (in any spelling) first."""
    used = {slot_of_for_key(key, slot_count) for key in current_tags}
    free = [s for s in range(1, slot_count + 1) if s not in used]
    busy = [s for s in range(1, slot_count + 1) if s in used]
    return free + busy


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
