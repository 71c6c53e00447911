"""History export Lambda (issue 17): DynamoDB Streams of the ledger and the requests table -> one JSON
Lines object per transition in the history bucket (``sessiongate.history``).

Partial batch responses (Powertools batch processing, ``ReportBatchItemFailures``), as in
``functions/publish_events``: Lambda resumes the shard from the first record reported failed, and the
records after a failed one are reported too, so none is skipped. A redelivered record overwrites its
own object (the key names the record, not the batch): no duplicate lines.

The backfill (``sessiongate audit backfill``) invokes it with ``{"backfill": {"since": "YYYY-MM-DD",
"until": "YYYY-MM-DD"}}``: it rebuilds those days from the tables (a scan), never from the event, so
an invoker cannot write a record the tables do not hold. An item it cannot read is left out and
reported (``failed``, ``failed_items``); the others are written. Only deployers may invoke it (the guard and
the SCP sample deny everyone else: a hand-made stream batch would write made-up history).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from sessiongate import wiring
from sessiongate.errors import InvalidInput, TransientError
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    from sessiongate.history import Exporter

ROLE = "export"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build
MAX_BACKFILL_DAYS = 3660
MAX_REPORTED = 50


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deps: Exporter | None = None) -> dict[str, Any]:
    """``deps``: the exporter to use (tests, sandbox); by default the process-wide one."""
    exporter = deps or wiring.exporter()
    if "backfill" in event:
        since, until = _days(event["backfill"])
        done = exporter.backfill(since, until)
        return {
            "backfill": {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "written": len(done.keys),
                # Items that could not be read (left out, logged); the first MAX_REPORTED of their keys.
                "failed": len(done.failed),
                "failed_items": done.failed[:MAX_REPORTED],
            }
        }
    failed: list[str] = []

    def export(record: DynamoDBRecord) -> list[str]:
        if failed:
            raise TransientError(f"after the failed record {failed[0]}: left for the retry")
        try:
            return exporter.export(record.event_source_arn or "", record.raw_event["dynamodb"])
        except Exception:
            failed.append(str(record.dynamodb.sequence_number if record.dynamodb else "?"))
            raise

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=export, processor=processor, context=context)
    )


def _days(spec: Any) -> tuple[date, date]:
    """The backfill's range: ISO dates, ``since`` <= ``until``, at most MAX_BACKFILL_DAYS."""
    try:
        since, until = date.fromisoformat(str(spec["since"])), date.fromisoformat(str(spec["until"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidInput('backfill needs {"since": "YYYY-MM-DD", "until": "YYYY-MM-DD"}') from None
    if since > until or (until - since).days >= MAX_BACKFILL_DAYS:
        raise InvalidInput(f"backfill range must be since <= until, at most {MAX_BACKFILL_DAYS} days")
    return since, until
