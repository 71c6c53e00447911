"""`sessiongate outbox redrive` on moto: the PublishFailuresQueue message points at stream records; the
command reads them again from the stream, publishes their events with the publisher's own code (same
deterministic event ids) and deletes the message only after that."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sessiongate_cli import outbox
from sessiongate_cli.main import main
from tests.support.stack import NATIVE_SETTINGS, Stack, _stream_reader
from tests.support.values import ACCOUNT, REGION


def _failure_queue(stack: Stack) -> str:
    return str(stack.client("sqs").create_queue(QueueName="PublishFailuresQueue")["QueueUrl"])


def _resources(stack: Stack, queue: str) -> dict[str, str]:
    return {
        outbox.QUEUE: queue,
        outbox.TOPIC: stack.settings.topic_arn,
        outbox.LEDGER_TABLE: stack.settings.table_name,
        outbox.REQUESTS_TABLE: NATIVE_SETTINGS["requests_table"],
    }


def _stream_records(stack: Stack, table: str) -> tuple[str, str, list[dict[str, Any]]]:
    reader = _stream_reader()
    stream = stack.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    [shard] = reader.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"]
    iterator = reader.get_shard_iterator(
        StreamArn=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = reader.get_records(ShardIterator=iterator)["Records"]
    return stream, shard["ShardId"], records


def _report_failed_batch(
    stack: Stack, queue: str, table: str, records: slice = slice(None), arrived: str = "2026-11-24T09:13:19Z"
) -> None:
    """What Lambda sends to the on-failure destination after the retries ("Retaining discarded records
    for a DynamoDB event source", Lambda developer guide): pointers to the batch, not its records."""
    stream, shard, found = _stream_records(stack, table)
    batch = found[records]
    body = {
        "requestContext": {
            "requestId": "316aa6d0-8154-4b9e-9af7-85d5f4a6bc81",
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sessiongate-publish-events",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 11,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-24T09:13:49.717Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": arrived,
            "approximateArrivalOfLastRecord": arrived,
            "batchSize": len(batch),
            "streamArn": stream,
        },
    }
    stack.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(body))


def _granted(stack: Stack) -> str:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    assert stack.engine().grant(request.to_detail()).result == "granted"
    return request.grant_id


def _redrive(stack: Stack, queue: str, sns: Any = None) -> dict[str, Any]:
    publisher = outbox.build_publisher(sns or stack.client("sns"), _resources(stack, queue))
    result: dict[str, Any] = outbox.redrive(stack.client("sqs"), _stream_reader(), publisher, queue)
    return result["outbox_redrive"]


def _received(stack: Stack) -> list[dict[str, Any]]:
    """The notifications subscribers got (not ``stack.notifications()``: that runs the publisher)."""
    return [json.loads(body["Message"]) for body in stack._drain(stack.notification_queue)]


def _waiting(stack: Stack, queue: str) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_redrive_publishes_the_events_the_failed_batch_held_then_deletes_the_message(stack: Stack) -> None:
    queue = _failure_queue(stack)
    grant_id = _granted(stack)
    _report_failed_batch(stack, queue, stack.settings.table_name)

    report = _redrive(stack, queue)

    [done] = report["redriven"]
    assert done["event_ids"] == [f"AccessGranted/{grant_id}"]
    assert (report["left"], report["exit_code"]) == ([], 0)
    [note] = _received(stack)
    assert note["event_type"] == "AccessGranted"
    assert note["grant_id"] == grant_id
    assert note["event_id"] == f"AccessGranted/{grant_id}"  # subscribers drop a repeat by it
    assert _waiting(stack, queue) == 0


def test_a_message_whose_events_still_cannot_be_published_is_kept(stack: Stack) -> None:
    """Fail safe: nothing is deleted before its events are out."""
    queue = _failure_queue(stack)
    _granted(stack)
    _report_failed_batch(stack, queue, stack.settings.table_name)

    class Down:
        def publish(self, **_: Any) -> None:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "Publish")

    report = _redrive(stack, queue, sns=Down())

    assert report["redriven"] == []
    [left] = report["left"]
    assert "was not published" in left["why"]
    assert report["exit_code"] == 1
    assert _waiting(stack, queue) == 1  # still there (invisible for this run), for the next one


class _Trimmed:
    """The stream after its 24 hours: GetShardIterator at a sequence number it no longer holds answers
    TrimmedDataAccessException (DynamoDB Streams API Reference, "GetShardIterator", Errors: "The
    operation attempted to read past the oldest stream record in a shard"). moto asserts instead of
    answering (its shard read requires start >= the shard's first number), so this plays the service."""

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}}, "GetShardIterator"
        )


def test_messages_the_stream_cannot_answer_are_kept_with_the_reason(stack: Stack) -> None:
    queue = _failure_queue(stack)
    _granted(stack)
    _report_failed_batch(stack, queue, stack.settings.table_name)
    stack.client("sqs").send_message(QueueUrl=queue, MessageBody="not an invocation record")
    publisher = outbox.build_publisher(stack.client("sns"), _resources(stack, queue))

    report = outbox.redrive(stack.client("sqs"), _Trimmed(), publisher, queue)["outbox_redrive"]

    reasons = sorted(m["why"] for m in report["left"])
    assert reasons[0].startswith("not a Lambda invocation record")
    assert "the stream no longer holds records" in reasons[1]
    assert "TrimmedDataAccessException" in reasons[1]
    assert (report["redriven"], report["exit_code"]) == ([], 1)
    assert _received(stack) == []
    assert _waiting(stack, queue) == 2


def test_a_ledger_batch_the_stream_no_longer_holds_is_redriven_from_the_current_records(stack: Stack) -> None:
    """After the stream's 24 hours: the grants that entered a status within the batch's arrival window
    get that event again, from the table, under the same event id; others do not."""
    queue = _failure_queue(stack)
    stack.user("bob")
    earlier = stack.approved(instance_id=stack.instance(), principal="bob")
    assert stack.engine().grant(earlier.to_detail()).result == "granted"  # an hour before the batch
    stack.clock.advance(timedelta(hours=1))
    grant_id = _granted(stack)
    # The write's time (moto streams carry no arrival time: the stack's clock is the write's).
    arrived = stack.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    _report_failed_batch(stack, queue, stack.settings.table_name, slice(-2, None), arrived)
    sqs = stack.client("sqs")
    [message] = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"]
    body = json.loads(message["Body"])
    requests_stream = stack.client("dynamodb").describe_table(TableName=NATIVE_SETTINGS["requests_table"])
    gone_request = {**body["DDBStreamBatchInfo"], "streamArn": requests_stream["Table"]["LatestStreamArn"]}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"DDBStreamBatchInfo": gone_request}))
    publisher = outbox.build_publisher(stack.client("sns"), _resources(stack, queue))

    report = outbox.redrive(sqs, _Trimmed(), publisher, queue, dynamodb=stack.client("dynamodb"))

    [done] = report["outbox_redrive"]["redriven"]
    assert (done["source"], done["event_ids"]) == ("table", [f"AccessGranted/{grant_id}"])
    [note] = _received(stack)
    assert (note["event_type"], note["grant_id"], note["status"]) == ("AccessGranted", grant_id, "ACTIVE")
    # A request's events name its record's version, which the current record does not hold: left.
    [left] = report["outbox_redrive"]["left"]
    assert "the stream no longer holds records" in left["why"]
    assert _waiting(stack, queue) == 1


def test_the_command_finds_the_stack_resources_and_exits_1_when_a_message_is_left(stack: Stack) -> None:
    queue = _failure_queue(stack)
    grant_id = _granted(stack)
    _report_failed_batch(stack, queue, stack.settings.table_name)
    stack.client("sqs").send_message(QueueUrl=queue, MessageBody="{}")
    resources = _resources(stack, queue)

    class CloudFormation:
        def describe_stack_resource(self, StackName: str, LogicalResourceId: str) -> dict[str, Any]:
            assert StackName == "sessiongate"
            return {"StackResourceDetail": {"PhysicalResourceId": resources[LogicalResourceId]}}

    class Session:
        def client(self, service: str, region_name: str | None = None) -> Any:
            assert region_name == REGION
            if service == "cloudformation":
                return CloudFormation()
            return _stream_reader() if service == "dynamodbstreams" else stack.client(service)

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["outbox", "redrive", "--region", REGION, "--output", "json"], session=Session(), out=out, err=err
    )

    assert code == 1  # the "{}" message is left
    report = json.loads(out.getvalue())["outbox_redrive"]
    assert [m["event_ids"] for m in report["redriven"]] == [[f"AccessGranted/{grant_id}"]]
    assert report["left"][0]["why"] == "not a DynamoDB stream failure record (no DDBStreamBatchInfo)"
    assert [n["grant_id"] for n in _received(stack)] == [grant_id]


class _PagedStream:
    """GetShardIterator/GetRecords answering the given pages in turn (DynamoDB Streams may answer empty
    pages mid-shard, API Reference "GetRecords"); None as the next iterator once the pages end when
    ``closed`` (the shard is closed)."""

    def __init__(self, pages: list[list[int]], *, closed: bool = False) -> None:
        self.pages, self.closed, self.calls = pages, closed, 0

    def get_shard_iterator(self, **_: Any) -> dict[str, str]:
        return {"ShardIterator": "it-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        n = int(ShardIterator.removeprefix("it-"))
        self.calls += 1
        page = self.pages[n] if n < len(self.pages) else []
        records = [{"dynamodb": {"SequenceNumber": str(number)}} for number in page]
        last = n + 1 >= len(self.pages)
        return {"Records": records, "NextShardIterator": None if last and self.closed else f"it-{n + 1}"}


_BATCH = {"streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x", "shardId": "s"}


def test_empty_pages_mid_shard_do_not_cut_the_batch_short() -> None:
    """Review M4: pages [100], three empty, [300]: the batch 100..300 is read whole, not published
    as [100] (which deleted the message with the change of 300 unpublished)."""
    stream = _PagedStream([[100], [], [], [], [300, 400]])
    info = {**_BATCH, "startSequenceNumber": "100", "endSequenceNumber": "300"}
    assert [r["dynamodb"]["SequenceNumber"] for r in outbox.read_batch(stream, info)] == ["100", "300"]


def test_a_batch_the_stream_does_not_give_up_to_its_end_is_left() -> None:
    info = {**_BATCH, "startSequenceNumber": "100", "endSequenceNumber": "300"}
    with pytest.raises(outbox.BatchIncomplete, match="shard ended"):
        outbox.read_batch(_PagedStream([[100], [200]], closed=True), info)
    endless = _PagedStream([[100]])  # an open shard answering empty pages
    with pytest.raises(outbox.BatchIncomplete, match="pages"):
        outbox.read_batch(endless, info)
    assert endless.calls == outbox.MAX_PAGES
    with pytest.raises(outbox.BatchIncomplete, match="skipped"):
        outbox.read_batch(_PagedStream([[100, 250, 400]]), info)


class _Scan:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def get_paginator(self, operation: str) -> Any:
        assert operation == "scan"
        items = self.items

        class _Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"Items": items}]

        return _Pages()


class _Notes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, event_type: str, payload: Any, *, subject: str, event_id: str | None = None) -> bool:
        self.sent.append((event_type, dict(payload)))
        return True


def test_the_table_fallback_publishes_sessions_recorded_again() -> None:
    """Review L4: a gone ledger batch whose change recorded a grant's sessions gets SessionsRecorded."""
    plain = {
        "pk": "GRANT#g1",
        "kind": "grant",
        "grant_id": "g1",
        "status": "REVOKED",
        "origin": "native",
        "origin_ref": "r1",
        "account": ACCOUNT,
        "instance_id": "i-0123456789abcdef0",
        "principal_type": "user",
        "principal_name": "alice",
        "principal_arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
        "requester_arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
        "created_at": "2026-11-24T08:00:00Z",
        "activated_at": "2026-11-24T08:00:00Z",
        "expires_at": "2026-11-24T08:30:00Z",
        "revoked_at": "2026-11-24T08:30:00Z",
        "revoke_reason": "expired",
        "usage_recorded_at": "2026-11-24T09:13:00Z",
    }
    item: dict[str, Any] = {k: {"S": v} for k, v in plain.items()}
    item["sessions"] = {"L": []}
    item["approver_arns"] = {"L": []}
    item["duration_minutes"] = {"N": "30"}
    notes = _Notes()
    publisher = outbox.Publisher(notes, {"t": outbox.LEDGER})
    info = {
        **_BATCH,
        "startSequenceNumber": "1",
        "endSequenceNumber": "1",
        "approximateArrivalOfFirstRecord": "2026-11-24T09:13:19Z",
        "approximateArrivalOfLastRecord": "2026-11-24T09:13:19Z",
    }
    assert outbox._publish_from_ledger(_Scan([item]), publisher, info) == ["SessionsRecorded/g1"]
    assert notes.sent[0][1]["used"] is False
