"""In-memory fakes of the Change Manager front door's ports, and SSM-shaped change request records.

Records are built the way ``GetAutomationExecution`` returns them (timestamps as aware datetimes,
parameters as lists of strings, ``ApproverDecisions`` as JSON text) and are checked against botocore's
SSM service model when a fake stores them.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sessiongate.change_manager.adapter import ChangeRequestAdapter
from sessiongate.change_manager.verifier import ChangeManagerVerifier
from sessiongate.clock import ManualClock
from sessiongate.core.model import AccessApproved, Denial, Grant, Outcome
from sessiongate.core.ports import AccountAdapters, AccountNotAllowed
from sessiongate.errors import InvalidInput
from sessiongate.settings import Settings
from tests.unit.fakes.core import FakeDirectory as FakeIam
from tests.unit.fakes.core import FakeInventory

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "sessiongate-test"
TEMPLATE = "AllowSsmSessionStartTemplate"
APPROVER_GROUP = "SessionGateApprovers"
OPS_ITEM = "oi-0123456789ab"
EXECUTION_ID = "d0585556-80f6-4522-8dad-dada6d45b67d"
GRANT_ID = f"cm-{EXECUTION_ID}"
INSTANCE = "i-0a1b2c3d4e5f60718"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"
MALLORY = f"arn:aws:iam::{ACCOUNT}:user/mallory"
# The sample events' time (events/change_request_approved.json): bob approved then.
APPROVED_AT = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
EVENTS = Path(__file__).resolve().parents[3] / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample event of ``events/`` (a fresh copy each time)."""
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def settings(**overrides: Any) -> Settings:
    """The stack's settings as template.yaml's defaults make them (approver: the IAM group)."""
    base: dict[str, Any] = {
        "account_id": ACCOUNT,
        "table_name": f"{STACK}-grants",
        "event_bus_name": f"{STACK}-bus",
        "schedule_group": STACK,
        "adapter_target_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-adapt-change-request",
        "approver_name": APPROVER_GROUP,
        "approver_type": "IamGroup",
    }
    return Settings(**{**base, **overrides})


def decision(approver: str, verdict: str = "Approve", at: datetime = APPROVED_AT) -> str:
    """One ``ApproverDecisions`` entry, JSON text as SSM records it."""
    return json.dumps(
        {"Approver": approver, "Decision": verdict, "ApprovalDecisionTime": at.isoformat(), "Comment": "ok"}
    )


def change_request(
    *,
    status: str = "Success",
    approval: str = "Approved",
    approvers: Collection[str] = (BOB,),
    decisions: list[str] | None = None,
    requester: str = ALICE,
    approved_at: datetime = APPROVED_AT,
    scheduled: datetime | None = None,
    parameters: Mapping[str, list[str]] | None = None,
    name: str = f"Shell on {INSTANCE} for alice",
) -> dict[str, Any]:
    """A ``GetAutomationExecution`` ``AutomationExecution`` of a change request for alice's shell on
    :data:`INSTANCE`, approved by ``approvers`` (the sample of ``events/access_approved.json``)."""
    step = {
        "StepName": "ApproveSessionAccess",
        "Action": "aws:approve",
        "StepStatus": "Success",
        "ExecutionStartTime": approved_at - timedelta(minutes=5),
        "ExecutionEndTime": approved_at,
        "Outputs": {
            "ApprovalStatus": [approval],
            "ApproverDecisions": [decision(a) for a in approvers] if decisions is None else decisions,
        },
    }
    record: dict[str, Any] = {
        "AutomationExecutionId": EXECUTION_ID,
        "DocumentName": TEMPLATE,
        "DocumentVersion": "1",
        "AutomationExecutionStatus": status,
        "AutomationSubtype": "ChangeRequest",
        "ExecutedBy": requester,
        "OpsItemId": OPS_ITEM,
        "ChangeRequestName": name,
        "ExecutionStartTime": approved_at - timedelta(minutes=5),
        "StepExecutions": [step],
        "Runbooks": [
            {
                "DocumentName": "AllowSsmSessionStartRunbook",
                "DocumentVersion": "$DEFAULT",
                "Parameters": dict(
                    parameters
                    if parameters is not None
                    else {
                        "InstanceId": [INSTANCE],
                        "PrincipalType": ["User"],
                        "PrincipalName": ["alice"],
                        "ValidityMinutes": ["10"],
                    }
                ),
            }
        ],
    }
    if scheduled is not None:
        record["ScheduledTime"] = scheduled
    return record


def awaiting(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as SSM shows it before anyone approved: PendingApproval, the approval step Waiting."""
    pending = copy.deepcopy(dict(record))
    pending["AutomationExecutionStatus"] = "PendingApproval"
    step = pending["StepExecutions"][0]
    step.update(StepStatus="Waiting", Outputs={})
    del step["ExecutionEndTime"]
    return pending


# -- botocore's SSM model: the records are what the real service can return ------------------------
@functools.cache
def _automation_execution_shape() -> Any:
    import botocore.session  # only when a record is checked: loading the model costs ~0.2 s

    model = botocore.session.get_session().get_service_model("ssm")
    return model.operation_model("GetAutomationExecution").output_shape.members["AutomationExecution"]


def model_problems(value: Any, shape: Any = None, path: str = "AutomationExecution") -> list[str]:
    """Where ``value`` does not fit botocore's shape (members, types, enums, string lengths)."""
    shape = shape or _automation_execution_shape()
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, Mapping):
            return [f"{path}: not a structure"]
        unknown = [f"{path}.{k}: not in the model" for k in value if k not in shape.members]
        return unknown + [
            p
            for k, v in value.items()
            if k in shape.members
            for p in model_problems(v, shape.members[k], f"{path}.{k}")
        ]
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [p for i, v in enumerate(value) for p in model_problems(v, shape.member, f"{path}[{i}]")]
    if kind == "map":
        if not isinstance(value, Mapping):
            return [f"{path}: not a map"]
        return [p for k, v in value.items() for p in model_problems(v, shape.value, f"{path}.{k}")]
    if kind == "timestamp":
        return [] if isinstance(value, datetime) and value.tzinfo else [f"{path}: not an aware datetime"]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: not a string"]
        if shape.enum and value not in shape.enum:
            return [f"{path}: {value!r} is not one of the enum"]
        low, high = shape.metadata.get("min", 0), shape.metadata.get("max", 1 << 31)
        return [] if low <= len(value) <= high else [f"{path}: length {len(value)} outside {low}..{high}"]
    return [] if isinstance(value, (bool, int)) else [f"{path}: not a {kind}"]


# -- the ports ---------------------------------------------------------------------------------------
class FakeChangeRequests:
    """SSM's change requests (the ``ChangeRequestReader`` port, as ``adapters.change_requests`` reads them).

    ``lag(id, shown, until)``: SSM shows ``shown`` instead of the stored record until the clock passes
    ``until`` (GetAutomationExecution is eventually consistent: an approval shows a little late).
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.records: dict[str, dict[str, Any]] = {}
        self.lagging: dict[str, tuple[dict[str, Any], datetime]] = {}
        self.calls: list[str] = []

    def add(self, record: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
        """Store ``record``; ``check=False`` for a record SSM would never return (defence tests)."""
        problems = model_problems(record) if check else []
        assert not problems, problems
        self.records[str(record["AutomationExecutionId"])] = record
        return record

    def lag(self, execution_id: str, shown: dict[str, Any], seconds: float) -> None:
        assert not model_problems(shown)
        self.lagging[execution_id] = (shown, self.clock.now() + timedelta(seconds=seconds))

    def _shown(self, execution_id: str) -> dict[str, Any]:
        shown, until = self.lagging.get(execution_id, (self.records[execution_id], self.clock.now()))
        return copy.deepcopy(shown if self.clock.now() < until else self.records[execution_id])

    def find(self, ops_item_id: str) -> dict[str, Any] | None:
        self.calls.append("find")
        ids = [
            i
            for i, r in self.records.items()
            if r.get("OpsItemId") == ops_item_id and r.get("AutomationSubtype") == "ChangeRequest"
        ]
        return self._shown(ids[0]) if len(ids) == 1 else None

    def get(self, execution_id: str) -> dict[str, Any] | None:
        self.calls.append("get")
        return self._shown(execution_id) if execution_id in self.records else None


class FakeBus:
    """SessionGate's event bus (the ``ApprovalBus`` port): what was put on it."""

    def __init__(self) -> None:
        self.emitted: list[AccessApproved] = []

    def emit_approved(self, request: AccessApproved) -> None:
        json.dumps(request.to_detail())  # PutEvents' Detail is JSON text
        self.emitted.append(request)


# EventBridge Scheduler's CreateSchedule: Name [0-9a-zA-Z-_.]+, 1..64 characters (botocore's model).
SCHEDULE_NAME_RE = re.compile(r"^[0-9a-zA-Z\-_.]{1,64}$")


class FakeSchedules:
    """One-time schedules (the ``StartSchedules`` port): a name exists once (ConflictException)."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[datetime, str, dict[str, Any]]] = {}

    def create_once(self, name: str, when: datetime, target_arn: str, payload: dict[str, Any]) -> bool:
        assert SCHEDULE_NAME_RE.fullmatch(name), name
        assert when.tzinfo is not None
        json.dumps(payload)  # the target's Input is JSON text
        if name in self.created:
            return False
        self.created[name] = (when, target_arn, payload)
        return True


class FakeDirectory:
    """IAM groups (the ``GroupDirectory`` port): lower-case user names; none for a missing group."""

    def __init__(self, groups: Mapping[str, Collection[str]] | None = None) -> None:
        self.groups = {g: {u.lower() for u in users} for g, users in (groups or {}).items()}

    def group_user_names(self, group: str) -> frozenset[str]:
        return frozenset(self.groups.get(group, ()))


class FakeRecorder:
    """The engine's ``reject``/``deny_new`` (the ``DenialRecorder`` port), with the same outcomes."""

    def __init__(self) -> None:
        self.rejected: list[InvalidInput] = []
        self.denied: dict[str, tuple[Grant, list[Denial]]] = {}

    def reject(self, what: str, exc: InvalidInput) -> Outcome:
        assert what == "ChangeRequest"
        self.rejected.append(exc)
        return Outcome("rejected", None, {"problem": str(exc), "field": exc.field})

    def deny_new(self, record: Grant, denials: list[Denial]) -> Outcome:
        if record.grant_id in self.denied:
            return Outcome("duplicate", record.grant_id)
        self.denied[record.grant_id] = (record, denials)
        return Outcome("denied", record.grant_id, {"denials": [d.as_dict() for d in denials]})


class FakeTargets:
    """The engine's ``adapters_in`` (the ``TargetAccounts`` port): this account's inventory (INSTANCE is
    a managed node), any other account not allowed, as ``Context.adapters_in`` without members."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.inventory = FakeInventory()
        self.inventory.add(INSTANCE)

    def adapters_in(self, account: str) -> AccountAdapters:
        if account != self.account:
            raise AccountNotAllowed(account)
        return AccountAdapters(FakeIam(), self.inventory, None)


@dataclass
class FrontDoor:
    """The Change Manager front door on fakes; the clock starts when the sample was approved."""

    settings: Settings = field(default_factory=settings)
    clock: ManualClock = field(default_factory=lambda: ManualClock(APPROVED_AT))
    bus: FakeBus = field(default_factory=FakeBus)
    schedules: FakeSchedules = field(default_factory=FakeSchedules)
    directory: FakeDirectory = field(default_factory=lambda: FakeDirectory({APPROVER_GROUP: ["bob"]}))
    recorder: FakeRecorder = field(default_factory=FakeRecorder)
    changes: FakeChangeRequests = field(init=False)
    targets: FakeTargets = field(init=False)

    def __post_init__(self) -> None:
        self.changes = FakeChangeRequests(self.clock)
        self.targets = FakeTargets(self.settings.account_id)

    def adapter(self) -> ChangeRequestAdapter:
        return ChangeRequestAdapter(
            settings=self.settings,
            changes=self.changes,
            bus=self.bus,
            schedules=self.schedules,
            directory=self.directory,
            clock=self.clock,
            recorder=self.recorder,
            targets=self.targets,
        )

    def verifier(self) -> ChangeManagerVerifier:
        return ChangeManagerVerifier(self.changes, self.settings, self.clock, self.directory)
