"""SNS fan-out of lifecycle events and operational alerts. ``publish`` never raises: it answers ``False``
when the notification was lost (the stream consumer then fails the record, so it is retried)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.adapters.aws import raises_service_failures
from sessiongate.core.notifications import render
from sessiongate.observability import logger, metrics


@raises_service_failures
class Notifier:
    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def publish(
        self, event_type: str, payload: Mapping[str, Any], *, subject: str, event_id: str | None = None
    ) -> bool:
        """``event_id``: the lifecycle event's deterministic id (a message attribute), by which
        subscribers drop the repeats at-least-once stream delivery can cause (:mod:`sessiongate.outbox`)."""
        attributes = {"event_type": event_type}
        if event_id:
            attributes["event_id"] = event_id
        for name in ("instance_id", "principal_arn", "account"):
            value = payload.get(name)
            if isinstance(value, str) and value:
                attributes[name] = value
        try:
            self._sns.publish(
                TopicArn=self._topic_arn,
                Subject=subject[:100],
                MessageStructure="json",
                Message=json.dumps(render(event_type, payload)),
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
        except (ClientError, BotoCoreError):
            # Audit lives in the ledger and the logs; the notification is best effort.
            logger().exception("notification failed", extra={"event_type": event_type})
            metrics().add("NotificationFailures")
            return False
        return True
