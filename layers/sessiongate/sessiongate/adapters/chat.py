"""DynamoDB, Secrets Manager and EC2 behind the chat features (issue 19).

- :class:`ChatStateTable`: the chat state table (key ``pk``, TTL attribute ``ttl``): one-time link codes
  (``code#<sha256>``), the signatures already seen (``sig#<sha256>``), the request messages posted
  (``msg#<request id>``). Codes and signatures are written conditionally and expire by TTL (DynamoDB
  deletes expired items within days, "Using time to live (TTL) in DynamoDB": so expiry is also checked
  on read).
- :class:`LinksTable`: the links table (key ``chat_user``, index ``by-identity``, TTL attribute ``ttl`` =
  the link's ``expires_at``, also checked on read); only the request API writes it (its resource policy;
  README "Approving from Slack", security), and each link carries its MAC (``mac``, :mod:`.chat.links`).
- :class:`Secret`: a Secrets Manager string, cached for a few minutes (rotation reaches warm functions).
- :func:`instance_tags`: an instance's tags in this account (EC2 DescribeInstances), for the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from sessiongate.chat.ports import ChatUser, CodeOwner, Link, StoredMessage
from sessiongate.clock import Clock
from sessiongate.observability import logger

SECRET_CACHE = timedelta(minutes=5)


def _owner(item: Mapping[str, Any]) -> CodeOwner:
    return CodeOwner(
        ChatUser(item["chat"]["S"], item["team_id"]["S"], item["user_id"]["S"]),
        item.get("user_name", {}).get("S", ""),
        item.get("team_domain", {}).get("S", ""),
    )


class ChatStateTable:
    def __init__(self, db: Any, table: str) -> None:
        self._db, self._table = db, table

    def put_code(self, code_hash: str, owner: CodeOwner, *, expires_at: int) -> None:
        self._db.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": f"code#{code_hash}"},
                "chat": {"S": owner.user.chat},
                "team_id": {"S": owner.user.team_id},
                "user_id": {"S": owner.user.user_id},
                "user_name": {"S": owner.user_name},
                "team_domain": {"S": owner.team_domain},
                "expires_at": {"N": str(expires_at)},
                "ttl": {"N": str(expires_at)},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def peek_code(self, code_hash: str, *, now: int) -> CodeOwner | None:
        item = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": f"code#{code_hash}"}}, ConsistentRead=True
        ).get("Item")
        if not item or int(item["expires_at"]["N"]) <= now:
            return None
        return _owner(item)

    def take_code(self, code_hash: str, *, now: int) -> CodeOwner | None:
        try:
            answer = self._db.delete_item(
                TableName=self._table,
                Key={"pk": {"S": f"code#{code_hash}"}},
                ConditionExpression="attribute_exists(pk) AND expires_at > :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValues="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return None
        return _owner(answer["Attributes"])

    def first_seen(self, proof: str, *, now: int, keep_until: int) -> bool:
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"sig#{hashlib.sha256(proof.encode()).hexdigest()}"},
                    "seen_at": {"N": str(now)},
                    "ttl": {"N": str(keep_until)},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def message_of(self, request_id: str) -> StoredMessage | None:
        from sessiongate.chat.messages import card_from_json

        item = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": f"msg#{request_id}"}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return StoredMessage(
            item["channel"]["S"],
            item["ref"]["S"],
            card_from_json(item["card"]["S"]),
            int(item["version"]["N"]),
            tuple((item.get("seen", {}).get("L") and [v["S"] for v in item["seen"]["L"]]) or ()),
        )

    def save_message(self, request_id: str, message: StoredMessage) -> bool:
        from sessiongate.chat.messages import card_to_json

        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if message.version == 1
            else {
                "ConditionExpression": "version = :previous",
                "ExpressionAttributeValues": {":previous": {"N": str(message.version - 1)}},
            }
        )
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"msg#{request_id}"},
                    "channel": {"S": message.channel},
                    "ref": {"S": message.ref},
                    "card": {"S": card_to_json(message.card)},
                    "version": {"N": str(message.version)},
                    "seen": {"L": [{"S": s} for s in message.seen]},
                },
                **condition,
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True


class LinksTable:
    INDEX = "by-identity"

    def __init__(self, db: Any, table: str) -> None:
        self._db, self._table = db, table

    @staticmethod
    def _link(item: Mapping[str, Any]) -> Link:
        chat, team, user = item["chat_user"]["S"].split("/", 2)
        return Link(
            ChatUser(chat, team, user),
            item["identity_arn"]["S"],
            item.get("linked_at", {}).get("S", ""),
            int(item.get("expires_at", {}).get("N", "0")),
            item.get("mac", {}).get("S", ""),
        )

    def get(self, user: ChatUser) -> Link | None:
        item = self._db.get_item(
            TableName=self._table, Key={"chat_user": {"S": user.key}}, ConsistentRead=True
        ).get("Item")
        return self._link(item) if item else None

    def put(self, link: Link) -> Link | None:
        answer = self._db.put_item(
            TableName=self._table,
            Item={
                "chat_user": {"S": link.user.key},
                "identity_arn": {"S": link.identity_arn},
                "linked_at": {"S": link.linked_at},
                "expires_at": {"N": str(link.expires_at)},
                "ttl": {"N": str(link.expires_at)},  # DynamoDB TTL (lazy: expiry is checked on read)
                "mac": {"S": link.mac},
            },
            ReturnValues="ALL_OLD",
        )
        old = answer.get("Attributes")
        return self._link(old) if old else None

    def delete(self, user: ChatUser) -> Link | None:
        answer = self._db.delete_item(
            TableName=self._table, Key={"chat_user": {"S": user.key}}, ReturnValues="ALL_OLD"
        )
        old = answer.get("Attributes")
        return self._link(old) if old else None

    def of_identity(self, identity_arn: str) -> list[Link]:
        answer = self._db.query(
            TableName=self._table,
            IndexName=self.INDEX,
            KeyConditionExpression="identity_arn = :arn",
            ExpressionAttributeValues={":arn": {"S": identity_arn}},
            Limit=25,
        )
        return [self._link(item) for item in answer.get("Items", [])]


class Secret:
    """A Secrets Manager secret's string, read on first use and again after ``SECRET_CACHE``."""

    def __init__(self, client: Any, secret_id: str, clock: Clock) -> None:
        self._client, self._id, self._clock = client, secret_id, clock
        self._value: str | None = None
        self._read_at: datetime | None = None

    def __call__(self) -> str:
        now = self._clock.now()
        if self._value is None or self._read_at is None or now - self._read_at > SECRET_CACHE:
            value = self._client.get_secret_value(SecretId=self._id).get("SecretString")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"secret {self._id} holds no string: set it (README, Slack app setup)")
            self._value, self._read_at = value.strip(), now
        return self._value


def instance_tags(ec2: Any, account: str, own_account: str, instance_id: str) -> dict[str, str]:
    """The instance's tags when it is in this account (others: not shown, {}); {} when it is gone."""
    if account and account != own_account:
        return {}
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as exc:
        logger().warning("instance tags unavailable", extra={"instance_id": instance_id, "error": str(exc)})
        return {}
    return {t["Key"]: t["Value"] for r in reservations for i in r["Instances"] for t in i.get("Tags", [])}
