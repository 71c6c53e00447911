"""EventBridge Scheduler: one-time ``at()`` schedules with deterministic names (idempotent)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sessiongate.adapters.aws import raises_service_failures
from sessiongate.core.revoke import REVOKE_PREFIX

START_PREFIX = "sg-start-"


def at_expression(when: datetime) -> str:
    """``at(yyyy-mm-ddThh:mm:ss)`` in UTC; Scheduler fires within a minute of it."""
    return "at(" + when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + ")"


@raises_service_failures
class Schedules:
    def __init__(self, scheduler: Any, *, group: str, role_arn: str, dlq_arn: str) -> None:
        self._scheduler = scheduler
        self._group = group
        self._role_arn = role_arn
        self._dlq_arn = dlq_arn

    def create_once(self, name: str, when: datetime, target_arn: str, payload: dict[str, Any]) -> bool:
        """Create the schedule; ``False`` when it exists already (a redelivery)."""
        try:
            self._scheduler.create_schedule(
                Name=name,
                GroupName=self._group,
                ScheduleExpression=at_expression(when),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Description="SessionGate: "
                + ("revoke access" if name.startswith(REVOKE_PREFIX) else "start grant"),
                Target={
                    "Arn": target_arn,
                    "RoleArn": self._role_arn,
                    "Input": json.dumps(payload, separators=(",", ":")),
                    "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
                    "DeadLetterConfig": {"Arn": self._dlq_arn},
                },
            )
        except self._scheduler.exceptions.ConflictException:
            return False
        return True

    def exists(self, name: str) -> bool:
        try:
            self._scheduler.get_schedule(Name=name, GroupName=self._group)
        except self._scheduler.exceptions.ResourceNotFoundException:
            return False
        return True

    def delete(self, name: str) -> bool:
        """Delete the schedule; ``False`` when it was gone already (fired, or deleted before)."""
        try:
            self._scheduler.delete_schedule(Name=name, GroupName=self._group)
        except self._scheduler.exceptions.ResourceNotFoundException:
            return False
        return True
