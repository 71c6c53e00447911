"""Where a grant's slot tag lives (issue 15): on the principal (IAM tags, ``aws:PrincipalTag``) or on
the instance (EC2 tags, ``ssm:resourceTag``, value the person's ``aws:userid``).

A :class:`Binding` is the one thing grant, revoke and reconcile need of either: the scope of the slot
locks (the principal ARN, or the instance), the tags that scope carries now (a hint for the slot to
try), room for the tag, and tag/untag of one slot. The guarantees are the same in both modes: slot
claims are conditional writes on locks keyed by the scope, and a tag is removed only while its lock
names the grant (on an instance also only while the tag still has the grant's value: EC2 DeleteTags
with a Value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sessiongate.core import slots
from sessiongate.core.guardrails import InstanceFacts, PrincipalFacts, unmodifiable_denial
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import Denial, Grant
from sessiongate.core.ports import (
    Directory,
    InstanceGone,
    InstanceTags,
    PrincipalGone,
    PrincipalUnmodifiable,
    TagLimitExceeded,
)
from sessiongate.core.slots import BindingMode


def instance_scope(account: str, instance_id: str) -> str:
    """The slot-lock scope of an instance (the ledger's ``SLOT#<scope>#<slot>``). Instance ids are
    unique within an account and Region, and a stack serves one Region."""
    return f"ec2:{account}:instance/{instance_id}"


def lock_scope(grant: Grant) -> str:
    """Whose slots ``grant``'s lock belongs to: its principal's, or (instance binding) its instance's."""
    if grant.binding == BindingMode.INSTANCE.value:
        return instance_scope(grant.account, grant.instance_id)
    return grant.principal_arn


class Binding(Protocol):
    mode: BindingMode
    scope: str

    def room_denial(self, slot_count: int) -> Denial | None:
        """The denial when the tagged resource has no room for the slot tag(s), else ``None``."""
        ...

    def preference(self, slot_count: int) -> list[int]:
        """Slots to try, those without a tag first (tags are a hint; the ledger's claim decides)."""
        ...

    def tag(self, slot: int) -> Denial | None:
        """Set the slot tag; the denial when AWS refuses it for good (limit, gone, unmodifiable)."""
        ...

    def carries(self, slot: int) -> bool:
        """Whether the tags as read already hold this grant's slot tag (a resumed grant is done)."""
        ...

    def untag(self, slot: int) -> bool:
        """Remove the slot tag (only the grant's own value, on an instance); ``False`` when nothing
        could be removed (principal or instance gone)."""
        ...


@dataclass
class PrincipalBinding:
    """Slot k is ``SecurityAllowSessionInstance[k]`` (+ ``SecurityAllowSessionUser<k>``) on the principal."""

    directory: Directory
    kind: PrincipalType
    name: str
    scope: str  # the principal ARN
    instance_id: str
    bound_user_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    mode: BindingMode = BindingMode.PRINCIPAL

    def room_denial(self, slot_count: int) -> Denial | None:
        if slots.foreign_tag_count(self.tags, slot_count) + 2 > slots.IAM_TAG_LIMIT:
            return Denial("tag_limit", "the principal has no room for two more tags")
        return None

    def preference(self, slot_count: int) -> list[int]:
        return slots.slot_preference(slot_count, self.tags)

    def tag(self, slot: int) -> Denial | None:
        try:
            self.directory.tag(
                self.kind, self.name, slots.tags_for(slot, self.instance_id, self.bound_user_id)
            )
        except TagLimitExceeded:
            return Denial("tag_limit", "IAM refused the tag: 50 tags per principal")
        except PrincipalGone:
            return Denial("principal_not_found", "the principal was deleted")
        except PrincipalUnmodifiable:
            return unmodifiable_denial(self.name)
        return None

    def carries(self, slot: int) -> bool:
        key = slots.instance_key(slot).lower()
        return any(k.lower() == key and v == self.instance_id for k, v in self.tags.items())

    def untag(self, slot: int) -> bool:
        return self.directory.untag(self.kind, self.name, slots.slot_keys(slot))


@dataclass
class InstanceBinding:
    """Slot k is ``SecurityAllowSessionFor<k>`` = the person's ``aws:userid`` on the instance."""

    inventory: InstanceTags
    instance_id: str
    scope: str
    value: str  # the person's aws:userid
    tags: Mapping[str, str] = field(default_factory=dict)
    mode: BindingMode = BindingMode.INSTANCE

    def room_denial(self, slot_count: int) -> Denial | None:
        # Every user tag counts, SessionGate's other slots too (the slot's own key may only be
        # overwritten, but which slot the claim gets is not known yet: fail closed).
        if slots.user_tag_count(self.tags) + 1 > slots.EC2_TAG_LIMIT:
            return Denial("tag_limit", "the instance has no room for one more tag")
        return None

    def preference(self, slot_count: int) -> list[int]:
        return slots.instance_slot_preference(slot_count, self.tags)

    def tag(self, slot: int) -> Denial | None:
        try:
            self.inventory.tag_instance(self.instance_id, {slots.for_key(slot): self.value})
        except TagLimitExceeded:
            return Denial("tag_limit", "EC2 refused the tag: 50 tags per instance")
        except InstanceGone:
            return Denial("instance_not_found", f"instance {self.instance_id} no longer exists")
        return None

    def carries(self, slot: int) -> bool:
        return self.tags.get(slots.for_key(slot)) == self.value

    def untag(self, slot: int) -> bool:
        return self.inventory.untag_instance(self.instance_id, {slots.for_key(slot): self.value})


def for_request(
    mode: BindingMode,
    account: str,
    principal: PrincipalFacts,
    instance: InstanceFacts | None,
    instance_id: str,
    bound_user_id: str | None,
    directory: Directory,
    inventory: InstanceTags,
) -> Binding:
    """The binding of a grant being made, with the tags just read (DescribeInstances or GetUser/GetRole
    already returned them: no extra call to pick a slot)."""
    if mode is BindingMode.INSTANCE:
        if not bound_user_id:
            raise ValueError("instance binding needs the person's aws:userid")  # guardrails deny first
        tags = instance.tags if instance is not None else {}
        return InstanceBinding(
            inventory, instance_id, instance_scope(account, instance_id), bound_user_id, tags
        )
    kind = PrincipalType(principal.kind)
    return PrincipalBinding(
        directory, kind, principal.name, principal.arn, instance_id, bound_user_id, principal.tags
    )


def for_grant(grant: Grant, directory: Directory, inventory: InstanceTags) -> Binding:
    """The binding of a recorded grant (revocation, undo): no tags read."""
    if grant.binding == BindingMode.INSTANCE.value:
        if not grant.bound_user_id:
            raise ValueError(f"grant {grant.grant_id} is bound to its instance without an aws:userid")
        return InstanceBinding(inventory, grant.instance_id, lock_scope(grant), grant.bound_user_id)
    return PrincipalBinding(
        directory,
        PrincipalType(grant.principal_type),
        grant.principal_name,
        grant.principal_arn,
        grant.instance_id,
        grant.bound_user_id,
    )
