"""`sessiongate outbox redrive`: publish again the lifecycle events PublishFailuresQueue points at.

The publisher (``functions/publish_events``) reads both tables' streams; a batch it still could not
publish after its retries (10, bisected, within 24 hours) is reported by Lambda to the stack's
``PublishFailuresQueue``. The message is an invocation record that points at the stream records, it
does not hold them ("Retaining discarded records for a DynamoDB event source", Lambda developer guide):

    {"requestContext": {...}, "responseContext": {...}, "version": "1.0", "timestamp": "...",
     "DDBStreamBatchInfo": {"shardId": "...", "startSequenceNumber": "...", "endSequenceNumber": "...",
                            "batchSize": 1, "streamArn": "arn:aws:dynamodb:...:table/NAME/stream/..."}}

For each message this command reads the batch's records again from the stream (``GetShardIterator``
``AT_SEQUENCE_NUMBER``, then ``GetRecords`` up to the end sequence number), so each change's old and
new record are exactly those the publisher saw, turns them into their events with the publisher's own
code (:class:`sessiongate.outbox.Publisher`: same payloads, subjects and deterministic ``event_id``s,
so subscribers that already got one drop the repeat), publishes them, and only then deletes the
message.

The stream keeps records 24 hours (``TrimmedDataAccessException`` after that). For a batch of the
ledger's stream that is gone, the command re-reads the current grant records from the table instead
(one consistent Scan): every grant that entered ACTIVE, DENIED or REVOKED (or had its sessions
recorded: ``SessionsRecorded``) within the batch's arrival window (``approximateArrivalOfFirstRecord``
.. ``LastRecord``, ``WINDOW_SLACK`` either side) has that event published again, from its record as it
is now (its status set to the one it entered), under the
same deterministic ``event_id`` (``AccessGranted/<grant id>``...): subscribers that got it drop it. A
request's events name its record's version, which the current record no longer holds: a gone batch of
the requests table's stream is left in the queue, as is any message whose events still cannot be
published (it becomes visible again after ``VISIBILITY``); both are reported and the command exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sessiongate.outbox import LEDGER, REQUESTS, Publisher

# How long a message this run received (and left, if it failed) stays invisible: one run sees each once.
VISIBILITY = 300
# GetRecords returns at most 1,000 records per call (DynamoDB Streams API Reference, "GetRecords").
GET_RECORDS_LIMIT = 1000
# GetRecords may answer empty pages before a shard's later records (DynamoDB Streams API Reference,
# "GetRecords": "it might take multiple calls to get to a portion of the shard that contains stream
# records"; a null NextShardIterator: the shard is closed): the batch is read page after page until
# its end sequence number, at most this many pages.
MAX_PAGES = 100
# A record's own time (activated_at, denied_at, revoked_at) is taken before its write reaches the stream.
WINDOW_SLACK = timedelta(minutes=2)
# The record times of each status a grant enters (the ledger's record of it).
_ENTERED = (("ACTIVE", "activated_at"), ("DENIED", "denied_at"), ("REVOKED", "revoked_at"))
# The stack's resources the command needs (CloudFormation logical ids -> physical ids).
QUEUE, TOPIC, LEDGER_TABLE, REQUESTS_TABLE = (
    "PublishFailuresQueue",
    "NotificationTopic",
    "GrantsTable",
    "RequestsTable",
)


class RecordsGone(Exception):
    """The stream no longer holds the batch's records (or never did): nothing to publish from."""


class BatchIncomplete(Exception):
    """The stream did not give the batch up to its end sequence number (within ``MAX_PAGES`` pages,
    or the shard ended first): nothing is published, the message is left."""


def redrive(
    sqs: Any, streams: Any, publisher: Publisher, queue_url: str, *, dynamodb: Any = None
) -> dict[str, Any]:
    """Redrive every message in the queue once; what was published and what was left (with why).
    ``dynamodb``: reads the ledger when the stream no longer holds a batch (None: no such fallback)."""
    redriven: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=VISIBILITY
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            source = "stream"
            try:
                info = batch_info(message["Body"])
                try:
                    published = _publish_batch(streams, publisher, info)
                except RecordsGone:
                    if dynamodb is None or publisher.source_of(info["streamArn"]) != LEDGER:
                        raise
                    published, source = _publish_from_ledger(dynamodb, publisher, info), "table"
            except (RecordsGone, BatchIncomplete, ValueError) as exc:
                left.append({"message_id": message["MessageId"], "why": str(exc)})
                continue
            except Exception as exc:  # noqa: BLE001  (SNS, streams: left for the next run, reported)
                left.append({"message_id": message["MessageId"], "why": f"{type(exc).__name__}: {exc}"})
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            redriven.append(
                {
                    "message_id": message["MessageId"],
                    "stream": info["streamArn"],
                    "records": f"{info['startSequenceNumber']}..{info['endSequenceNumber']}",
                    "source": source,
                    "event_ids": published,
                }
            )
    report = {"redriven": redriven, "left": left, "exit_code": 1 if left else 0}
    return {"outbox_redrive": {**report, "text": as_text(redriven, left)}}


def as_text(redriven: list[dict[str, Any]], left: list[dict[str, Any]]) -> str:
    lines = [
        f"redriven {m['message_id']}: {len(m['event_ids'])} event(s) from the {m['source']} ({m['records']})"
        for m in redriven
    ]
    lines += [f"LEFT     {m['message_id']}: {m['why']}" for m in left]
    lines.append(f"{len(redriven)} message(s) redriven and deleted, {len(left)} left in the queue")
    return "\n".join(lines)


def command(session: Any, region: str, stack_name: str) -> dict[str, Any]:
    """``sessiongate outbox redrive``: with the caller's credentials (sqs:ReceiveMessage and
    DeleteMessage on the queue, dynamodb:GetShardIterator and GetRecords on the two streams, sns:Publish
    on the topic with its key, cloudformation:DescribeStackResource; dynamodb:Scan on the grants table
    for batches the stream no longer holds)."""
    resources = stack_resources(session.client("cloudformation", region_name=region), stack_name)
    publisher = build_publisher(session.client("sns", region_name=region), resources)
    streams = session.client("dynamodbstreams", region_name=region)
    sqs, dynamodb = session.client("sqs", region_name=region), session.client("dynamodb", region_name=region)
    return redrive(sqs, streams, publisher, resources[QUEUE], dynamodb=dynamodb)


def batch_info(body: str) -> dict[str, str]:
    """The ``DDBStreamBatchInfo`` of an on-failure invocation record; ValueError for anything else."""
    try:
        record = json.loads(body)
    except ValueError:
        raise ValueError("not a Lambda invocation record (not JSON)") from None
    info = record.get("DDBStreamBatchInfo") if isinstance(record, Mapping) else None
    needed = ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")
    if not isinstance(info, Mapping) or not all(isinstance(info.get(k), str) and info[k] for k in needed):
        raise ValueError("not a DynamoDB stream failure record (no DDBStreamBatchInfo)")
    times = ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord")
    return {k: str(info[k]) for k in (*needed, *times) if isinstance(info.get(k), str)}


def _publish_from_ledger(dynamodb: Any, publisher: Publisher, info: Mapping[str, str]) -> list[str]:
    """The events of the grants that entered a status within the batch's arrival window, from their
    current records (see the module's docstring)."""
    try:
        first = _instant(info["approximateArrivalOfFirstRecord"]) - WINDOW_SLACK
        last = _instant(info["approximateArrivalOfLastRecord"]) + WINDOW_SLACK
    except (KeyError, ValueError):
        raise RecordsGone("the stream no longer holds the records, and the message gives no time") from None
    table = info["streamArn"].split(":", 5)[-1].split("/")[1]
    published: list[str] = []
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ConsistentRead=True,
        FilterExpression="kind = :grant AND attribute_exists(#s)",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":grant": {"S": "grant"}},
    )
    for page in pages:
        for item in page.get("Items", []):
            for status, field in _ENTERED:
                at = item.get(field, {}).get("S")
                if isinstance(at, str) and first <= _instant(at) <= last:
                    image = {**item, "status": {"S": status}}
                    published += publisher.publish(info["streamArn"], {"NewImage": image})
            # A revoked grant's sessions recorded within the window: SessionsRecorded again (the change
            # that wrote usage_recorded_at, replayed from the current record).
            at = item.get("usage_recorded_at", {}).get("S")
            if (
                item.get("status", {}).get("S") == "REVOKED"
                and isinstance(at, str)
                and first <= _instant(at) <= last
            ):
                before = {k: v for k, v in item.items() if k != "usage_recorded_at"}
                published += publisher.publish(info["streamArn"], {"OldImage": before, "NewImage": item})
    return published


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _publish_batch(streams: Any, publisher: Publisher, info: Mapping[str, str]) -> list[str]:
    published: list[str] = []
    for record in read_batch(streams, info):
        published += publisher.publish(info["streamArn"], record["dynamodb"])
    return published


def read_batch(streams: Any, info: Mapping[str, str]) -> list[dict[str, Any]]:
    """The stream records from the start to the end sequence number of the batch, in order."""
    from botocore.exceptions import ClientError

    start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    records: list[dict[str, Any]] = []
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=info["startSequenceNumber"],
        )["ShardIterator"]
        pages = 0
        while iterator and pages < MAX_PAGES:
            pages += 1
            answer = streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
            for record in answer.get("Records", []):
                number = int(record["dynamodb"]["SequenceNumber"])
                if number > end:
                    return _checked(records, start, end)
                if number >= start:
                    records.append(record)
                if number == end:
                    return _checked(records, start, end)
            iterator = answer.get("NextShardIterator")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"):
            raise RecordsGone(
                f"the stream no longer holds records {start}..{end} ({code}); the changes are in the tables"
            ) from None
        raise
    if not records or int(records[0]["dynamodb"]["SequenceNumber"]) != start:
        raise RecordsGone(f"the stream no longer holds record {start}; the changes are in the tables")
    raise BatchIncomplete(
        f"the stream gave records {start}..{records[-1]['dynamodb']['SequenceNumber']} of {start}..{end} "
        f"({'shard ended' if not iterator else f'{MAX_PAGES} pages'}); nothing published, message left"
    )


def _checked(records: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    """The batch's records if they run from ``start`` to ``end``; RecordsGone when the first is not
    there, BatchIncomplete when the last is not ``end``."""
    if not records or int(records[0]["dynamodb"]["SequenceNumber"]) != start:
        raise RecordsGone(f"the stream no longer holds record {start}; the changes are in the tables")
    if int(records[-1]["dynamodb"]["SequenceNumber"]) != end:
        raise BatchIncomplete(
            f"the stream skipped from record {records[-1]['dynamodb']['SequenceNumber']} past {end}"
        )
    return records


def stack_resources(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The physical ids of the resources the command needs (queue URL, topic ARN, table names)."""
    found = {}
    for logical_id in (QUEUE, TOPIC, LEDGER_TABLE, REQUESTS_TABLE):
        answer = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        found[logical_id] = str(answer["StackResourceDetail"]["PhysicalResourceId"])
    return found


def build_publisher(sns: Any, resources: Mapping[str, str]) -> Publisher:
    """The publisher's own event code and SNS adapter, for this stack's topic and tables."""
    from sessiongate.adapters.notifier import Notifier

    tables = {resources[LEDGER_TABLE]: LEDGER, resources[REQUESTS_TABLE]: REQUESTS}
    # Notifier.publish answers False when SNS refused: Publisher raises then, and the message is kept.
    return Publisher(Notifier(sns, resources[TOPIC]), tables)
