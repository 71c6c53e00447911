"""DynamoDB store of native requests (the requests table), and the recorded approval policy digest and serial.

Items (partition key ``request_id``):
- every field of :class:`sessiongate.access_requests.records.Request`; ``version`` increases by one per
  write and every write is conditional on the version read (optimistic locking), so of two
  concurrent decisions only one lands and the other re-reads;
- ``pending = "PENDING"`` only while PENDING, for the sparse ``pending-by-created`` index (approvers'
  inbox, pending expiry); ``pending = "APPROVED"`` while APPROVED, in the same index under its own
  key, for the scheduled sweep (re-emit a failed hand-over, retire the grant an extension replaces,
  write the grant's outcome, which takes the record out of the index); ``requester_arn`` +
  ``created_at`` for the ``by-requester`` index ("mine");
- ``policy#current``: the digest of the approval policy last in effect (PolicyChanged audit) and
  ``policy_serial``, the highest signed serial the request API has accepted (an older envelope is
  refused: :func:`sessiongate.access_requests.policy.check_serial`), in neither index.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

from sessiongate.access_requests.policy import (
    VerifiedPolicy,
    check_serial,
)
from sessiongate.access_requests.records import Approval, Request, RequestStatus
from sessiongate.clock import to_iso
from sessiongate.core.identity import PrincipalType
from sessiongate.errors import TransientError

PENDING_INDEX = "pending-by-created"
REQUESTER_INDEX = "by-requester"
POLICY_ITEM = "policy#current"
POLICY_HISTORY = 20
_FIELDS = {f.name for f in fields(Request)}


def _ser(value: Any) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer().serialize(value)  # type: ignore[no-any-return]


def to_item(request: Request) -> dict[str, Any]:
    values = asdict(request)
    values["status"] = request.status.value
    values["principal_type"] = request.principal_type.value
    values["approvals"] = [a.as_dict() for a in request.approvals]
    values["denials"] = list(request.denials)
    values["history"] = list(request.history)
    values["instance_tags"] = dict(request.instance_tags)
    if request.status in (RequestStatus.PENDING, RequestStatus.APPROVED):
        values["pending"] = request.status.value
    return {k: _ser(v) for k, v in values.items() if v is not None and v != "" and v != []}


def from_item(item: dict[str, Any]) -> Request:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    plain = {k: des.deserialize(v) for k, v in item.items() if k in _FIELDS}
    plain["status"] = RequestStatus(plain["status"])
    plain["principal_type"] = PrincipalType(plain["principal_type"])
    plain["approvals"] = tuple(Approval.from_dict(a) for a in plain.get("approvals", []))
    plain["approver_arns"] = tuple(plain.get("approver_arns", []))
    plain["documents"] = tuple(plain.get("documents", []))
    plain["denials"] = tuple(plain.get("denials", []))
    plain["history"] = tuple(plain.get("history", []))
    plain["instance_tags"] = tuple(
        sorted((str(k), str(v)) for k, v in plain.get("instance_tags", {}).items())
    )
    for name in ("duration_minutes", "extension_count", "version", "reminders_sent"):
        if name in plain:
            plain[name] = int(plain[name])
    return Request(**plain)


class RequestStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def get(self, request_id: str) -> Request | None:
        item = self._db.get_item(
            TableName=self._table, Key={"request_id": {"S": request_id}}, ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def create(self, request: Request) -> bool:
        """Write a new request; ``False`` if the id exists already."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item=to_item(request),
                ConditionExpression="attribute_not_exists(request_id)",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def replace(self, request: Request, *, expected_version: int) -> bool:
        """Write the next version; ``False`` when someone else wrote since ``expected_version``."""
        if request.version != expected_version + 1:
            raise ValueError("replace() needs the next version of the record")
        try:
            self._db.put_item(
                TableName=self._table,
                Item=to_item(request),
                ConditionExpression="#v = :expected",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":expected": {"N": str(expected_version)}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def create_extension(self, parent: Request, *, expected_version: int, child: Request) -> bool:
        """Bump the parent's extension counter and create the extension request, atomically."""
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(parent),
                            "ConditionExpression": "#v = :expected",
                            "ExpressionAttributeNames": {"#v": "version"},
                            "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(child),
                            "ConditionExpression": "attribute_not_exists(request_id)",
                        }
                    },
                ]
            )
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                return False
            raise TransientError(f"extension of {parent.request_id} cancelled: {reasons}") from exc
        return True

    def take_quota(self, key: str, *, now: datetime, window: timedelta, limit: int) -> int | None:
        """Record one use of quota ``key`` unless ``limit`` uses fall within ``window`` before ``now``.

        Returns the uses already made in the window, or ``None`` when the quota is exhausted. The item
        (``request_id = quota#<key>``, in neither index) is written conditionally on its version, so
        two concurrent uses cannot both take the last one.
        """
        item_id = f"quota#{key}"
        since = to_iso(now - window)
        for _ in range(3):
            item = self._db.get_item(
                TableName=self._table, Key={"request_id": {"S": item_id}}, ConsistentRead=True
            ).get("Item")
            version = int(item["version"]["N"]) if item else 0
            uses = [u["S"] for u in item.get("uses", {}).get("L", [])] if item else []
            recent = [u for u in uses if u > since]
            if len(recent) >= limit:
                return None
            try:
                self._db.put_item(
                    TableName=self._table,
                    Item={
                        "request_id": {"S": item_id},
                        "uses": {"L": [{"S": u} for u in [*recent, to_iso(now)]]},
                        "version": {"N": str(version + 1)},
                    },
                    ConditionExpression="attribute_not_exists(request_id) OR version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
            except self._db.exceptions.ConditionalCheckFailedException:
                continue
            return len(recent)
        raise TransientError(f"quota {key} kept changing")

    def record_policy(self, policy: VerifiedPolicy, *, now: datetime) -> bool:
        """Record ``policy`` as the one in effect and raise the recorded serial to its serial; ``True``
        only for the one writer that changed the digest (each change is notified exactly once).
        :class:`PolicyRejected` if a newer policy was recorded meanwhile (its serial is higher). Every
        write is conditional on the item as read, so the recorded serial never goes down."""
        for _ in range(5):
            item = self._db.get_item(
                TableName=self._table, Key={"request_id": {"S": POLICY_ITEM}}, ConsistentRead=True
            ).get("Item")
            recorded = item.get("policy_digest", {}).get("S") if item else None
            highest = int(item["policy_serial"]["N"]) if item and "policy_serial" in item else None
            serial = policy.serial
            if serial is not None and highest is not None:
                check_serial(policy.source, serial, highest)
            raises = serial is not None and (highest is None or serial > highest)
            changed = recorded != policy.digest
            if not changed and not raises:
                return False
            history = item.get("changes", {}).get("L", []) if item else []
            if changed:
                change = {
                    "digest": {"S": policy.digest},
                    "source": {"S": policy.source},
                    "at": {"S": to_iso(now)},
                    **(
                        {"parameter_version": {"N": str(policy.parameter_version)}}
                        if policy.parameter_version is not None
                        else {}
                    ),
                    **({"serial": {"N": str(serial)}} if serial is not None else {}),
                }
                history = [*history, {"M": change}][-POLICY_HISTORY:]
            top = serial if raises else highest
            condition, values = "attribute_not_exists(request_id)", {}
            if item is not None:
                condition = "policy_digest = :d AND " + (
                    "policy_serial = :s" if highest is not None else "attribute_not_exists(policy_serial)"
                )
                values = {":d": {"S": recorded or ""}}
                if highest is not None:
                    values[":s"] = {"N": str(highest)}
            try:
                self._db.put_item(
                    TableName=self._table,
                    Item={
                        "request_id": {"S": POLICY_ITEM},
                        "policy_digest": {"S": policy.digest},
                        "changes": {"L": history},
                        **({"policy_serial": {"N": str(top)}} if top is not None else {}),
                    },
                    ConditionExpression=condition,
                    **({"ExpressionAttributeValues": values} if values else {}),
                )
            except self._db.exceptions.ConditionalCheckFailedException:
                continue  # another writer recorded meanwhile: read again
            return changed
        raise TransientError("the approval policy record kept changing")

    def policy_serial(self) -> int | None:
        """The highest policy serial the request API has accepted (None: none yet)."""
        item = self._db.get_item(
            TableName=self._table,
            Key={"request_id": {"S": POLICY_ITEM}},
            ConsistentRead=True,
            ProjectionExpression="policy_serial",
        ).get("Item")
        return int(item["policy_serial"]["N"]) if item and "policy_serial" in item else None

    def by_requester(self, requester_arn: str, *, limit: int) -> list[Request]:
        return self._query(REQUESTER_INDEX, "requester_arn", requester_arn, limit)

    def pending(self, *, limit: int, oldest_first: bool = False) -> list[Request]:
        return self._query(PENDING_INDEX, "pending", RequestStatus.PENDING.value, limit, oldest_first)

    def approved(self, *, limit: int) -> list[Request]:
        """APPROVED records whose grant the sweep has not yet seen settle, oldest first."""
        return self._query(PENDING_INDEX, "pending", RequestStatus.APPROVED.value, limit, oldest_first=True)

    def _query(
        self, index: str, key: str, value: str, limit: int, oldest_first: bool = False
    ) -> list[Request]:
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": key},
            "ExpressionAttributeValues": {":v": {"S": value}},
            "ScanIndexForward": oldest_first,
        }
        while len(ids) < limit:
            page = self._db.query(**kwargs)
            ids += [item["request_id"]["S"] for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # The indexes are eventually consistent: re-read every record before showing or acting on it.
        found = [self.get(i) for i in ids[:limit]]
        return [r for r in found if r is not None]
