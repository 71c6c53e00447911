"""The Change Manager front door's change-request reader fake keeps the real adapter's answers: the same
assertions against ``tests/unit/fakes/change_manager.FakeChangeRequests`` and against
``adapters.change_requests.ChangeRequests`` over ``sandbox/fake_ssm.FakeSsm`` (SSM's change requests,
requests and responses checked against botocore's SSM model), on the same executions."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sandbox.fake_ssm import FakeSsm
from sessiongate.adapters.change_requests import PAGE_SIZE, ChangeRequests
from sessiongate.clock import ManualClock
from tests.unit.fakes.change_manager import (
    APPROVED_AT,
    EXECUTION_ID,
    OPS_ITEM,
    FakeChangeRequests,
    awaiting,
    change_request,
)

OTHER_ID = "0f0e0d0c-0b0a-4909-8807-060504030201"


class Ssm:
    """One side of the contract: where executions are stored, and the reader the front door uses."""

    def __init__(self, kind: str) -> None:
        self.clock = ManualClock(APPROVED_AT)
        if kind == "fake":
            self.fake = FakeChangeRequests(self.clock)
            self.reader: Any = self.fake
        else:
            self.ssm = FakeSsm(clock=self.clock)
            self.reader = ChangeRequests(self.ssm)
        self.kind = kind

    def add(self, record: dict[str, Any]) -> None:
        if self.kind == "fake":
            self.fake.add(record)
        else:
            self.ssm.add_execution(record)

    def lag(self, execution_id: str, shown: dict[str, Any], seconds: float) -> None:
        if self.kind == "fake":
            self.fake.lag(execution_id, shown, seconds)
        else:
            self.ssm.lagging[execution_id] = (shown, self.clock.now() + timedelta(seconds=seconds))


@pytest.fixture(params=["fake", "adapter"])
def ssm(request: pytest.FixtureRequest) -> Ssm:
    return Ssm(request.param)


def _other(**changes: Any) -> dict[str, Any]:
    record = change_request()
    record.update({"AutomationExecutionId": OTHER_ID, **changes})
    return record


def test_find_reads_the_one_change_request_of_an_ops_item_in_full(ssm: Ssm) -> None:
    record = change_request()
    ssm.add(record)
    found = ssm.reader.find(OPS_ITEM)
    assert found == record
    found["AutomationExecutionStatus"] = "Failed"  # a copy: the caller cannot change what SSM holds
    assert ssm.reader.find(OPS_ITEM) == record
    assert ssm.reader.find("oi-000000000000") is None


def test_find_answers_none_when_an_ops_item_has_two_change_requests(ssm: Ssm) -> None:
    ssm.add(change_request())
    ssm.add(_other())
    assert ssm.reader.find(OPS_ITEM) is None


def test_find_ignores_other_automations_and_other_ops_items(ssm: Ssm) -> None:
    plain = _other()
    del plain["AutomationSubtype"], plain["ChangeRequestName"]  # a plain automation on the same OpsItem
    ssm.add(plain)
    assert ssm.reader.find(OPS_ITEM) is None
    ssm.add(change_request())
    assert ssm.reader.find(OPS_ITEM)["AutomationExecutionId"] == EXECUTION_ID  # type: ignore[index]


def test_find_looks_past_the_first_page(ssm: Ssm) -> None:
    for n in range(PAGE_SIZE + 1):
        ssm.add(
            _other(AutomationExecutionId=f"{n:08d}-0000-4000-8000-000000000000", OpsItemId=f"oi-{n:012d}")
        )
    ssm.add(change_request())
    assert ssm.reader.find(OPS_ITEM)["AutomationExecutionId"] == EXECUTION_ID  # type: ignore[index]
    assert ssm.reader.find(f"oi-{PAGE_SIZE:012d}") is not None


def test_get_reads_an_execution_by_id_or_answers_none(ssm: Ssm) -> None:
    record = change_request()
    ssm.add(record)
    assert ssm.reader.get(EXECUTION_ID) == record
    assert ssm.reader.get(OTHER_ID) is None


@pytest.mark.parametrize("execution_id", ["", "abc", EXECUTION_ID + "0", "x" * 48])
def test_get_of_an_id_no_execution_can_have_is_none(ssm: Ssm, execution_id: str) -> None:
    """A Change Manager grant id is ``cm-<execution id>`` from an event: any id must read as "no such
    change request" (an origin_not_found denial), never as an error out of the grant."""
    ssm.add(change_request())
    assert ssm.reader.get(execution_id) is None


def test_an_approval_shown_late_is_shown_once_its_time_has_come(ssm: Ssm) -> None:
    record = change_request()
    ssm.add(record)
    ssm.lag(EXECUTION_ID, awaiting(record), seconds=10)
    assert ssm.reader.get(EXECUTION_ID)["AutomationExecutionStatus"] == "PendingApproval"  # type: ignore[index]
    assert ssm.reader.find(OPS_ITEM)["AutomationExecutionStatus"] == "PendingApproval"  # type: ignore[index]
    ssm.clock.advance(timedelta(seconds=10))
    assert ssm.reader.get(EXECUTION_ID) == record
    assert ssm.reader.find(OPS_ITEM) == copy.deepcopy(record)


def test_the_adapter_on_the_real_client_reads_a_malformed_id_as_no_execution() -> None:
    """botocore refuses an AutomationExecutionId that is not 36 characters before sending
    (ParamValidationError; SSM API Reference, GetAutomationExecution: "Fixed length of 36")."""
    with mock_aws():
        reader = ChangeRequests(boto3.client("ssm", region_name="us-east-1"))
        assert reader.get("abc") is None
        assert reader.get("x" * 48) is None
