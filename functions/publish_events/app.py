"""Publish Lambda: DynamoDB Streams of the ledger and the requests table -> lifecycle events on SNS.

Partial batch responses (Powertools batch processing, ``ReportBatchItemFailures``): Lambda resumes the
shard from the first record reported failed. Records after a failed one are not published (they are
reported too), so events stay in order and none is published twice by a retry of its batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from sessiongate import wiring
from sessiongate.errors import TransientError
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    from sessiongate.outbox import Publisher

ROLE = "publish"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deps: Publisher | None = None) -> dict[str, Any]:
    """``deps``: the publisher to use (tests, sandbox); by default the process-wide one."""
    publisher = deps or wiring.publisher()
    failed: list[str] = []

    def publish(record: DynamoDBRecord) -> list[str]:
        if failed:
            raise TransientError(f"after the failed record {failed[0]}: left for the retry")
        try:
            return publisher.publish(record.event_source_arn or "", record.raw_event["dynamodb"])
        except Exception:
            failed.append(str(record.dynamodb.sequence_number if record.dynamodb else "?"))
            raise

    # A batch that failed whole is reported like a partial one (the retry starts at its first record).
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=publish, processor=processor, context=context)
    )
