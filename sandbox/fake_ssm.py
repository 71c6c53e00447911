"""A thin fake of the SSM APIs moto lacks (change requests, automation executions, managed nodes).

Requests are validated against botocore's input shapes and responses against its output shapes, so the
fake cannot drift from the real API's request/response structure. It raises only errors the model
declares for the operation (tests/integration/test_fake_ssm.py lists, per operation, every declared error and
the situation the fake raises it in, or why it never does), and its approval steps accept only the
change template's approvers.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

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


# The SSM errors this fake raises (each declared by botocore's model for the operation that raises it;
# ``_error`` checks that). Only these shadow the fallback's classes, so moto's own errors
# (ParameterNotFound, ...) keep theirs.
RAISED_ERRORS = (
    "AutomationDefinitionNotApprovedException",
    "AutomationDefinitionNotFoundException",
    "AutomationDefinitionVersionNotFoundException",
    "AutomationExecutionNotFoundException",
    "IdempotentParameterMismatch",
    "InvalidAutomationExecutionParametersException",
    "InvalidAutomationSignalException",
    "InvalidDocument",
    "InvalidDocumentVersion",
    "InvalidFilterKey",
    "InvalidFilterValue",
    "InvalidInstanceId",
    "InvalidNextToken",
)
# Filter keys the fake implements, per operation; any other key of the model's enum is refused loudly
# (AssertionError: the fake would otherwise answer as if the filter matched everything).
_AUTOMATION_FILTERS = {
    "OpsItemId",
    "AutomationSubtype",
    "ExecutionId",
    "ExecutionStatus",
    "DocumentNamePrefix",
}
_SESSION_FILTERS = {"Target", "Owner", "Status", "SessionId", "InvokedAfter", "InvokedBefore"}
# The timestamp filters of DescribeSessions compare a session's StartDate ("InvokedAfter: ... sessions
# that started August 29, 2024, and later"; "InvokedBefore: ... that started before", botocore's model).
_STARTED = {"InvokedAfter", "InvokedBefore"}
# Identity Center role names (their session name is the IdC user name).
_SSO_ROLE_PREFIX = "AWSReservedSSO_"


class _Exceptions:
    """``client.exceptions`` of the fake: one ClientError subclass per error in RAISED_ERRORS."""


for _name in RAISED_ERRORS:
    setattr(_Exceptions, _name, type(_name, (ClientError,), {}))


class _WithFallback(_Exceptions):
    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


class FakeSsm:
    """Holds change request executions and managed nodes; answers like the SSM client.

    Any other SSM operation (parameters, which moto emulates) goes to ``fallback``, a moto SSM client,
    when one is given. ``clock`` (needed for an approval that SSM shows late) and ``group_members``
    (IAM group name -> member user ARNs, for IamGroup approvers) come from the world around it.
    """

    exceptions = _Exceptions

    def __init__(
        self,
        fallback: Any = None,
        *,
        clock: Any = None,
        group_members: Callable[[str], set[str]] | None = None,
    ) -> None:
        self.fallback: Any = None
        if fallback is not None:
            self.attach(fallback)
        self.clock = clock
        self.group_members = group_members
        self.documents: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        # What reads show of an execution until a time (an approval SSM shows late): id -> (record, until).
        self.lagging: dict[str, tuple[dict[str, Any], datetime]] = {}
        self.managed: set[str] = set()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.session_tags: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []
        self._client_tokens: dict[str, tuple[str, dict[str, Any]]] = {}
        # Per execution and approval step: the step's approval rule and every decision so far.
        self._approvals: dict[str, dict[str, dict[str, Any]]] = {}

    # -- API --------------------------------------------------------------------------------
    def describe_instance_information(self, **params: Any) -> dict[str, Any]:
        op = "DescribeInstanceInformation"
        self._validate(op, params)
        assert "InstanceInformationFilterList" not in params, "the fake implements Filters only"
        wanted: set[str] = set()
        for f in params.get("Filters", []):
            if f["Key"] != "InstanceIds":
                known = [*_MODEL.shape_for("InstanceInformationFilterKey").enum, "tag-key"]
                if f["Key"] in known or f["Key"].startswith("tag:"):
                    raise AssertionError(f"the fake does not implement the {f['Key']} filter")
                self._error(op, "InvalidFilterKey", f"{f['Key']} is not a valid filter key")
            wanted |= set(f["Values"])
        # "InvalidInstanceId": an instance whose SSM Agent never registered is not a managed node, and
        # naming it in the InstanceIds filter is refused (botocore SSM model, error InvalidInstanceId).
        unknown = sorted(wanted - self.managed)
        if unknown:
            self._error(op, "InvalidInstanceId", f"Instances {unknown} not in a valid state for account")
        items = [
            {"InstanceId": i, "PingStatus": "Online", "ResourceType": "EC2Instance"}
            for i in sorted(self.managed)
            if not wanted or i in wanted
        ]
        page, token = self._page(op, items, params, default=50)
        return self._respond(op, {"InstanceInformationList": page, **token})

    def describe_automation_executions(self, **params: Any) -> dict[str, Any]:
        op = "DescribeAutomationExecutions"
        self._validate(op, params)
        filters: dict[str, set[str]] = {}
        for f in params.get("Filters", []):
            key = f["Key"]
            if key not in _MODEL.shape_for("AutomationExecutionFilterKey").enum:
                self._error(op, "InvalidFilterKey", f"{key} is not a valid filter key")
            assert key in _AUTOMATION_FILTERS, f"the fake does not implement the {key} filter"
            enum = {
                "AutomationSubtype": _MODEL.shape_for("AutomationSubtype").enum,
                "ExecutionStatus": _MODEL.shape_for("AutomationExecutionStatus").enum,
            }.get(key)
            if enum is not None and not set(f["Values"]) <= set(enum):
                self._error(op, "InvalidFilterValue", f"invalid value for {key}: {f['Values']}")
            filters[key] = set(f["Values"])
        fields = {
            "OpsItemId": "OpsItemId",
            "AutomationSubtype": "AutomationSubtype",
            "ExecutionId": "AutomationExecutionId",
            "ExecutionStatus": "AutomationExecutionStatus",
        }
        metas = []
        for execution in (self._seen(e) for e in list(self.executions)):
            if any(
                str(execution.get(field)) not in filters[key]
                for key, field in fields.items()
                if key in filters
            ):
                continue
            prefixes = filters.get("DocumentNamePrefix")
            if prefixes and not any(execution["DocumentName"].startswith(p) for p in prefixes):
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
        page, token = self._page(op, metas, params, default=50)
        return self._respond(op, {"AutomationExecutionMetadataList": page, **token})

    def get_automation_execution(self, **params: Any) -> dict[str, Any]:
        op = "GetAutomationExecution"
        self._validate(op, params)
        if params["AutomationExecutionId"] not in self.executions:
            self._error(op, "AutomationExecutionNotFoundException", "not found")
        execution = self._seen(params["AutomationExecutionId"])
        return self._respond(op, {"AutomationExecution": copy.deepcopy(execution)})

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
        op = "DescribeSessions"
        self._validate(op, params)
        active = params["State"] == "Active"
        wanted, started = {}, {}
        for f in params.get("Filters", []):
            if f["key"] not in _MODEL.shape_for("SessionFilterKey").enum:
                self._error(op, "InvalidFilterKey", f"{f['key']} is not a valid filter key")
            assert f["key"] in _SESSION_FILTERS, f"the fake does not implement the {f['key']} filter"
            if f["key"] in _STARTED:
                # e.g. 2024-08-29T00:00:00Z (the model's example); the fake refuses anything else loudly.
                started[f["key"]] = datetime.strptime(f["value"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            else:
                wanted[f["key"]] = f["value"]
        found = [
            copy.deepcopy(s)
            for s in self.sessions.values()
            if (s["Status"] in ("Connected", "Connecting")) == active
            and all(s.get(k) == v for k, v in wanted.items())
            and ("InvokedAfter" not in started or s["StartDate"] >= started["InvokedAfter"])
            and ("InvokedBefore" not in started or s["StartDate"] < started["InvokedBefore"])
        ]
        page, token = self._page(op, found, params, default=20)
        return self._respond(op, {"Sessions": page, **token})

    def close_session(self, session_id: str, *, now: datetime) -> None:
        """The user ends a session (``exit``): it moves to the history, ``Terminated`` with its end."""
        session = self.sessions[session_id]
        session["Status"], session["EndDate"] = "Terminated", now

    def get_document(self, **params: Any) -> dict[str, Any]:
        """The stack's documents (and the preferences set with :meth:`set_preferences`); any other
        goes to the fallback (moto) when there is one. Versions count from 1, one per change;
        ``$LATEST`` is the last, ``$DEFAULT`` (and no version) the default, which changes move only
        when asked (UpdateDocumentDefaultVersion, which the fake does not implement: the first)."""
        op = "GetDocument"
        self._validate(op, params)
        name = params["Name"]
        document = self.documents.get(name)
        if document is None:
            if self.fallback is not None:
                return self.fallback.get_document(**params)  # type: ignore[no-any-return]
            self._error(op, "InvalidDocument", "The specified document does not exist.")
        assert params.get("DocumentFormat", "JSON") == "JSON", "the fake answers JSON content only"
        assert "VersionName" not in params, "the fake does not implement version names"
        versions = document.setdefault("versions", [document["content"]])
        asked = params.get("DocumentVersion", "$DEFAULT")
        number = {"$LATEST": len(versions), "$DEFAULT": 1}.get(asked) or (
            int(asked) if asked.isdigit() else 0
        )
        if not 1 <= number <= len(versions):
            self._error(op, "InvalidDocumentVersion", "The document version is not valid or does not exist.")
        return self._respond(
            op,
            {
                "Name": name,
                "DocumentVersion": str(number),
                "Status": "Active",
                "Content": json.dumps(versions[number - 1]),
                "DocumentType": document["type"],
                "DocumentFormat": "JSON",
            },
        )

    def set_preferences(self, inputs: dict[str, Any] | None) -> None:
        """An administrator sets the Session Manager preferences (a new version of
        ``SSM-SessionManagerRunShell``, as "Update Session Manager preferences (command line)" does
        with ``--document-version '$LATEST'``); ``None``: deletes the document (DeleteDocument)."""
        name = "SSM-SessionManagerRunShell"
        if inputs is None:
            self.documents.pop(name, None)
            return
        content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": inputs}
        document = self.documents.get(name)
        if document is None:
            self.documents[name] = {"type": "Session", "content": content, "versions": [content]}
        else:
            document.setdefault("versions", [document["content"]]).append(content)

    def terminate_session(self, **params: Any) -> dict[str, Any]:
        self._validate("TerminateSession", params)
        session = self.sessions.get(params["SessionId"])
        if session is not None and session["Status"] != "Terminated":
            session["Status"] = "Terminated"
            if self.clock is not None:
                session["EndDate"] = self.clock.now()
        return self._respond("TerminateSession", {"SessionId": params["SessionId"]})

    # -- Change Manager: what the console / CLI and approvers do -------------------------------
    def start_change_request_execution(
        self, *, requester_arn: str, now: datetime, **params: Any
    ) -> dict[str, Any]:
        """StartChangeRequestExecution as ``requester_arn`` (the signer, which SSM records as ExecutedBy)."""
        op = "StartChangeRequestExecution"
        self._validate(op, params)
        token = params.get("ClientToken")
        if token and token.lower() in self._client_tokens:
            execution_id, first = self._client_tokens[token.lower()]
            if first != params:
                self._error(op, "IdempotentParameterMismatch", "ClientToken reused with other parameters")
            return self._respond(op, {"AutomationExecutionId": execution_id})
        template = self._change_template(op, params)
        execution_id = str(uuid.uuid4())
        steps, rules = _approval_steps(template, now)
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
                for rb in params["Runbooks"]
            ],
        }
        if "ScheduledTime" in params:
            execution["ScheduledTime"] = params["ScheduledTime"]
        self.add_execution(execution)
        self._approvals[execution_id] = {
            name: {"rule": rule, "decisions": []} for name, rule in rules.items()
        }
        if token:
            self._client_tokens[token.lower()] = (execution_id, copy.deepcopy(params))
        return self._respond(op, {"AutomationExecutionId": execution_id})

    def _change_template(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        """The request's change template, refused as SSM refuses it (unknown, unapproved version, a
        runbook the template does not allow)."""
        template = self.documents.get(params["DocumentName"])
        if template is None or template.get("type") != "Automation.ChangeTemplate":
            self._error(op, "AutomationDefinitionNotFoundException", f"{params['DocumentName']} not found")
        if params.get("DocumentVersion") not in (None, "$DEFAULT", "$LATEST", "1"):
            self._error(op, "AutomationDefinitionVersionNotFoundException", "no such template version")
        # With Change Manager's template review setting on, a template version nobody approved yet
        # cannot be used ("AutomationDefinitionNotApprovedException" in botocore's model).
        if template.get("review_status", "APPROVED") != "APPROVED":
            self._error(op, "AutomationDefinitionNotApprovedException", "the change template is not approved")
        runbooks = params["Runbooks"]
        allowed = {r["name"] for r in template["content"].get("executableRunBooks", [])}
        if len(runbooks) != 1 or runbooks[0]["DocumentName"] not in allowed:
            self._error(
                op, "InvalidAutomationExecutionParametersException", "runbook not allowed by the template"
            )
        return template

    def send_automation_signal(
        self, *, signer_arn: str, now: datetime, visible_after: timedelta | None = None, **params: Any
    ) -> str:
        """SendAutomationSignal Approve/Reject as ``signer_arn``; returns the new change request status.

        Only the step's approvers may decide ("aws:approve - Pause an automation for manual approval":
        the automation waits until *designated principals* approve or reject; "About approvals in your
        change templates": an IAM group or role approver lets its members approve). AWS does not
        document the error a non-approver gets; the fake answers InvalidAutomationSignalException, the
        model's error for "the signal isn't valid for the current Automation execution". Like Change
        Manager, this fake does not stop a requester who is an approver from approving their own
        request (AWS does not document that it does): SessionGate must catch that itself.

        ``visible_after``: SSM's reads (GetAutomationExecution, DescribeAutomationExecutions) show the
        decision only that long after ``now`` (eventual consistency), while the status event is due now.
        """
        op = "SendAutomationSignal"
        self._validate(op, params)
        if params["AutomationExecutionId"] not in self.executions:
            self._error(op, "AutomationExecutionNotFoundException", "not found")
        assert params["SignalType"] in ("Approve", "Reject"), "the fake implements Approve and Reject"
        execution = self.executions[params["AutomationExecutionId"]]
        before = copy.deepcopy(execution)
        waiting = [s for s in execution["StepExecutions"] if s["StepStatus"] == "Waiting"]
        if execution["AutomationExecutionStatus"] != "PendingApproval" or not waiting:
            self._error(op, "InvalidAutomationSignalException", "not awaiting approval")
        step = waiting[0]
        approval = self._approvals[execution["AutomationExecutionId"]][step["StepName"]]
        decision = self._record_decision(op, approval, signer_arn, params, now)
        step["Outputs"]["ApproverDecisions"] = [
            json.dumps({k: v for k, v in d.items() if k != "Lines"}) for d in approval["decisions"]
        ]
        _settle_step(execution, step, approval, decision, now)
        check_output(_MODEL.shape_for("AutomationExecution"), execution, "AutomationExecution")
        if visible_after:
            self.lagging[execution["AutomationExecutionId"]] = (before, now + visible_after)
        self._respond(op, {})  # SendAutomationSignal answers an empty structure
        return str(execution["AutomationExecutionStatus"])

    def _record_decision(
        self, op: str, approval: dict[str, Any], signer_arn: str, params: dict[str, Any], now: datetime
    ) -> str:
        """Add the signer's decision to the step's (once per approver, approvers only); returns it."""
        approvers, decisions = approval["rule"], approval["decisions"]
        lines = [i for i, a in enumerate(approvers["lines"]) if self._is_approver(signer_arn, a)]
        if not lines:
            self._error(
                op, "InvalidAutomationSignalException", f"{signer_arn} is not an approver of this step"
            )
        if any(d["Approver"] == signer_arn for d in decisions):
            self._error(op, "InvalidAutomationSignalException", f"{signer_arn} already decided")
        decision = "Approve" if params["SignalType"] == "Approve" else "Reject"
        comment = (params.get("Payload") or {}).get("Comment", [""])[0]
        decisions.append(
            {
                "Approver": signer_arn,
                "Decision": decision,
                "ApprovalDecisionTime": now.isoformat(),
                "Comment": comment,
                "Lines": lines,
            }
        )
        return decision

    def start_runbook(self, execution_id: str, *, now: datetime) -> str:
        """After approval Change Manager runs the runbook: status RunbookInProgress (returned)."""
        execution = self.executions[execution_id]
        assert execution["AutomationExecutionStatus"] in ("Approved", "Scheduled"), "not approved"
        execution["AutomationExecutionStatus"] = "RunbookInProgress"
        check_output(_MODEL.shape_for("AutomationExecution"), execution, "AutomationExecution")
        return "RunbookInProgress"

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
    def register_document(self, name: str, document_type: str, content: dict[str, Any]) -> None:
        """Register a stack's document (setup, not the API: CreateDocument takes text). A change
        template whose approval counts are not integers is refused (SSM refuses such a document with
        InvalidDocumentContent; here a ValueError, which the sandbox reports as a stack error)."""
        if document_type == "Automation.ChangeTemplate":
            for step in content.get("mainSteps", []):
                if step.get("action") == "aws:approve":
                    _approvers(step.get("inputs", {}))
        self.documents[name] = {"type": document_type, "content": content}

    def add_execution(self, execution: dict[str, Any]) -> None:
        check_output(_MODEL.shape_for("AutomationExecution"), execution, "AutomationExecution")
        self.executions[execution["AutomationExecutionId"]] = execution

    def _seen(self, execution_id: str) -> dict[str, Any]:
        """The execution as SSM's reads show it now (an earlier record while a decision lags)."""
        lagging = self.lagging.get(execution_id)
        if lagging is not None:
            assert self.clock is not None, "a lagging approval needs the fake's clock"
            if self.clock.now() < lagging[1]:
                return lagging[0]
            del self.lagging[execution_id]
        return self.executions[execution_id]

    def _is_approver(self, signer_arn: str, line: dict[str, Any]) -> bool:
        """Whether the signer is (a member of) the approver of one approval line."""
        name, kind = str(line["approver"]), line["type"]
        account = signer_arn.split(":")[4] if signer_arn.count(":") >= 5 else ""
        resource = signer_arn.split(":", 5)[-1]
        if kind == "IamUser":
            return resource.startswith("user/") and resource.rsplit("/", 1)[-1] == name.rsplit("/", 1)[-1]
        if kind == "IamRole":
            parts = resource.split("/")
            return parts[0] == "assumed-role" and len(parts) == 3 and parts[1] == name.rsplit("/", 1)[-1]
        if kind == "IamGroup":
            assert self.group_members is not None, "IamGroup approvers need the fake's group_members"
            return resource.startswith("user/") and signer_arn in self.group_members(name)
        if kind == "SSOUser":
            parts = resource.split("/")
            return (
                parts[0] == "assumed-role"
                and len(parts) == 3
                and parts[1].startswith(_SSO_ROLE_PREFIX)
                and parts[2] == name
                and bool(account)
            )
        raise AssertionError(f"the fake cannot resolve {kind} approvers (Identity Center groups)")

    def _page(
        self, operation: str, items: list[Any], params: dict[str, Any], *, default: int
    ) -> tuple[list[Any], dict[str, str]]:
        """One page of ``items`` (MaxResults, NextToken as SSM pages them); a token it never issued is
        InvalidNextToken."""
        start = 0
        if "NextToken" in params:
            token = params["NextToken"]
            if not token.startswith(f"{operation}:") or not token.split(":", 1)[1].isdigit():
                self._error(operation, "InvalidNextToken", "The token is not valid")
            start = int(token.split(":", 1)[1])
        size = int(params.get("MaxResults", default))
        page = items[start : start + size]
        more = start + size < len(items)
        return page, ({"NextToken": f"{operation}:{start + size}"} if more else {})

    def _error(self, operation: str, code: str, message: str) -> NoReturn:
        """Raise ``code`` as the real client would; the fake raises only errors the model declares."""
        declared = [e.name for e in _MODEL.operation_model(operation).error_shapes]
        assert code in declared, f"{code} is not an error botocore declares for {operation}"
        response: Any = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        raise getattr(_Exceptions, code)(response, operation)

    def _validate(self, operation: str, params: dict[str, Any]) -> None:
        self.calls.append(operation)
        report = ParamValidator().validate(params, _MODEL.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()

    def _respond(self, operation: str, response: dict[str, Any]) -> dict[str, Any]:
        check_output(_MODEL.operation_model(operation).output_shape, response, operation)
        return response


def _approvers(inputs: dict[str, Any]) -> dict[str, Any]:
    """An ``aws:approve`` step's approval lines and required counts, from the template's inputs.

    Change templates use ``EnhancedApprovals.Approvers`` (``approver``, ``type``, per-line
    ``minRequiredApprovals``) with the level-wide ``MinRequiredApprovals``; both counts must be
    integers ("Change Manager approval type examples"). A plain runbook's ``Approvers`` lists ARNs.
    """
    level = inputs.get("MinRequiredApprovals", 1)
    if type(level) is not int:
        raise ValueError(f"MinRequiredApprovals must be an integer, got {level!r}")
    enhanced = inputs.get("EnhancedApprovals")
    if enhanced is not None:
        lines = []
        for line in enhanced["Approvers"]:
            count = line.get("minRequiredApprovals", 0)
            if type(count) is not int:
                raise ValueError(f"minRequiredApprovals must be an integer, got {count!r}")
            lines.append({"approver": line["approver"], "type": line["type"], "min": count})
    else:
        lines = [
            {"approver": a, "type": "IamRole" if ":role/" in a else "IamUser", "min": 0}
            for a in inputs.get("Approvers", [])
        ]
    return {"level": level, "lines": lines}


def _level_met(approvers: dict[str, Any], decisions: list[dict[str, Any]]) -> bool:
    """Per-level (enough approvals in all) and per-line (each line's own minimum) counts are both met:
    whichever asks for more takes precedence ("About approvals in your change templates")."""
    approvals = [d for d in decisions if d["Decision"] == "Approve"]
    if len(approvals) < approvers["level"]:
        return False
    return all(
        sum(1 for d in approvals if i in d["Lines"]) >= line["min"]
        for i, line in enumerate(approvers["lines"])
    )


def _approval_steps(
    template: dict[str, Any], now: datetime
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A new execution's approval steps (all Waiting) and each step's approval rule."""
    steps = []
    rules: dict[str, dict[str, Any]] = {}
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
            rules[step["name"]] = _approvers(step["inputs"])
    return steps, rules


def _settle_step(
    execution: dict[str, Any], step: dict[str, Any], approval: dict[str, Any], decision: str, now: datetime
) -> None:
    """After a decision: a rejection fails the step and the change request; approvals that meet the
    step's counts complete it, and once no step waits the request is Approved (Scheduled before its
    ScheduledTime)."""
    if decision == "Reject":
        step["Outputs"]["ApprovalStatus"] = ["Rejected"]
        step["StepStatus"] = "Failed"
        step["ExecutionEndTime"] = now
        execution["AutomationExecutionStatus"] = "Rejected"
    elif _level_met(approval["rule"], approval["decisions"]):
        step["Outputs"]["ApprovalStatus"] = ["Approved"]
        step["StepStatus"] = "Success"
        step["ExecutionEndTime"] = now
    if decision == "Approve" and not [s for s in execution["StepExecutions"] if s["StepStatus"] == "Waiting"]:
        scheduled = execution.get("ScheduledTime")
        execution["AutomationExecutionStatus"] = "Scheduled" if scheduled and scheduled > now else "Approved"
