"""A thin fake of the SSM APIs moto lacks (change requests, automation executions, managed nodes).

Requests are validated against botocore's input shapes and responses against its output shapes, so the
fake cannot drift from the real API's request/response structure.
"""

from __future__ import annotations

import copy
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
    class AutomationExecutionNotFoundException(ClientError):
        pass


class FakeSsm:
    """Holds change request executions and managed nodes; answers like the SSM client."""

    exceptions = _Exceptions

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}
        self.managed: set[str] = set()
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
