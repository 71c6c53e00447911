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
message. A message whose records the stream no longer holds (streams keep records 24 hours:
``TrimmedDataAccessException``), or whose events still cannot be published, is left in the queue
(it becomes visible again after ``VISIBILITY``) and reported; the command then exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sessiongate.outbox import Publisher

# How long a message this run received (and left, if it failed) stays invisible: one run sees each once.
VISIBILITY = 300
# GetRecords returns at most 1,000 records per call (DynamoDB Streams API Reference, "GetRecords").
GET_RECORDS_LIMIT = 1000
# A stream gives up to this many empty pages of an open shard before the batch counts as read.
EMPTY_PAGES = 3
# The stack's resources the command needs (CloudFormation logical ids -> physical ids).
QUEUE, TOPIC, LEDGER_TABLE, REQUESTS_TABLE = (
    "PublishFailuresQueue",
    "NotificationTopic",
    "GrantsTable",
    "RequestsTable",
)


class RecordsGone(Exception):
    """The stream no longer holds the batch's records (or never did): nothing to publish from."""


def redrive(sqs: Any, streams: Any, publisher: Publisher, queue_url: str) -> dict[str, Any]:
    """Redrive every message in the queue once; what was published and what was left (with why)."""
    redriven: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=VISIBILITY
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            try:
                info = batch_info(message["Body"])
                published = _publish_batch(streams, publisher, info)
            except (RecordsGone, ValueError) as exc:
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
                    "event_ids": published,
                }
            )
    report = {"redriven": redriven, "left": left, "exit_code": 1 if left else 0}
    return {"outbox_redrive": {**report, "text": as_text(redriven, left)}}


def as_text(redriven: list[dict[str, Any]], left: list[dict[str, Any]]) -> str:
    lines = [f"redriven {m['message_id']}: {len(m['event_ids'])} event(s) {m['records']}" for m in redriven]
    lines += [f"LEFT     {m['message_id']}: {m['why']}" for m in left]
    lines.append(f"{len(redriven)} message(s) redriven and deleted, {len(left)} left in the queue")
    return "\n".join(lines)


def command(session: Any, region: str, stack_name: str) -> dict[str, Any]:
    """``sessiongate outbox redrive``: with the caller's credentials (sqs:ReceiveMessage and
    DeleteMessage on the queue, dynamodb:GetShardIterator and GetRecords on the two streams, sns:Publish
    on the topic with its key, cloudformation:DescribeStackResource)."""
    resources = stack_resources(session.client("cloudformation", region_name=region), stack_name)
    publisher = build_publisher(session.client("sns", region_name=region), resources)
    streams = session.client("dynamodbstreams", region_name=region)
    return redrive(session.client("sqs", region_name=region), streams, publisher, resources[QUEUE])


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
    return {k: str(info[k]) for k in needed}


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
        empty = 0
        while iterator and empty < EMPTY_PAGES:
            answer = streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
            page = answer.get("Records", [])
            empty = 0 if page else empty + 1
            for record in page:
                number = int(record["dynamodb"]["SequenceNumber"])
                if number > end:
                    return _checked(records, start)
                if number >= start:
                    records.append(record)
            iterator = answer.get("NextShardIterator")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"):
            raise RecordsGone(
                f"the stream no longer holds records {start}..{end} ({code}); the changes are in the tables"
            ) from None
        raise
    return _checked(records, start)


def _checked(records: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    if not records or int(records[0]["dynamodb"]["SequenceNumber"]) != start:
        raise RecordsGone(f"the stream no longer holds record {start}; the changes are in the tables")
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
    from sessiongate.outbox import LEDGER, REQUESTS

    tables = {resources[LEDGER_TABLE]: LEDGER, resources[REQUESTS_TABLE]: REQUESTS}
    # Notifier.publish answers False when SNS refused: Publisher raises then, and the message is kept.
    return Publisher(Notifier(sns, resources[TOPIC]), tables)
