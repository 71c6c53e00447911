"""A thin fake of the SSM APIs moto lacks (change requests, automation executions, managed nodes).

Requests are validated against botocore's input shapes and responses against its output shapes, so the
fake cannot drift from the real API's request/response structure.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime
from typing import Any

import botocore.session
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from botocore.validate import ParamValidator

_MODEL = botocore.session.get_session().get_service_model("ssm")


def check_output(shape: Shape, value: Any, path: str = "") -> None:
    """Raise AssertionError when ``value`` does not fit botocore output ``shape``."""
    if isinstance(shape, StructureShape):
        assert isinstance(value, dict), f"{path}: expected object"
        for key, sub in value.items():
            assert key in shape.members, f"{path}.{key}: not a member of {shape.name}"
            check_output(shape.members[key], sub, f"{path}.{key}")
    elif isinstance(shape, ListShape):
        assert isinstance(value, list), f"{path}: expected list"
        for i, item in enumerate(value):
            check_output(shape.member, item, f"{path}[{i}]")
    elif isinstance(shape, MapShape):
        assert isinstance(value, dict), f"{path}: expected map"
        for key, sub in value.items():
            check_output(shape.value, sub, f"{path}[{key}]")
    elif shape.type_name == "string":
        assert isinstance(value, str), f"{path}: expected string"
        if shape.enum:
            assert value in shape.enum, f"{path}: {value!r} not in {shape.enum}"
    elif shape.type_name == "timestamp":
        assert isinstance(value, datetime), f"{path}: expected datetime"
    elif shape.type_name == "boolean":
        assert isinstance(value, bool), f"{path}: expected bool"
    elif shape.type_name in ("integer", "long"):
        assert isinstance(value, int), f"{path}: expected int"


class _Exceptions:
    class AutomationExecutionNotFoundException(ClientError):  # type: ignore[misc]
        pass


class _WithFallback(_Exceptions):
    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


class FakeSsm:
    """Holds change request executions and managed nodes; answers like the SSM client.

    Any other SSM operation (parameters, which moto emulates) goes to ``fallback``, a moto SSM client,
    when one is given.
    """

    exceptions = _Exceptions

    def __init__(self, fallback: Any = None) -> None:
        self.fallback: Any = None
        if fallback is not None:
            self.attach(fallback)
        self.documents: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.managed: set[str] = set()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.session_tags: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []

    # -- API --------------------------------------------------------------------------------
    def describe_instance_information(self, **params: Any) -> dict[str, Any]:
        self._validate("DescribeInstanceInformation", params)
        wanted = {v for f in params.get("Filters", []) if f["Key"] == "InstanceIds" for v in f["Values"]}
        items = [
            {"InstanceId": i, "PingStatus": "Online", "ResourceType": "EC2Instance"}
            for i in sorted(self.managed)
            if not wanted or i in wanted
        ]
        return self._respond("DescribeInstanceInformation", {"InstanceInformationList": items})

    def describe_automation_executions(self, **params: Any) -> dict[str, Any]:
        self._validate("DescribeAutomationExecutions", params)
        ops = {v for f in params.get("Filters", []) if f["Key"] == "OpsItemId" for v in f["Values"]}
        metas = []
        for execution in self.executions.values():
            if ops and execution.get("OpsItemId") not in ops:
                continue
            metas.append(
                {
                    k: execution[k]
                    for k in (
                        "AutomationExecutionId",
                        "DocumentName",
                        "AutomationExecutionStatus",
                        "ExecutedBy",
                        "AutomationSubtype",
                        "OpsItemId",
                        "ChangeRequestName",
                        "ScheduledTime",
                        "Runbooks",
                    )
                    if k in execution
                }
            )
        return self._respond("DescribeAutomationExecutions", {"AutomationExecutionMetadataList": metas})

    def get_automation_execution(self, **params: Any) -> dict[str, Any]:
        self._validate("GetAutomationExecution", params)
        execution = self.executions.get(params["AutomationExecutionId"])
        if execution is None:
            raise _Exceptions.AutomationExecutionNotFoundException(
                {"Error": {"Code": "AutomationExecutionNotFoundException", "Message": "not found"}},
                "GetAutomationExecution",
            )
        return self._respond("GetAutomationExecution", {"AutomationExecution": copy.deepcopy(execution)})

    # -- Session Manager -------------------------------------------------------------------------
    def open_session(self, *, owner_arn: str, user_id: str, target: str, now: datetime) -> str:
        """A session as StartSession creates it (owner = caller ARN, ``user_id`` = its ``aws:userid``).

        Ids are the caller's name, ``-``, then 17 hex characters: an IAM user's user name
        (``<aws:username>-<hex>``), a role session's role session name (what follows the colon of its
        ``aws:userid``), never the ``aws:userid`` itself ("Step 3: Control session access to managed
        nodes", About session ID ARN formats: ``JohnDoe-1a2b3c4d5eEXAMPLE``). Session Manager tags the
        session ``aws:ssmmessages:session-id`` = the caller's ``aws:userid`` and
        ``aws:ssmmessages:target-id`` = the target ("Additional sample IAM policies for Session Manager",
        Example 4, method 2); :meth:`resource_tags` gives them to the sandbox's policy evaluation.
        """
        prefix = owner_arn.rsplit("/", 1)[-1] if ":user/" in owner_arn else user_id.split(":")[-1]
        session_id = f"{prefix}-{uuid.uuid4().hex[:17]}"
        self.sessions[session_id] = {
            "SessionId": session_id,
            "Target": target,
            "Status": "Connected",
            "StartDate": now,
            "DocumentName": "SSM-SessionManagerRunShell",
            "Owner": owner_arn,
        }
        self.session_tags[session_id] = {
            "aws:ssmmessages:session-id": user_id,
            "aws:ssmmessages:target-id": target,
        }
        return session_id

    def resource_tags(self, session_id: str) -> dict[str, str]:
        """The tags Session Manager put on a session (not part of the DescribeSessions output)."""
        return dict(self.session_tags.get(session_id, {}))

    def describe_sessions(self, **params: Any) -> dict[str, Any]:
        self._validate("DescribeSessions", params)
        active = params["State"] == "Active"
        wanted = {f["key"]: f["value"] for f in params.get("Filters", [])}
        found = [
            copy.deepcopy(s)
            for s in self.sessions.values()
            if (s["Status"] in ("Connected", "Connecting")) == active
            and all(s.get(k) == v for k, v in wanted.items() if k in ("Target", "Owner"))
        ]
        return self._respond("DescribeSessions", {"Sessions": found})

    def terminate_session(self, **params: Any) -> dict[str, Any]:
        self._validate("TerminateSession", params)
        session = self.sessions.get(params["SessionId"])
        if session is not None:
            session["Status"] = "Terminated"
        return self._respond("TerminateSession", {"SessionId": params["SessionId"]})

    # -- Change Manager: what the console / CLI and approvers do -------------------------------
    def start_change_request_execution(
        self, *, requester_arn: str, now: datetime, **params: Any
    ) -> dict[str, Any]:
        """StartChangeRequestExecution as ``requester_arn`` (the signer, which SSM records as ExecutedBy)."""
        self._validate("StartChangeRequestExecution", params)
        template = self.documents.get(params["DocumentName"])
        if template is None or template.get("type") != "Automation.ChangeTemplate":
            raise ClientError(
                {
                    "Error": {
                        "Code": "InvalidDocument",
                        "Message": f"{params['DocumentName']} is not a change template",
                    }
                },
                "StartChangeRequestExecution",
            )
        runbooks = params["Runbooks"]
        allowed = {r["name"] for r in template["content"].get("executableRunBooks", [])}
        if len(runbooks) != 1 or runbooks[0]["DocumentName"] not in allowed:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "runbook not allowed by the template"}},
                "StartChangeRequestExecution",
            )
        execution_id = str(uuid.uuid4())
        steps = []
        for step in template["content"]["mainSteps"]:
            if step["action"] == "aws:approve":
                steps.append(
                    {
                        "StepName": step["name"],
                        "Action": "aws:approve",
                        "StepStatus": "Waiting",
                        "ExecutionStartTime": now,
                        "Outputs": {},
                    }
                )
        execution: dict[str, Any] = {
            "AutomationExecutionId": execution_id,
            "DocumentName": params["DocumentName"],
            "DocumentVersion": "1",
            "AutomationExecutionStatus": "PendingApproval",
            "AutomationSubtype": "ChangeRequest",
            "ExecutedBy": requester_arn,
            "OpsItemId": "oi-" + uuid.uuid4().hex[:12],
            "ChangeRequestName": params.get("ChangeRequestName", ""),
            "ExecutionStartTime": now,
            "StepExecutions": steps,
            "Runbooks": [
                {k: v for k, v in rb.items() if k in ("DocumentName", "DocumentVersion", "Parameters")}
                for rb in runbooks
            ],
        }
        if "ScheduledTime" in params:
            execution["ScheduledTime"] = params["ScheduledTime"]
        self.add_execution(execution)
        return self._respond("StartChangeRequestExecution", {"AutomationExecutionId": execution_id})

    def send_automation_signal(self, *, signer_arn: str, now: datetime, **params: Any) -> str:
        """SendAutomationSignal Approve/Reject as ``signer_arn``; returns the new change request status.

        Like Change Manager, this fake does not stop a requester from approving their own request
        (AWS does not document that it does): SessionGate must catch that itself.
        """
        self._validate("SendAutomationSignal", params)
        execution = self.executions[params["AutomationExecutionId"]]
        waiting = [s for s in execution["StepExecutions"] if s["StepStatus"] == "Waiting"]
        if execution["AutomationExecutionStatus"] != "PendingApproval" or not waiting:
            raise ClientError(
                {"Error": {"Code": "InvalidAutomationSignalException", "Message": "not awaiting approval"}},
                "SendAutomationSignal",
            )
        step = waiting[0]
        decision = "Approve" if params["SignalType"] == "Approve" else "Reject"
        comment = (params.get("Payload") or {}).get("Comment", [""])[0]
        step["Outputs"] = {
            "ApprovalStatus": ["Approved" if decision == "Approve" else "Rejected"],
            "ApproverDecisions": [
                json.dumps(
                    {
                        "Approver": signer_arn,
                        "Decision": decision,
                        "ApprovalDecisionTime": now.isoformat(),
                        "Comment": comment,
                    }
                )
            ],
        }
        step["StepStatus"] = "Success" if decision == "Approve" else "Failed"
        step["ExecutionEndTime"] = now
        if decision == "Reject":
            execution["AutomationExecutionStatus"] = "Rejected"
        elif not [s for s in execution["StepExecutions"] if s["StepStatus"] == "Waiting"]:
            scheduled = execution.get("ScheduledTime")
            execution["AutomationExecutionStatus"] = (
                "Scheduled" if scheduled and scheduled > now else "Approved"
            )
        check_output(_MODEL.shape_for("AutomationExecution"), execution, "AutomationExecution")
        return str(execution["AutomationExecutionStatus"])

    def status_event(self, execution_id: str, *, account: str, region: str, now: datetime) -> dict[str, Any]:
        """The ``Change Request Status Update`` event Change Manager publishes (documented shape)."""
        execution = self.executions[execution_id]
        status = {"Scheduled": "Approved", "PendingApproval": "Open"}.get(
            execution["AutomationExecutionStatus"], execution["AutomationExecutionStatus"]
        )
        runbook = execution["Runbooks"][0]["DocumentName"]
        return {
            "Source": "aws.ssm",
            "DetailType": "Change Request Status Update",
            "Resources": [
                f"arn:aws:ssm:{region}:{account}:opsitem/{execution['OpsItemId']}",
                f"arn:aws:ssm:{region}:{account}:document/{runbook}",
            ],
            "Detail": json.dumps(
                {
                    "change-request-id": execution_id,
                    "change-request-title": execution.get("ChangeRequestName", ""),
                    "ops-item-id": execution["OpsItemId"],
                    "ops-item-created-by": execution["ExecutedBy"],
                    "ops-item-created-time": execution["ExecutionStartTime"].isoformat(),
                    "ops-item-modified-by": execution["ExecutedBy"],
                    "ops-item-modified-time": now.isoformat(),
                    "ops-item-status": status,
                    "change-template-document-name": execution["DocumentName"],
                    "runbook-document-arn": f"arn:aws:ssm:{region}:{account}:document/{runbook}",
                    "runbook-document-version": "1",
                    "auto-approve": False,
                    "approvers": [],
                }
            ),
        }

    def attach(self, fallback: Any) -> None:
        """Send the operations this fake does not serve to ``fallback`` (a moto SSM client)."""
        self.fallback = fallback
        # One namespace for both: the fake's own errors plus moto's (ParameterNotFound, ...).
        self.exceptions = _WithFallback(fallback.exceptions)  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        fallback = self.__dict__.get("fallback")
        if fallback is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(fallback, name)

    # -- helpers ----------------------------------------------------------------------------
    def add_execution(self, execution: dict[str, Any]) -> None:
        check_output(_MODEL.shape_for("AutomationExecution"), execution, "AutomationExecution")
        self.executions[execution["AutomationExecutionId"]] = execution

    def _validate(self, operation: str, params: dict[str, Any]) -> None:
        self.calls.append(operation)
        report = ParamValidator().validate(params, _MODEL.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()

    def _respond(self, operation: str, response: dict[str, Any]) -> dict[str, Any]:
        check_output(_MODEL.operation_model(operation).output_shape, response, operation)
        return response
