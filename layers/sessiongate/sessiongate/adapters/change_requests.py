"""SSM Change Manager records: find the change request behind an OpsItem and read it in full."""

from __future__ import annotations

from typing import Any

# DescribeAutomationExecutions pages (its MaxResults is 1..50); a runaway NextToken loop stops here.
PAGE_SIZE = 50
MAX_PAGES = 20
# An AutomationExecutionId has a fixed length of 36 (SSM API Reference, GetAutomationExecution);
# botocore refuses any other length before sending (ParamValidationError).
EXECUTION_ID_LENGTH = 36


class ChangeRequests:
    def __init__(self, ssm: Any) -> None:
        self._ssm = ssm

    def find(self, ops_item_id: str) -> dict[str, Any] | None:
        """The change request execution of ``ops_item_id`` (``GetAutomationExecution``), or ``None``.

        Asks SSM for change requests only (filter ``AutomationSubtype=ChangeRequest``, a filter key of
        botocore's ``AutomationExecutionFilterKey``) and reads every page (``NextToken``), so another
        automation linked to the same OpsItem can neither hide the change request nor be taken for it.
        """
        ids: list[str] = []
        params: dict[str, Any] = {
            "Filters": [
                {"Key": "OpsItemId", "Values": [ops_item_id]},
                {"Key": "AutomationSubtype", "Values": ["ChangeRequest"]},
            ],
            "MaxResults": PAGE_SIZE,
        }
        for _ in range(MAX_PAGES):
            page = self._ssm.describe_automation_executions(**params)
            ids += [
                m["AutomationExecutionId"]
                for m in page.get("AutomationExecutionMetadataList", [])
                if m.get("AutomationSubtype") == "ChangeRequest"
                and m.get("OpsItemId", ops_item_id) == ops_item_id
                and m["AutomationExecutionId"] not in ids
            ]
            token = page.get("NextToken")
            if not token:
                break
            params["NextToken"] = token
        else:
            return None  # more pages than any OpsItem should have: cannot tell it is the only one
        if len(ids) != 1:
            return None
        execution = self._ssm.get_automation_execution(AutomationExecutionId=ids[0])["AutomationExecution"]
        return execution  # type: ignore[no-any-return]

    def get(self, execution_id: str) -> dict[str, Any] | None:
        """The execution ``execution_id`` (``GetAutomationExecution``); ``None`` when there is none, also
        for an id no execution can have (it comes from an event: a denial, not an error)."""
        if len(execution_id) != EXECUTION_ID_LENGTH:
            return None
        try:
            response = self._ssm.get_automation_execution(AutomationExecutionId=execution_id)
        except self._ssm.exceptions.AutomationExecutionNotFoundException:
            return None
        return response["AutomationExecution"]  # type: ignore[no-any-return]
