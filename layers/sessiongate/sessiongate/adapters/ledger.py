"""DynamoDB ledger: grant records and per-(principal, slot) claims, all writes conditional.

Items (single table, partition key ``pk``):
- ``GRANT#<grant_id>``: the grant record (see :class:`sessiongate.core.model.Grant`). Live grants
  (PROVISIONING, ACTIVE) also carry ``live = "LIVE#<n>"`` (n = a stable hash of the grant id modulo
  ``LIVE_SHARDS``, so no single index partition key value takes every grant's writes) and ``expires_at``
  for the sparse ``live-by-expiry`` index. Records written before sharding carry ``live = "LIVE"``: the
  index queries read that partition too.
- ``SLOT#<principal_arn>#<k>``: the lock on tag slot k of a principal, naming the grant that holds it
  (instance binding: ``SLOT#ec2:<account>:instance/<id>#<k>``, slot k of an instance; ``lock_scope``).
  A slot is only ever taken when absent, and only released by its holder's revocation *after* the
  holder's tag is gone, so a newer grant's tag can never be removed by an older grant's revocation.
- A revocation request (tombstone) on ``GRANT#<grant_id>``: ``revoke_requested`` (when), with
  ``revoke_requested_by`` and ``revoke_requested_reason``, written by the request API *before* it
  answers REVOKED. It is an attribute of the grant record when one exists, else the only content of the
  item (no ``status``: :meth:`Ledger.get_grant` sees no grant). A grant is opened (record ACTIVE + slot
  lock, one transaction: :meth:`Ledger.open`) only while no item of its id exists, and rebound (resumed)
  only while no tombstone is there. Records of earlier releases may still be PROVISIONING (the
  reconciler ends them).
- Usage (issue 17, ``core/usage.py``): the revocation's write moves ``live`` to ``USAGE#<n>`` (sessions
  not recorded yet; the same ``live-by-expiry`` index, partitions the live queries never read), and the
  reconciler, once it has recorded the grant's sessions, to ``DAY#<revocation date>#<n>``: the weekly
  report reads a week's revoked grants with queries per day, not a scan. ``n`` is the grant's live
  shard: each revocation writes these index values as it wrote ``LIVE#<n>`` before, spread over 16
  values (one value would take every revocation's index writes: the hot key of ``live_shard``).
  Records revoked by earlier releases have no ``live`` (no usage, not in any report).
"""

from __future__ import annotations

import contextlib
import random
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from datetime import timedelta
from typing import Any

from sessiongate.adapters.aws import raises_service_failures
from sessiongate.clock import parse_iso
from sessiongate.core.binding import lock_scope
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.core.ports import Condition, Opened, RevokeRequest
from sessiongate.errors import TransientError

LIVE_INDEX = "live-by-expiry"
# The index's partition key values: LIVE#0..LIVE#15, and the unsharded value of earlier releases.
LIVE_SHARDS = 16
LEGACY_LIVE = "LIVE"
# BatchGetItem reads at most 100 items per call (DynamoDB API Reference, "BatchGetItem").
BATCH_GET_LIMIT = 100
_BATCH_ATTEMPTS = 8
# Full-jitter backoff between BatchGetItem rounds for unprocessed keys: up to 0.1, 0.2, ... 2 s.
_BATCH_BACKOFF_BASE = 0.05
_BATCH_BACKOFF_CAP = 2.0
_GRANT_FIELDS = {f.name for f in fields(Grant)}
TOMBSTONE = "revoke_requested"
# The index partitions of revoked grants (see the module doc), sharded as the live ones.
USAGE_PENDING = "USAGE"
DAY_PREFIX = "DAY#"


def _ser(value: Any) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer().serialize(value)  # type: ignore[no-any-return]


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    return {k: des.deserialize(v) for k, v in item.items()}


def live_shard(grant_id: str) -> str:
    """The index partition key value of a live grant: stable across processes (CRC-32, not hash())."""
    return f"LIVE#{_shard(grant_id)}"


def _shard(grant_id: str) -> int:
    return zlib.crc32(grant_id.encode()) % LIVE_SHARDS


def usage_partition(grant_id: str) -> str:
    """The index value of a revoked grant whose sessions are not recorded yet."""
    return f"{USAGE_PENDING}#{_shard(grant_id)}"


def day_partition(grant_id: str, revoked_at: str) -> str:
    """The index value of a revoked grant with its usage recorded: its revocation day, sharded."""
    return f"{DAY_PREFIX}{revoked_at[:10]}#{_shard(grant_id)}"


def live_partitions() -> list[str]:
    return [LEGACY_LIVE, *(f"LIVE#{n}" for n in range(LIVE_SHARDS))]


def grant_key(grant_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"GRANT#{grant_id}"}}


def slot_key(principal_arn: str, slot: int) -> dict[str, Any]:
    return {"pk": {"S": f"SLOT#{principal_arn}#{slot}"}}


def to_grant(item: dict[str, Any]) -> Grant:
    plain = _plain(item)
    values = {k: v for k, v in plain.items() if k in _GRANT_FIELDS}
    values["status"] = GrantStatus(values["status"])
    for name in ("duration_minutes", "slot", "session_count"):
        if values.get(name) is not None:
            values[name] = int(values[name])
    return Grant(**values)


def _tombstone(item: dict[str, Any]) -> RevokeRequest:
    plain = _plain(item)
    return RevokeRequest(
        str(plain[TOMBSTONE]),
        str(plain.get(f"{TOMBSTONE}_reason", "")),
        str(plain.get(f"{TOMBSTONE}_by", "")),
    )


@raises_service_failures
class Ledger:
    def __init__(
        self, dynamodb: Any, table_name: str, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._sleep = sleep

    # -- reads -------------------------------------------------------------------------------
    def get_grant(self, grant_id: str) -> Grant | None:
        """The grant record; ``None`` when there is none (an item holding only a tombstone is none)."""
        item = self._db.get_item(TableName=self._table, Key=grant_key(grant_id), ConsistentRead=True).get(
            "Item"
        )
        return to_grant(item) if item and "status" in item else None

    def revoke_request(self, grant_id: str) -> RevokeRequest | None:
        """The tombstone on ``grant_id``, if a revocation was asked for."""
        item = self._db.get_item(TableName=self._table, Key=grant_key(grant_id), ConsistentRead=True).get(
            "Item"
        )
        if not item or TOMBSTONE not in item:
            return None
        return _tombstone(item)

    def grant_and_holder(
        self, grant_id: str, principal_arn: str, slot: int
    ) -> tuple[Grant | None, str | None]:
        """The grant record and the holder of slot ``slot`` of ``principal_arn`` in one strongly
        consistent BatchGetItem (the revoke schedule's payload names the slot)."""
        grant, holder = None, None
        for item in self._batch_get([grant_key(grant_id), slot_key(principal_arn, slot)]):
            if item["pk"]["S"].startswith("GRANT#"):
                grant = to_grant(item) if "status" in item else None
            else:
                holder = str(item["grant_id"]["S"])
        return grant, holder

    def slot_holder(self, principal_arn: str, slot: int) -> str | None:
        item = self._db.get_item(
            TableName=self._table, Key=slot_key(principal_arn, slot), ConsistentRead=True
        ).get("Item")
        return str(item["grant_id"]["S"]) if item else None

    def live_grants(self, *, expiring_before: str | None = None) -> list[Grant]:
        """Live grants (PROVISIONING/ACTIVE), optionally only those expiring before a timestamp.

        One query (page) per index partition: the shards and the legacy ``LIVE`` value; then the
        records, BatchGetItem (100 per call)."""
        grant_ids: list[str] = []
        paginator = self._db.get_paginator("query")
        for partition in live_partitions():
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": LIVE_INDEX,
                "KeyConditionExpression": "live = :live",
                "ExpressionAttributeValues": {":live": {"S": partition}},
            }
            if expiring_before is not None:
                kwargs["KeyConditionExpression"] += " AND expires_at < :before"
                kwargs["ExpressionAttributeValues"][":before"] = {"S": expiring_before}
            for page in paginator.paginate(**kwargs):
                grant_ids += [item["grant_id"]["S"] for item in page.get("Items", [])]
        # The index is eventually consistent: re-read each record (strongly consistent BatchGetItem,
        # 100 per call) before acting on it.
        grants = self.get_grants(grant_ids).values()
        live = [g for g in grants if g.status in (GrantStatus.ACTIVE, GrantStatus.PROVISIONING)]
        return sorted(live, key=lambda g: (g.expires_at or g.created_at, g.grant_id))

    def slot_holders(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The holders of many slot locks, ``(principal_arn, slot) -> grant id`` (free slots absent):
        strongly consistent BatchGetItem reads, 100 keys per call."""
        found: dict[tuple[str, int], str] = {}
        for item in self._batch_get([slot_key(arn, slot) for arn, slot in dict.fromkeys(keys)]):
            arn, _, slot = item["pk"]["S"].removeprefix("SLOT#").rpartition("#")
            found[(arn, int(slot))] = item["grant_id"]["S"]
        return found

    def get_grants(self, grant_ids: Iterable[str]) -> dict[str, Grant]:
        """Many grant records at once (BatchGetItem, strongly consistent); ids without one are absent."""
        items = self._batch_get([grant_key(gid) for gid in dict.fromkeys(grant_ids)])
        return {g.grant_id: g for g in (to_grant(i) for i in items if "status" in i)}

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self._table: {"Keys": keys[start : start + BATCH_GET_LIMIT], "ConsistentRead": True}
            }
            for attempt in range(_BATCH_ATTEMPTS):
                if attempt:
                    # Keys DynamoDB did not get to (throughput, 16 MB) are asked again after a pause that
                    # doubles ("we strongly recommend that you use an exponential backoff algorithm",
                    # DynamoDB API Reference, "BatchGetItem"); botocore only retries whole failed calls.
                    self._sleep(random.uniform(0, min(_BATCH_BACKOFF_CAP, _BATCH_BACKOFF_BASE * 2**attempt)))  # noqa: S311
                answer = self._db.batch_get_item(RequestItems=request)
                items += answer.get("Responses", {}).get(self._table, [])
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise TransientError(f"BatchGetItem left {len(request[self._table]['Keys'])} key(s) unread")
        return items

    # -- writes ------------------------------------------------------------------------------
    def create(self, grant: Grant) -> bool:
        """Write a new record; ``False`` when one with this id exists already (a duplicate), or when a
        live record is to be created and a revocation was asked for (a tombstone; see the module doc).
        A record that is not live (DENIED, REVOKED) replaces a lone tombstone."""
        values = asdict(grant)
        values["status"] = grant.status.value
        values["pk"] = f"GRANT#{grant.grant_id}"
        values["kind"] = "grant"
        condition = "attribute_not_exists(#s)"
        if grant.status in (GrantStatus.PROVISIONING, GrantStatus.ACTIVE):
            values["live"] = live_shard(grant.grant_id)
            values["expires_at"] = grant.expires_at or grant.created_at
            condition += f" AND attribute_not_exists({TOMBSTONE})"
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_item(values),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status"},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def open(self, grant: Grant, conditions: Iterable[Condition] = ()) -> Opened:
        """Write the grant ACTIVE and claim its slot lock in one conditional TransactWriteItems.

        The record is written only when no item of this grant id exists (no record, no tombstone), the
        lock only when the slot is free. A cancelled transaction says which condition failed, in item
        order (DynamoDB API Reference, "TransactWriteItems": ``CancellationReasons``, one per item, with
        the item as it was when ``ReturnValuesOnConditionCheckFailure`` is ``ALL_OLD``): the record's
        (an existing record: a duplicate; a lone tombstone: revoked before granted, whichever condition
        failed with it) decides before the conditions', then the lock's (slot taken). ``conditions``
        (the origin's, :class:`Condition`) are ``ConditionCheck`` items after the two writes: one that
        fails answers ``Opened(unmet=...)``, its denial given the item as it was."""
        assert grant.slot is not None
        checks = list(conditions)
        values = asdict(grant)
        values.update(
            status=grant.status.value,
            pk=f"GRANT#{grant.grant_id}",
            kind="grant",
            live=live_shard(grant.grant_id),
            expires_at=grant.expires_at or grant.created_at,
        )
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _item(values),
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _item(
                        {
                            "pk": f"SLOT#{lock_scope(grant)}#{grant.slot}",
                            "kind": "slot",
                            "grant_id": grant.grant_id,
                            "instance_id": grant.instance_id,
                            "expires_at": grant.expires_at,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        items += [_condition_check(c) for c in checks]
        try:
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons", [])
            codes = [r.get("Code") for r in reasons]
            unmet = [
                (check, reason.get("Item"))
                for check, reason in zip(checks, reasons[2:], strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            ]
            if codes and codes[0] == "ConditionalCheckFailed":
                old = reasons[0].get("Item") or {}
                if "status" in old:
                    return Opened(existing=to_grant(old))
                if TOMBSTONE in old:
                    return Opened(revoke_requested=_tombstone(old))
                # Without the old item (it should be there): read it.
                current = self.get_grant(grant.grant_id)
                if current is not None:
                    return Opened(existing=current)
                requested = self.revoke_request(grant.grant_id)
                if requested is not None:
                    return Opened(revoke_requested=requested)
                if unmet:
                    return _unmet(*unmet[0])
            elif unmet:
                return _unmet(*unmet[0])
            elif len(codes) >= 2 and codes[1] == "ConditionalCheckFailed":
                return Opened(slot_taken=True)
            raise TransientError(f"grant {grant.grant_id} could not be opened: {codes}") from exc
        return Opened(created=True)

    def rebind(self, grant: Grant, activated_at: str) -> bool:
        """Move an ACTIVE grant's ``activated_at`` on (a resumed grant may tag again within its bind
        window); ``False`` if it is not ACTIVE any more, was rebound meanwhile, or a revocation was
        asked for (the tombstone)."""
        condition = f"#s = :active AND attribute_not_exists({TOMBSTONE}) AND "
        values: dict[str, Any] = {
            ":active": {"S": GrantStatus.ACTIVE.value},
            ":now": {"S": activated_at},
        }
        if grant.activated_at:
            condition += "activated_at = :seen"
            values[":seen"] = {"S": grant.activated_at}
        else:
            condition += "attribute_not_exists(activated_at)"
        try:
            self._db.update_item(
                TableName=self._table,
                Key=grant_key(grant.grant_id),
                UpdateExpression="SET activated_at = :now",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        grant.activated_at = activated_at
        return True

    def release_slot(self, principal_arn: str, slot: int, grant_id: str) -> None:
        # Not ours (or already gone): nothing to release.
        with contextlib.suppress(self._db.exceptions.ConditionalCheckFailedException):
            self._db.delete_item(
                TableName=self._table,
                Key=slot_key(principal_arn, slot),
                ConditionExpression="grant_id = :gid",
                ExpressionAttributeValues={":gid": {"S": grant_id}},
            )

    def request_revoke(self, grant_id: str, *, at: str, reason: str, by: str) -> None:
        """Write the tombstone (the first request's values stay): on the grant record if there is one,
        else as an item of its own, which keeps any later grant of this id from being created live.
        UpdateItem adds the item when it does not exist (DynamoDB API Reference, "UpdateItem")."""
        self._db.update_item(
            TableName=self._table,
            Key=grant_key(grant_id),
            UpdateExpression=(
                f"SET {TOMBSTONE} = if_not_exists({TOMBSTONE}, :at), "
                f"{TOMBSTONE}_reason = if_not_exists({TOMBSTONE}_reason, :why), "
                f"{TOMBSTONE}_by = if_not_exists({TOMBSTONE}_by, :by), "
                "kind = if_not_exists(kind, :kind), grant_id = if_not_exists(grant_id, :gid)"
            ),
            ExpressionAttributeValues={
                ":at": {"S": at},
                ":why": {"S": reason},
                ":by": {"S": by},
                ":kind": {"S": "revoke-request"},
                ":gid": {"S": grant_id},
            },
        )

    def mark_denied(self, grant: Grant, denials: list[dict[str, str]], *, at: str | None = None) -> bool:
        """Turn a live record (ACTIVE whose tag IAM refused, or PROVISIONING of an earlier release) into
        DENIED (``at``: when, for its AccessDenied); ``False`` if it is not live any more, or a resumed
        delivery moved its ``activated_at`` (that delivery owns it now, as for ``complete_revoke``)."""
        values: dict[str, Any] = {
            ":denied": {"S": GrantStatus.DENIED.value},
            ":prov": {"S": GrantStatus.PROVISIONING.value},
            ":active": {"S": GrantStatus.ACTIVE.value},
            ":d": _ser(denials),
        }
        condition = "#s IN (:prov, :active) AND "
        if grant.activated_at:
            condition += "activated_at = :seen"
            values[":seen"] = {"S": grant.activated_at}
        else:
            condition += "attribute_not_exists(activated_at)"
        if at is not None:
            values[":at"] = {"S": at}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=grant_key(grant.grant_id),
                UpdateExpression="SET #s = :denied, denials = :d"
                + (", denied_at = :at" if at is not None else "")
                + " REMOVE live",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        grant.status, grant.denials, grant.denied_at = GrantStatus.DENIED, denials, at
        return True

    def lock_free_slot(self, principal_arn: str, slot: int, holder: str) -> bool:
        """Hold a *free* slot under ``holder`` (drift repair), so no grant takes it meanwhile."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_item({"pk": f"SLOT#{principal_arn}#{slot}", "kind": "slot", "grant_id": holder}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def complete_revoke(self, grant: Grant, *, at: str, reason: str, by: str, release_slot: bool) -> bool:
        """Mark the grant REVOKED and, when it holds its slot, free the slot in the same transaction.

        ``False`` when the grant was not live any more (another revocation won the race), or was rebound
        since it was read (``activated_at`` moved: a resumed grant may have tagged again).
        """
        seen = "activated_at = :seen" if grant.activated_at else "attribute_not_exists(activated_at)"
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": grant_key(grant.grant_id),
                    "UpdateExpression": "SET #s = :revoked, revoked_at = :at, revoke_reason = :why, "
                    "revoked_by = :by, live = :usage",
                    "ConditionExpression": f"#s IN (:active, :prov) AND {seen}",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        **({":seen": {"S": grant.activated_at}} if grant.activated_at else {}),
                        ":revoked": {"S": GrantStatus.REVOKED.value},
                        ":active": {"S": GrantStatus.ACTIVE.value},
                        ":prov": {"S": GrantStatus.PROVISIONING.value},
                        ":at": {"S": at},
                        ":why": {"S": reason},
                        ":by": {"S": by},
                        ":usage": {"S": usage_partition(grant.grant_id)},
                    },
                }
            }
        ]
        if release_slot and grant.slot is not None:
            items.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": slot_key(lock_scope(grant), grant.slot),
                        "ConditionExpression": "grant_id = :gid",
                        "ExpressionAttributeValues": {":gid": {"S": grant.grant_id}},
                    }
                }
            )
        try:
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise TransientError(f"revoke of {grant.grant_id} cancelled: {reasons}") from exc
        grant.status, grant.revoked_at, grant.revoke_reason = GrantStatus.REVOKED, at, reason
        return True

    # -- usage (core/usage.py) ---------------------------------------------------------------
    def usage_pending(self, *, limit: int, rotation: int | None = None) -> list[Grant]:
        """Up to ``limit`` revoked grants whose sessions are not recorded yet: one query (a page of at
        most ``limit``) per shard until ``limit`` are found; the rest waits for the next run. With
        ``rotation`` (the steady run's number) only shard ``rotation % 16`` is read: one query per run,
        every shard once in 16 consecutive runs; without it (the daily sweep) every shard."""
        grant_ids: list[str] = []
        shards = range(LIVE_SHARDS) if rotation is None else [rotation % LIVE_SHARDS]
        for shard in shards:
            if len(grant_ids) >= limit:
                break
            pages = self._db.get_paginator("query").paginate(
                TableName=self._table,
                IndexName=LIVE_INDEX,
                KeyConditionExpression="live = :live",
                ExpressionAttributeValues={":live": {"S": f"{USAGE_PENDING}#{shard}"}},
                Limit=limit - len(grant_ids),
            )
            page: dict[str, Any] = next(iter(pages), {})
            grant_ids += [item["grant_id"]["S"] for item in page.get("Items", [])]
        grants = self.get_grants(grant_ids)
        return sorted(
            (g for g in grants.values() if g.status is GrantStatus.REVOKED),
            key=lambda g: (g.revoked_at or "", g.grant_id),
        )

    def record_usage(
        self,
        grant: Grant,
        *,
        sessions: list[dict[str, str]] | None,
        at: str,
        unknown: str | None = None,
        session_count: int | None = None,
    ) -> bool:
        """Write the grant's sessions (or why they are unknown) and move it to its revocation day's
        partition; ``False`` when it is not pending any more (recorded by a concurrent run)."""
        assert grant.revoked_at is not None
        values: dict[str, Any] = {
            ":usage": {"S": usage_partition(grant.grant_id)},
            ":day": {"S": day_partition(grant.grant_id, grant.revoked_at)},
            ":at": {"S": at},
        }
        update = "SET live = :day, usage_recorded_at = :at"
        if sessions is not None:
            update += ", sessions = :sessions"
            values[":sessions"] = _ser(sessions)
        if session_count is not None:
            update += ", session_count = :count"
            values[":count"] = {"N": str(session_count)}
        if unknown is not None:
            update += ", usage_unknown = :unknown"
            values[":unknown"] = {"S": unknown[:1000]}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=grant_key(grant.grant_id),
                UpdateExpression=update,
                ConditionExpression="live = :usage",
                ExpressionAttributeValues=values,
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        grant.sessions, grant.usage_recorded_at, grant.usage_unknown = sessions, at, unknown
        grant.session_count = session_count
        return True

    def ended_between(self, start: str, end: str) -> list[Grant]:
        """The grants revoked in [start, end): one query per shard of each day of the range and of the
        pending partition (16 x (days + 1) pages at least), then the records (BatchGetItem, 100 per
        call). Cost: proportional to the grants revoked in the range, whatever the table's size."""
        first, last = parse_iso(start).date(), parse_iso(end).date()
        days = [USAGE_PENDING]
        day = first
        while day <= last:
            days.append(DAY_PREFIX + day.isoformat())
            day += timedelta(days=1)
        partitions = [f"{value}#{shard}" for value in days for shard in range(LIVE_SHARDS)]
        grant_ids: list[str] = []
        paginator = self._db.get_paginator("query")
        for partition in partitions:
            for page in paginator.paginate(
                TableName=self._table,
                IndexName=LIVE_INDEX,
                KeyConditionExpression="live = :live",
                ExpressionAttributeValues={":live": {"S": partition}},
            ):
                grant_ids += [item["grant_id"]["S"] for item in page.get("Items", [])]
        grants = self.get_grants(grant_ids).values()
        return sorted(
            (g for g in grants if g.status is GrantStatus.REVOKED and start <= (g.revoked_at or "") < end),
            key=lambda g: (g.revoked_at or "", g.grant_id),
        )


def _condition_check(condition: Condition) -> dict[str, Any]:
    """A :class:`Condition` as a TransactWriteItems ``ConditionCheck`` (every attribute equal; a missing
    item fails the comparison too), answering the item as it was when it fails."""
    names = {f"#c{i}": name for i, name in enumerate(condition.equals)}
    values = {f":c{i}": {"S": value} for i, value in enumerate(condition.equals.values())}
    return {
        "ConditionCheck": {
            "TableName": condition.table,
            "Key": {k: {"S": v} for k, v in condition.key.items()},
            "ConditionExpression": " AND ".join(f"#c{i} = :c{i}" for i in range(len(names))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _unmet(condition: Condition, old: dict[str, Any] | None) -> Opened:
    """The denial of a failed ConditionCheck, given the item as it was (``ALL_OLD``; None: no item)."""
    seen = {k: _string(old.get(k)) for k in condition.equals} if old else None
    return Opened(unmet=condition.unmet(seen))


def _string(value: Any) -> str:
    """A string attribute's value ('' for anything else)."""
    return str(value.get("S", "")) if isinstance(value, dict) else ""
