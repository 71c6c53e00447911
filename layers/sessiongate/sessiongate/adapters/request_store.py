"""DynamoDB store of native requests (the requests table) and the verified approval policy.

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

import time
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sessiongate.access_requests.policy import (
    ApprovalPolicy,
    Envelope,
    PolicyError,
    PolicyRejected,
    VerifiedPolicy,
    check_serial,
    default_document,
    new_serial,
    open_envelope,
    policy_digest,
)
from sessiongate.access_requests.records import Approval, Request, RequestStatus
from sessiongate.adapters.kms import Macs, MacUnavailable
from sessiongate.clock import Clock, to_iso
from sessiongate.core.identity import PrincipalType
from sessiongate.errors import TransientError

PENDING_INDEX = "pending-by-created"
REQUESTER_INDEX = "by-requester"
POLICY_CACHE = timedelta(seconds=60)
POLICY_ITEM = "policy#current"
POLICY_HISTORY = 20
STACK_DEFAULT = "stack default"
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
    plain["denials"] = tuple(plain.get("denials", []))
    plain["history"] = tuple(plain.get("history", []))
    plain["instance_tags"] = tuple(
        sorted((str(k), str(v)) for k, v in plain.get("instance_tags", {}).items())
    )
    for name in ("duration_minutes", "extension_count", "version"):
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


class PolicySource:
    """The approval policy in effect, verified, re-read at most once a minute.

    No parameter configured: the stack's default policy (``default_approvers``, from the stack's
    NativeApproverArns), which changes only by a deploy. A parameter: it must hold a signed envelope
    whose MAC KMS verifies with ``key_id`` (ApprovalPolicyKey, which only the deployers can sign with),
    and whose signed serial is not below the highest the request API recorded in ``store`` (re-read at
    most once a minute too, and checked on every use, cached or not: a replay of an older signed policy
    at a deleted and re-created parameter); anything else raises :class:`PolicyRejected` (every request
    refused). Reading the recorded serial never writes (GET requests use this too).
    """

    def __init__(
        self,
        ssm: Any,
        parameter_name: str,
        clock: Clock,
        *,
        macs: Macs | None = None,
        key_id: str = "",
        default_approvers: tuple[str, ...] = (),
        store: RequestStore | None = None,
    ) -> None:
        self._ssm = ssm
        self._store = store
        self._highest: tuple[datetime, int | None] | None = None
        self._name = parameter_name
        self._clock = clock
        self._macs = macs
        self._key_id = key_id
        self._default = default_approvers
        self._cached: tuple[datetime, VerifiedPolicy] | None = None

    def get(self) -> ApprovalPolicy:
        """The current policy; raises :class:`PolicyError` when it is missing or invalid (fail closed)."""
        return self.verified().policy

    def verified(self) -> VerifiedPolicy:
        now = self._clock.now()
        if self._cached is not None and now - self._cached[0] < POLICY_CACHE:
            verified = self._cached[1]
        else:
            verified = self._load()
            self._cached = (now, verified)
        if verified.serial is not None and self._store is not None:
            if self._highest is None or now - self._highest[0] >= POLICY_CACHE:
                self._highest = (now, self._store.policy_serial())
            highest = self._highest[1]
            if highest is not None:
                check_serial(verified.source, verified.serial, highest)
        return verified

    def _load(self) -> VerifiedPolicy:
        if not self._name:
            document: Any = default_document(self._default)
            return VerifiedPolicy(ApprovalPolicy.parse(document), policy_digest(document), STACK_DEFAULT)
        try:
            parameter = self._ssm.get_parameter(Name=self._name)["Parameter"]
        except self._ssm.exceptions.ParameterNotFound:
            raise PolicyError(f"the approval policy parameter {self._name} does not exist") from None
        signed = open_envelope(parameter["Value"])
        version = int(parameter["Version"])
        if (signed.parameter, signed.version) != (self._name, version):
            raise PolicyRejected(
                f"the approval policy was signed for {signed.parameter} version {signed.version}, but it is "
                f"{self._name} version {version} (written again outside `sessiongate policy sign --put`?)"
            )
        if self._macs is None or not self._key_id:
            raise PolicyRejected("no key to verify the approval policy (SESSIONGATE_APPROVAL_POLICY_KEY)")
        try:
            # Always our key: the envelope's key_id only tells a reader which key signed it.
            valid = self._macs.verify(self._key_id, signed.message(), signed.mac)
        except MacUnavailable as exc:
            raise PolicyRejected(f"the approval policy cannot be verified: {exc}") from None
        if not valid:
            raise PolicyRejected(
                f"the approval policy parameter {self._name} is not signed with SessionGate's policy key "
                "(changed outside `sessiongate policy sign`?)"
            )
        return VerifiedPolicy(
            ApprovalPolicy.parse(signed.policy),
            policy_digest(signed.policy),
            self._name,
            version,
            serial=signed.serial,
        )


def sign_policy(
    document: object, macs: Macs, key_id: str, *, parameter: str, version: int, serial: int | None = None
) -> Envelope:
    """The signed envelope of ``document`` for ``parameter`` at ``version`` (a deployer's ``sessiongate
    policy sign``; the sandbox and the tests sign through here too), with ``serial`` (default: the
    signer's clock, :func:`sessiongate.access_requests.policy.new_serial`). The document is validated with the
    parser the API uses first, so a signed policy is always usable."""
    ApprovalPolicy.parse(document)
    assert isinstance(document, Mapping)
    serial = new_serial(time.time()) if serial is None else serial
    unsigned = Envelope(document, parameter, version, "", key_id, serial)
    return replace(unsigned, mac=macs.generate(key_id, unsigned.message()))


def next_version(ssm: Any, parameter_name: str) -> int:
    """The version SSM will give the parameter's next write."""
    try:
        return int(ssm.get_parameter(Name=parameter_name)["Parameter"]["Version"]) + 1
    except ssm.exceptions.ParameterNotFound:
        return 1


def put_signed(ssm: Any, signed: Envelope) -> None:
    """Write a signed envelope to its parameter; if another write got there first the versions differ
    (and the API would refuse the policy), so this fails instead: check who wrote, then sign again.
    (Intelligent-Tiering: a policy over the 4 KB of a standard parameter becomes an advanced one.)"""
    answer = ssm.put_parameter(
        Name=signed.parameter, Value=signed.dumps(), Type="String", Overwrite=True, Tier="Intelligent-Tiering"
    )
    if int(answer["Version"]) != signed.version:
        raise PolicyError(
            f"{signed.parameter} was written by someone else meanwhile (now version {answer['Version']}, "
            f"signed for {signed.version}): check who, then sign again"
        )


def sign_and_put(document: object, macs: Macs, key_id: str, ssm: Any, parameter_name: str) -> Envelope:
    """Sign ``document`` for the parameter's next version and write it."""
    version = next_version(ssm, parameter_name)
    signed = sign_policy(document, macs, key_id, parameter=parameter_name, version=version)
    put_signed(ssm, signed)
    return signed
