"""Checked after every step: slot tags (on principals, and on instances: instance binding) match live
grants; nothing expired outlives one reconciler period."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sessiongate.clock import to_iso
from sessiongate.core.binding import instance_scope
from sessiongate.core.slots import INSTANCE_KEY, MAX_SLOTS, for_key, slot_of_for_key
from sessiongate.core.slots import instance_key as slot_key

from ..world import ACCOUNT
from . import readback
from .schema import parse_time

if TYPE_CHECKING:
    from .play import Play


class Invariants:
    def __init__(self, play: Play, period: timedelta) -> None:
        self.play = play
        self.grace = period + timedelta(seconds=90)
        self._leak_seen: dict[
            tuple[str, str], datetime
        ] = {}  # (principal, tag key) -> first seen unexplained

    def check(self, index: int) -> None:
        play = self.play
        items = readback.ledger_items(play.world)
        tags = {
            name: readback.slot_tags(play, name)
            for name, p in play.principals.items()
            if p["type"] != "session"
        }
        on_instances = {
            instance_id: readback.instance_slot_tags(play, instance_id)
            for instance_id in play.instances.values()
        }
        self._grants(index, [i for i in items if i.get("kind") == "grant"], tags, on_instances)
        self._leaks(index, items, tags)
        self._instance_leaks(index, items, on_instances)

    def _grants(
        self,
        index: int,
        grants: list[dict[str, Any]],
        tags: dict[str, dict[str, str]],
        on_instances: dict[str, dict[str, str]],
    ) -> None:
        """An active grant's tag is on its principal (or, bound on the instance, on its instance with the
        person's aws:userid), and it ends within a period of its expiry."""
        now = self.play.now()
        for grant in grants:
            if grant.get("status") != "ACTIVE":
                continue
            expires = parse_time(grant["expires_at"])
            if grant.get("binding") == "instance":
                key, instance = for_key(int(grant["slot"])), grant["instance_id"]
                if now < expires and on_instances.get(instance, {}).get(key) != grant.get("bound_user_id"):
                    self._violate(
                        index, "lost_tag", f"{grant['grant_id']} is active but {instance} lacks {key}"
                    )
            else:
                name = grant["principal_arn"].rsplit("/", 1)[-1]
                key = slot_key(int(grant["slot"]))
                if now < expires and tags.get(name, {}).get(key) != grant["instance_id"]:
                    self._violate(index, "lost_tag", f"{grant['grant_id']} is active but {name} lacks {key}")
            if now > expires + self.grace:
                self._violate(
                    index, "overdue_grant", f"{grant['grant_id']} expired {to_iso(expires)}, still active"
                )

    def _leaks(self, index: int, items: list[dict[str, Any]], tags: dict[str, dict[str, str]]) -> None:
        """A slot tag no live grant explains is gone within a period of when it was first seen."""
        now = self.play.now()
        grants = {i["grant_id"]: i for i in items if i.get("kind") == "grant"}
        holders = {i["pk"].removeprefix("SLOT#"): i.get("grant_id") for i in items if i.get("kind") == "slot"}
        for name, slot_tags in tags.items():
            arn = self.play.principals[name]["arn"]
            for key, value in slot_tags.items():
                if not key.startswith(INSTANCE_KEY):
                    continue
                slot = int(key.removeprefix(INSTANCE_KEY) or 1)
                holder = grants.get(str(holders.get(f"{arn}#{slot}")), {})
                if holder.get("status") in ("ACTIVE", "PROVISIONING") and holder.get("instance_id") == value:
                    self._leak_seen.pop((name, key), None)
                elif now - self._leak_seen.setdefault((name, key), now) > self.grace:
                    self._violate(index, "leaked_tag", f"{name} keeps {key}={value} with no live grant")
        # A tag that is gone starts a new clock if it comes back (tagged again later).
        present = {(name, key) for name, slot_tags in tags.items() for key in slot_tags}
        for gone in set(self._leak_seen) - present:
            del self._leak_seen[gone]

    def _instance_leaks(
        self, index: int, items: list[dict[str, Any]], on_instances: dict[str, dict[str, str]]
    ) -> None:
        """An instance slot tag (any spelling) that no live grant of that slot and person explains is
        gone within a period of when it was first seen."""
        now = self.play.now()
        grants = {i["grant_id"]: i for i in items if i.get("kind") == "grant"}
        holders = {i["pk"].removeprefix("SLOT#"): i.get("grant_id") for i in items if i.get("kind") == "slot"}
        for instance_id, instance_tags in on_instances.items():
            for key, value in instance_tags.items():
                slot = slot_of_for_key(key, MAX_SLOTS)
                if slot is None:
                    continue
                holder = grants.get(str(holders.get(f"{instance_scope(ACCOUNT, instance_id)}#{slot}")), {})
                seen = (instance_id, key)
                if (
                    holder.get("status") in ("ACTIVE", "PROVISIONING")
                    and key == for_key(slot)
                    and holder.get("bound_user_id") == value
                ):
                    self._leak_seen.pop(seen, None)
                elif now - self._leak_seen.setdefault(seen, now) > self.grace:
                    self._violate(
                        index, "leaked_tag", f"{instance_id} keeps {key}={value} with no live grant"
                    )
        present = {(i, key) for i, instance_tags in on_instances.items() for key in instance_tags}
        for gone in {k for k in self._leak_seen if k[0] in on_instances} - present:
            del self._leak_seen[gone]

    def _violate(self, index: int, kind: str, text: str) -> None:
        violation = {"step": index, "at": to_iso(self.play.now()), "invariant": kind, "detail": text}
        if violation not in self.play.report.invariant_violations:
            self.play.report.invariant_violations.append(violation)
            self.play.say("INVARIANT", f"{kind}: {text}")
