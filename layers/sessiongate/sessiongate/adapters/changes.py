"""SSM Change Manager records: find the change request behind an OpsItem and read it in full."""

from __future__ import annotations

from typing import Any


class ChangeRequests:
    def __init__(self, ssm: Any) -> None:
        self._ssm = ssm

    def find(self, ops_item_id: str) -> dict[str, Any] | None:
        """The change request execution of ``ops_item_id`` (``GetAutomationExecution``), or ``None``."""
        metas = self._ssm.describe_automation_executions(
            Filters=[{"Key": "OpsItemId", "Values": [ops_item_id]}]
        ).get("AutomationExecutionMetadataList", [])
        ids = [
            m["AutomationExecutionId"]
            for m in metas
            if m.get("AutomationSubtype") == "ChangeRequest"
            and m.get("OpsItemId", ops_item_id) == ops_item_id
        ]
        if len(ids) != 1:
            return None
        execution = self._ssm.get_automation_execution(AutomationExecutionId=ids[0])["AutomationExecution"]
        return execution  # type: ignore[no-any-return]

    def get(self, execution_id: str) -> dict[str, Any] | None:
        try:
            response = self._ssm.get_automation_execution(AutomationExecutionId=execution_id)
        except self._ssm.exceptions.AutomationExecutionNotFoundException:
            return None
        return response["AutomationExecution"]  # type: ignore[no-any-return]
