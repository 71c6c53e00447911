"""Scenarios: principals, instances, requests, approvals, clock advances and checks, played on a World.

Every fact a check or the report states is read back from the emulated AWS state (tags from IAM,
schedules from Scheduler, grants from the DynamoDB table, lifecycle events from the SNS topic), never
from the engine's return values.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from sessiongate.access_requests.policy import PolicyError
from sessiongate.access_requests.records import Approval, RequestStatus
from sessiongate.adapters.kms import Macs
from sessiongate.adapters.policy_source import sign_and_put
from sessiongate.adapters.request_store import RequestStore, to_item
from sessiongate.clock import to_iso
from sessiongate.core.model import ACCESS_APPROVED, EVENT_SOURCE
from sessiongate.core.slots import INSTANCE_KEY, USER_KEY
from sessiongate.core.slots import instance_key as slot_key

from .apigw import api_event
from .policy import SessionChecker
from .world import ACCOUNT, REGION, World

# What a scenario file may say: one table, checked before anything runs (a key not listed here is a
# mistake, reported with its place). Free-form mappings (parameters, approval_policy, tags, a tags
# step's expect) are not listed: their content is checked where it is used.
TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "description",
        "start",
        "parameters",
        "principals",
        "instances",
        "approval_policy",
        "expect_failed_invocations",
        "steps",
    }
)
PRINCIPAL_KEYS = frozenset({"type", "role", "path", "tags", "operator", "groups"})
INSTANCE_KEYS = frozenset({"tags", "managed"})
# Each step kind with its fields; None: the step's value is not a mapping (advance: a duration).
STEP_FIELDS: dict[str, frozenset[str] | None] = {
    "request": frozenset(
        {
            "id",
            "by",
            "for",
            "instance",
            "minutes",
            "reason",
            "start_in",
            "via",
            "break_glass",
            "ticket",
            "expect_error",
        }
    ),
    "approve": frozenset({"request", "by", "comment", "expect_error", "ssm_lag"}),
    "reject": frozenset({"request", "by", "comment", "expect_error"}),
    "advance": None,
    "tamper": frozenset({"principal", "tags"}),
    "insider": frozenset({"by", "action", "request", "approvers", "instance", "tags", "policy"}),
    "fault": frozenset({"operation", "code", "times"}),
    "drop_schedule": frozenset({"request"}),
    "redeliver": frozenset({"request", "what"}),
    "reconcile": frozenset(),
    "revoke": frozenset({"request", "by", "reason", "expect_error"}),
    "extend": frozenset({"request", "id", "by", "minutes", "reason", "expect_error"}),
    "cancel": frozenset({"request", "by", "expect_error"}),
    "status": frozenset({"request", "by", "expect"}),
    "session": frozenset({"principal", "instance", "expect"}),
    "connect": frozenset({"principal", "instance"}),
    "live_sessions": frozenset({"principal", "instance", "expect"}),
    "tags": frozenset({"principal", "expect"}),
    "grant": frozenset({"request", "expect", "denial"}),
    "schedules": frozenset({"expect"}),
    "notified": frozenset({"event_type", "request", "expect", "count"}),
}
STEP_KINDS = tuple(STEP_FIELDS)
# Steps that check something (so does any step with expect_error): a scenario needs at least one.
CHECK_STEPS = frozenset(
    {"status", "session", "connect", "live_sessions", "tags", "grant", "schedules", "notified"}
)
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")


class ScenarioError(Exception):
    """The scenario file is wrong (a user mistake): reported without a traceback."""


@dataclass
class Check:
    step: int
    what: str
    expected: Any
    actual: Any

    @property
    def passed(self) -> bool:
        return bool(self.expected == self.actual)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "check": self.what,
            "expected": self.expected,
            "actual": self.actual,
            "passed": self.passed,
        }


@dataclass
class Report:
    scenario: str
    description: str
    checks: list[Check] = field(default_factory=list)
    timeline: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    principals: dict[str, dict[str, str]] = field(default_factory=dict)
    grants: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    revocations: list[dict[str, Any]] = field(default_factory=list)
    failed_invocations: list[dict[str, Any]] = field(default_factory=list)
    invariant_violations: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    aws_calls: dict[str, int] = field(default_factory=dict)
    expect_failed_invocations: bool = False

    @property
    def passed(self) -> bool:
        return (
            all(c.passed for c in self.checks)
            and not self.invariant_violations
            and (self.expect_failed_invocations or not self.failed_invocations)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "passed": self.passed,
            "checks": [c.as_dict() for c in self.checks],
            "checks_passed": sum(c.passed for c in self.checks),
            "checks_failed": sum(not c.passed for c in self.checks),
            "events": self.events,
            "principals": self.principals,
            "active_grants": self.grants,
            "schedules": self.schedules,
            "revocations": self.revocations,
            "failed_invocations": self.failed_invocations,
            "invariant_violations": self.invariant_violations,
            "faults": self.faults,
            "timeline": self.timeline,
            "aws_calls": self.aws_calls,
        }


def load(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ScenarioError(f"{path}: a scenario is a mapping with a 'steps' list")
    try:
        validate(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    data.setdefault("name", Path(path).stem)
    return data


def validate(data: dict[str, Any], *, require_checks: bool = True) -> None:
    """Refuse keys the format does not know (with their place) and, for a file, a scenario without checks."""

    def known(keys: object, allowed: frozenset[str], where: str) -> None:
        for key in keys if isinstance(keys, dict) else ():
            if key not in allowed:
                raise ScenarioError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    known(data, TOP_LEVEL_KEYS, "top level")
    for section, allowed in (("principals", PRINCIPAL_KEYS), ("instances", INSTANCE_KEYS)):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise ScenarioError(f"{section} must be a mapping of names")
        for name, spec in entries.items():
            if spec is not None and not isinstance(spec, dict):
                raise ScenarioError(f"{section[:-1]} {name}: needs a mapping")
            known(spec, allowed, f"{section[:-1]} {name}")
    checks = 0
    for index, step in enumerate(data.get("steps") or [], start=1):
        if not isinstance(step, dict) or len(step) != 1:
            raise ScenarioError(
                f"step {index}: each step is a mapping with one key of {', '.join(STEP_KINDS)}"
            )
        ((kind, spec),) = step.items()
        if kind not in STEP_FIELDS:
            raise ScenarioError(
                f"step {index}: unknown step {kind!r} (expected one of {', '.join(STEP_KINDS)})"
            )
        fields = STEP_FIELDS[kind]
        if fields is None:
            parse_duration(spec)
            continue
        if not isinstance(spec, dict):
            raise ScenarioError(f"step {index}: {kind} needs a mapping")
        for key in spec:
            if key not in fields:
                hint = f"allowed: {', '.join(sorted(fields))}" if fields else "it takes none"
                raise ScenarioError(f"step {index} ({kind}): unknown field {key!r} ({hint})")
        checks += kind in CHECK_STEPS or "expect_error" in spec
    if require_checks and not checks:
        raise ScenarioError(
            "the scenario checks nothing: add a check step ("
            + ", ".join(sorted(CHECK_STEPS))
            + ") or an expect_error"
        )


def parse_duration(text: object) -> timedelta:
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ScenarioError(f"duration {text!r} must look like 90s, 11m, 2h or 1d")
    n, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


class Runner:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.report = Report(scenario["name"], str(scenario.get("description", "")).strip())
        self.principals: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, str] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self._faults: list[Any] = []
        self._leak_seen: dict[tuple[str, str], datetime] = {}
        self._sessions: list[dict[str, Any]] = []  # opened by connect steps: principal, instance, id
        self.report.expect_failed_invocations = bool(scenario.get("expect_failed_invocations", False))
        validate(scenario, require_checks=False)

    # -- setup -------------------------------------------------------------------------------------
    def run(self) -> Report:
        start = self.scenario.get("start")
        kwargs: dict[str, Any] = {"parameters": dict(self.scenario.get("parameters") or {})}
        if "approval_policy" in self.scenario:
            # A custom policy lives in a parameter the deployers sign (``sessiongate policy sign``).
            kwargs["parameters"].setdefault("ApprovalPolicyParameterName", "/sandbox/approval-policy")
        if start:
            kwargs["start"] = _time(start)
        try:
            world = World(**kwargs)
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None
        with world:
            self.world = world
            self.checker = SessionChecker(world.client("iam"), REGION, ACCOUNT)
            self._setup()
            self.period = timedelta(minutes=int(world.stack.parameters.get("ReconcilerRateMinutes") or 5))
            for index, step in enumerate(self.scenario["steps"], start=1):
                self._step(index, step)
                self._invariants(index)
            self._finish()
        return self.report

    def _setup(self) -> None:
        iam, ec2 = self.world.client("iam"), self.world.client("ec2")
        operator_policy = self.world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
        for name, spec in (self.scenario.get("principals") or {}).items():
            spec = spec or {}
            kind = spec.get("type", "user")
            if kind == "session":
                # One person's session of a (shared) role, e.g. an IAM Identity Center user.
                role = spec.get("role")
                if role not in self.principals or self.principals[role]["type"] != "role":
                    raise ScenarioError(
                        f"principal {name}: a session needs 'role' naming a role declared before it"
                    )
                role_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{name}"
                role_id = iam.get_role(RoleName=role)["Role"]["RoleId"]
                self.principals[name] = {
                    "type": "session",
                    "role": role,
                    "arn": role_arn,
                    "userid": f"{role_id}:{name}",
                }
                continue
            if kind not in ("user", "role"):
                raise ScenarioError(f"principal {name}: type must be user, role or session")
            if spec.get("groups") and kind != "user":
                raise ScenarioError(f"principal {name}: only users belong to IAM groups")
            path = spec.get("path", "/")
            tags = [{"Key": k, "Value": str(v)} for k, v in (spec.get("tags") or {}).items()]
            operator = spec.get("operator", True)  # false: the operator policy is not attached
            if kind == "user":
                arn = iam.create_user(UserName=name, Path=path, Tags=tags)["User"]["Arn"]
                if operator:
                    iam.attach_user_policy(UserName=name, PolicyArn=operator_policy)
                for group in spec.get("groups") or []:
                    # IAM groups the user belongs to (e.g. the Change Manager approver group).
                    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
                        iam.create_group(GroupName=str(group))
                    iam.add_user_to_group(GroupName=str(group), UserName=name)
            else:
                trust = '{"Version":"2012-10-17","Statement":[]}'
                role = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=trust, Tags=tags)
                arn = role["Role"]["Arn"]
                if operator:
                    iam.attach_role_policy(RoleName=name, PolicyArn=operator_policy)
            self.principals[name] = {"type": kind, "arn": arn}
        for name, spec in (self.scenario.get("instances") or {}).items():
            spec = spec or {}
            kwargs: dict[str, Any] = {"ImageId": "ami-12c6146b", "MinCount": 1, "MaxCount": 1}
            tags = [{"Key": k, "Value": str(v)} for k, v in (spec.get("tags") or {}).items()]
            if tags:
                kwargs["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
            instance_id = ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
            if spec.get("managed", True):
                self.world.ssm.managed.add(instance_id)
            self.instances[name] = instance_id
            self._say(
                "setup",
                f"instance {name} is {instance_id}"
                + ("" if spec.get("managed", True) else " (not SSM-managed)"),
            )
        if "approval_policy" in self.scenario:
            self._set_approval_policy(self.scenario["approval_policy"])

    def _arns(self, value: object) -> object:
        """A policy document with principal names replaced by their ARNs."""
        if isinstance(value, dict):
            return {k: self._arns(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._arns(v) for v in value]
        if isinstance(value, str) and value in self.principals:
            return self.principals[value]["arn"]
        return value

    def _set_approval_policy(self, policy: object) -> None:
        """The native API's approval policy (the SSM parameter); principal names stand for their ARNs."""

        if not isinstance(policy, dict):
            raise ScenarioError("approval_policy must be a mapping (the policy document, see the README)")
        variables = self.world.stack.resources["RequestApiFunction"].properties["Environment"]["Variables"]
        name = variables["SESSIONGATE_APPROVAL_POLICY_PARAMETER"]
        # Signed as a deployer signs it (sessiongate policy sign --put), with the stack's policy key.
        try:
            sign_and_put(
                self._arns(policy),
                Macs(self.world.client("kms")),
                variables["SESSIONGATE_APPROVAL_POLICY_KEY"],
                self.world.client("ssm"),
                name,
            )
        except PolicyError as exc:
            raise ScenarioError(f"approval_policy: {exc}") from None
        rules = len(policy.get("rules") or [])
        self._say("setup", f"approval policy {name} signed and set ({rules} rule(s))")

    # -- steps ------------------------------------------------------------------------------------
    def _step(self, index: int, step: object) -> None:
        assert isinstance(step, dict)  # validate() checked every step's shape and kind before the run
        ((kind, spec),) = step.items()
        if kind == "advance":
            delta = parse_duration(spec)
            self.world.advance(delta)
            self._collect()
            self._say("clock", f"{spec} pass")
            return
        if not isinstance(spec, dict):
            raise ScenarioError(f"step {index}: {kind} needs a mapping")
        getattr(self, f"_{kind}")(index, spec)
        self._collect()

    def _request(self, index: int, spec: dict[str, Any]) -> None:
        if self._via_api(spec, index):
            self._api_request(index, spec)
            return
        rid = self._need(spec, "id", index)
        by = self._principal(self._need(spec, "by", index), index)
        target_name = spec.get("for", spec["by"])
        target = self._principal(target_name, index)
        if target["type"] == "session":  # a session asks for its role
            target_name, target = target["role"], self.principals[target["role"]]
        instance = self._instance(self._need(spec, "instance", index), index)
        minutes = spec.get("minutes", self.world.stack.parameters.get("ApprovalValidityMinutes", 10))
        params: dict[str, Any] = {
            "DocumentName": "AllowSsmSessionStartTemplate",
            "ChangeRequestName": spec.get("reason", f"shell on {spec['instance']} for {target_name}"),
            "Runbooks": [
                {
                    "DocumentName": "AllowSsmSessionStartRunbook",
                    "Parameters": {
                        "InstanceId": [instance],
                        "PrincipalType": [target["type"].capitalize()],
                        "PrincipalName": [target_name],
                        "ValidityMinutes": [str(minutes)],
                    },
                }
            ],
        }
        if "start_in" in spec:
            params["ScheduledTime"] = self.world.clock.now() + parse_duration(spec["start_in"])
        execution_id = self.world.ssm.start_change_request_execution(
            requester_arn=by["arn"], now=self.world.clock.now(), **params
        )["AutomationExecutionId"]
        self.requests[rid] = {"execution_id": execution_id, "grant_id": f"cm-{execution_id}"}
        when = f", starting in {spec['start_in']}" if "start_in" in spec else ""
        self._say(
            spec["by"],
            f"requests a shell on {spec['instance']} for {target_name}, {minutes} min{when} [{rid}]",
        )

    def _approve(self, index: int, spec: dict[str, Any], signal: str = "Approve") -> None:
        request = self._request_of(spec, index)
        if "api_id" in request:
            body = {"comment": str(spec["comment"])} if spec.get("comment") else {}
            verb = "approve" if signal == "Approve" else "reject"
            if verb == "reject" and not body:
                body = {"comment": "rejected in the sandbox"}
            self._act(index, spec, request, verb, body, f"{verb}s [{spec['request']}]")
            return
        by = self._principal(self._need(spec, "by", index), index)
        signal_params: dict[str, Any] = {
            "AutomationExecutionId": request["execution_id"],
            "SignalType": signal,
        }
        if spec.get("comment"):
            signal_params["Payload"] = {"Comment": [str(spec["comment"])]}
        # ssm_lag: SSM's reads show the decision only this long after it (eventual consistency), while
        # Change Manager publishes the status change at once; once it shows, the runbook starts and
        # RunbookInProgress is published too.
        lag = parse_duration(spec["ssm_lag"]) if "ssm_lag" in spec else None
        verb = "approves" if signal == "Approve" else "rejects"
        ssm = self.world.ssm
        try:
            status = ssm.send_automation_signal(
                signer_arn=by["arn"], now=self.world.clock.now(), visible_after=lag, **signal_params
            )
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            self._say(spec["by"], f"{verb} [{spec['request']}] -> refused: {code}")
            self._check(index, f"{signal} by {spec['by']}", spec.get("expect_error", "success"), code)
            return
        if "expect_error" in spec:
            self._check(index, f"{signal} by {spec['by']}", spec["expect_error"], "success")
        lagging = f" (SSM shows it after {spec['ssm_lag']})" if lag else ""
        self._say(spec["by"], f"{verb} [{spec['request']}] -> {status}{lagging}")
        if status in ("Approved", "Scheduled", "Rejected"):
            # Change Manager publishes the status change on the default bus; the router takes it from there.
            self._publish_status(request["execution_id"])
            self.world.settle()
        if lag and status == "Approved":
            execution_id = request["execution_id"]

            def runbook_starts() -> None:
                ssm.start_runbook(execution_id, now=self.world.clock.now())
                self._say("ssm", f"runbook of [{spec['request']}] starts -> RunbookInProgress")
                self._publish_status(execution_id)

            self.world.at(self.world.clock.now() + lag, runbook_starts)

    def _publish_status(self, execution_id: str) -> None:
        self.world.put_event(
            self.world.ssm.status_event(
                execution_id, account=ACCOUNT, region=REGION, now=self.world.clock.now()
            )
        )

    def _reject(self, index: int, spec: dict[str, Any]) -> None:
        self._approve(index, spec, signal="Reject")

    def _tamper(self, index: int, spec: dict[str, Any]) -> None:
        """Someone with IAM rights sets tags by hand, bypassing SessionGate (drift)."""
        name = self._need(spec, "principal", index)
        principal = self._principal(name, index)
        tags = [
            {"Key": k, "Value": self.instances.get(str(v), str(v))}
            for k, v in (spec.get("tags") or {}).items()
        ]
        iam = self.world.client("iam")
        if principal["type"] == "user":
            iam.tag_user(UserName=name, Tags=tags)
        else:
            iam.tag_role(RoleName=principal.get("role", name), Tags=tags)
        self._say(name, f"tags set by hand: {', '.join(t['Key'] for t in tags)}")

    def _insider(self, index: int, spec: dict[str, Any]) -> None:
        """An account insider who is not a deployer, with AWS admin rights on a service (never IAM),
        tries to get around the approval (issue 13). The sandbox does not evaluate resource policies on
        data calls, so a write the table policy would refuse goes through here: what follows shows the
        next line of defence holding.

        - ``forge_approval``: ``dynamodb:PutItem`` of ``request`` as APPROVED by ``approvers``, then
          ``lambda:InvokeFunction`` of the grant function with the matching event;
        - ``retag_instance``: ``ec2:CreateTags`` on ``instance`` (e.g. prod re-tagged dev);
        - ``write_policy``: ``ssm:PutParameter`` of the approval policy parameter, unsigned.
        """
        by = self._need(spec, "by", index)
        action = self._need(spec, "action", index)
        if action == "forge_approval":
            self._forge_approval(index, spec, by)
        elif action == "retag_instance":
            name = self._need(spec, "instance", index)
            tags = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
            self.world.client("ec2").create_tags(
                Resources=[self._instance(name, index)],
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
            self._say(by, f"re-tags {name} by hand: " + ", ".join(f"{k}={v}" for k, v in tags.items()))
        elif action == "write_policy":
            variables = self.world.stack.resources["RequestApiFunction"].properties["Environment"][
                "Variables"
            ]
            name = variables.get("SESSIONGATE_APPROVAL_POLICY_PARAMETER")
            if not name:
                raise ScenarioError(f"step {index}: write_policy needs the scenario's approval_policy")
            document = json.dumps(self._arns(self._need(spec, "policy", index)))
            self.world.client("ssm").put_parameter(Name=name, Value=document, Type="String", Overwrite=True)
            self._say(by, f"writes the approval policy parameter {name} by hand")
        else:
            raise ScenarioError(
                f"step {index}: insider action must be forge_approval, retag_instance or write_policy"
            )

    def _forge_approval(self, index: int, spec: dict[str, Any], by: str) -> None:
        request = self._request_of(spec, index)
        if "api_id" not in request:
            raise ScenarioError(f"step {index}: forge_approval needs a request made with via: api")
        approvers = [self._principal(str(a), index)["arn"] for a in spec.get("approvers") or []]
        if not approvers:
            raise ScenarioError(f"step {index}: forge_approval needs approvers")
        table = self.world.stack.resources["RequestsTable"].physical_id
        store = RequestStore(self.world.client("dynamodb"), table)
        record = store.get(request["api_id"])
        if record is None:
            raise ScenarioError(f"step {index}: request [{spec['request']}] is not in the table")
        now = to_iso(self.world.clock.now())
        forged = replace(
            record,
            status=RequestStatus.APPROVED,
            approvals=tuple(Approval(arn, 0, now) for arn in approvers),
            approver_arns=tuple(approvers),
            approved_at=now,
            version=record.version + 1,
        )
        self.world.client("dynamodb").put_item(TableName=table, Item=to_item(forged))
        self._say(by, f"writes [{spec['request']}] as APPROVED by {', '.join(map(str, spec['approvers']))}")
        event = {
            "source": EVENT_SOURCE,
            "detail-type": ACCESS_APPROVED,
            "detail": forged.to_access_approved().to_detail(),
        }
        self.world.invoke(self.world.function_arn("GrantAccessFunction"), event, trigger="insider")
        self.world.settle()
        self._say(by, "invokes the grant function directly")

    def _fault(self, index: int, spec: dict[str, Any]) -> None:
        """Make the next ``times`` attempts of an AWS operation fail with ``code`` (botocore retries)."""
        operation = self._need(spec, "operation", index)
        if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", str(operation)):
            raise ScenarioError(f"step {index}: operation must look like iam:TagUser")
        code, times = str(spec.get("code", "ThrottlingException")), int(spec.get("times", 1))
        fault = self.world.faults.add(operation, code, times)
        self.report.faults.append({"step": index, "operation": operation, "code": code, "times": times})
        self._faults.append(fault)
        self._say("fault", f"next {times} call(s) of {operation} fail with {code}")

    def _drop_schedule(self, index: int, spec: dict[str, Any]) -> None:
        """Lose a revoke schedule (deleted by hand, never delivered); ``request: all`` loses them all."""
        group = self.world.stack.resources["ScheduleGroup"].physical_id
        scheduler = self.world.client("scheduler")
        if spec.get("request") == "all":
            names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
            for name in names:
                scheduler.delete_schedule(Name=name, GroupName=group)
            self._say("fault", f"all {len(names)} pending schedule(s) are lost")
            return
        request = self._request_of(spec, index)
        try:
            scheduler.delete_schedule(Name=f"sg-revoke-{request['grant_id']}", GroupName=group)
            self._say("fault", f"revoke schedule of [{spec['request']}] is lost")
        except scheduler.exceptions.ResourceNotFoundException:
            self._say("fault", f"[{spec['request']}] had no revoke schedule to lose")

    def _redeliver(self, index: int, spec: dict[str, Any]) -> None:
        """Deliver a trigger again (EventBridge and Scheduler deliver at least once)."""
        request = self._request_of(spec, index)
        what = spec.get("what", "approval")
        if what == "approval":
            self.world.put_event(
                self.world.ssm.status_event(
                    request["execution_id"], account=ACCOUNT, region=REGION, now=self.world.clock.now()
                )
            )
            self.world.settle()
        elif what == "revoke":
            payload = {"grant_id": request["grant_id"], "reason": "expired"}
            self.world.invoke(
                self.world.function_arn("RevokeAccessFunction"), payload, trigger="redelivered schedule"
            )
        else:
            raise ScenarioError(f"step {index}: redeliver what must be approval or revoke")
        self._say("fault", f"{what} of [{spec['request']}] delivered again")

    def _reconcile(self, index: int, spec: dict[str, Any]) -> None:
        arn = self.world.function_arn("ReconcileGrantsFunction")
        self.world.invoke(arn, {"source": "aws.events", "detail-type": "Scheduled Event"}, trigger="scenario")
        self._say("reconciler", "runs")

    def _revoke(self, index: int, spec: dict[str, Any]) -> None:
        """Early revoke ("I'm done") through the engine's revoke path, as the API does."""
        request = self._request_of(spec, index)
        if "api_id" in request:
            body = {"reason": str(spec["reason"])} if spec.get("reason") else {}
            self._act(index, spec, request, "revoke", body, f"revokes [{spec['request']}]")
            return
        by = self._principal(self._need(spec, "by", index), index)
        outcome = self.world.engine("revoke").revoke(request["grant_id"], reason="done", by=by["arn"])
        self._say(spec["by"], f"is done with [{spec['request']}] -> {outcome.result}")

    def _extend(self, index: int, spec: dict[str, Any]) -> None:
        """The requester asks for more time on ACTIVE access (a new request, approved like any other)."""
        request = self._native(spec, index, "extend")
        rid = self._need(spec, "id", index)
        body: dict[str, Any] = {"reason": str(spec.get("reason", "need more time"))}
        if "minutes" in spec:
            body["duration_minutes"] = spec["minutes"]
        answer = self._act(
            index, spec, request, "extend", body, f"asks to extend [{spec['request']}] as [{rid}]"
        )
        if answer is not None:
            self.requests[rid] = {
                "api_id": answer["request_id"],
                "grant_id": answer["grant_id"],
                "by": spec["by"],
            }

    def _cancel(self, index: int, spec: dict[str, Any]) -> None:
        request = self._native(spec, index, "cancel")
        self._act(index, spec, request, "cancel", {}, f"cancels [{spec['request']}]")

    def _status(self, index: int, spec: dict[str, Any]) -> None:
        """The request's status as the API reports it to ``by`` (default: its requester)."""
        request = self._native(spec, index, "status")
        by = spec.get("by", request["by"])
        answer = self._api_call(index, {}, by, "GET /requests/{id}", request_id=request["api_id"], label=None)
        actual = answer["status"] if answer is not None else "unreadable"
        self._check(index, f"request [{spec['request']}] status", self._need(spec, "expect", index), actual)

    # -- the native request API, called as API Gateway would (IAM auth: identity from the signature) --
    def _via_api(self, spec: dict[str, Any], index: int) -> bool:
        via = spec.get("via", "change_manager")
        if via not in ("change_manager", "api"):
            raise ScenarioError(f"step {index}: via must be change_manager or api")
        return bool(via == "api")

    def _native(self, spec: dict[str, Any], index: int, step: str) -> dict[str, Any]:
        request = self._request_of(spec, index)
        if "api_id" not in request:
            raise ScenarioError(f"step {index}: {step} works on requests made with via: api")
        return request

    def _act(
        self, index: int, spec: dict[str, Any], request: dict[str, Any], verb: str, body: Any, label: str
    ) -> dict[str, Any] | None:
        """``POST /requests/{id}/<verb>`` on a native request, by the step's ``by``."""
        by = self._need(spec, "by", index)
        route = f"POST /requests/{{id}}/{verb}"
        return self._api_call(index, spec, by, route, request_id=request["api_id"], body=body, label=label)

    def _api_request(self, index: int, spec: dict[str, Any]) -> None:
        rid = self._need(spec, "id", index)
        by = self._need(spec, "by", index)
        if spec.get("for", by) != by:
            raise ScenarioError(f"step {index}: through the API a caller requests access for itself only")
        body: dict[str, Any] = {
            "instance_id": self._instance(self._need(spec, "instance", index), index),
            "reason": str(spec.get("reason", f"shell on {spec['instance']}")),
        }
        if "minutes" in spec:
            body["duration_minutes"] = spec["minutes"]
        if spec.get("break_glass"):
            body["break_glass"] = True
        if "ticket" in spec:
            body["ticket"] = str(spec["ticket"])
        answer = self._api_call(
            index,
            spec,
            by,
            "POST /requests",
            body=body,
            label=f"requests a shell on {spec['instance']} through the API [{rid}]",
        )
        if answer is not None:
            self.requests[rid] = {"api_id": answer["request_id"], "grant_id": answer["grant_id"], "by": by}

    def _api_call(
        self,
        index: int,
        spec: dict[str, Any],
        caller: str,
        route: str,
        *,
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
        label: str | None,
    ) -> dict[str, Any] | None:
        """One API call by ``caller``; checks ``expect_error`` (an error code) when the step gives one."""
        principal = self._principal(caller, index)
        event = api_event(route, principal["arn"], request_id=request_id, body=body)
        invocation = self.world.invoke(
            self.world.function_arn("RequestApiFunction"), event, trigger=f"api {route}", sync=True
        )
        if invocation.error:
            status, answer = 502, {"error": "handler_failed", "message": invocation.error}
        else:
            status, answer = invocation.result["statusCode"], json.loads(invocation.result["body"])
            answer = answer.get("request", answer)  # a request's view, or an error
        self.world.settle()  # AccessApproved on the bus -> grant
        ok = 200 <= status < 300
        if label is not None:
            outcome = answer.get("status", "ok") if ok else f"{status} {answer.get('error')}"
            self._say(caller, f"{label} -> {outcome}")
        if "expect_error" in spec or (label is not None and not ok):
            self._check(
                index,
                f"API {route} by {caller}",
                spec.get("expect_error", "success"),
                answer.get("error", "success") if not ok else "success",
            )
        return answer if ok else None

    def _session(self, index: int, spec: dict[str, Any]) -> None:
        name = self._need(spec, "principal", index)
        principal = self._principal(name, index)
        instance = self._instance(self._need(spec, "instance", index), index)
        expected = self._need(spec, "expect", index)
        actual = "allowed" if self._may_start(name, principal, instance) else "denied"
        self._say(name, f"starts a session on {spec['instance']}: {actual.upper()}")
        self._check(index, f"session {name} -> {spec['instance']}", expected, actual)

    def _may_start(self, name: str, principal: dict[str, Any], instance: str) -> bool:
        """StartSession's IAM decision for the principal on the instance, from its current tags."""
        if principal["type"] == "session":
            decision = self.checker.may_start_session(
                "role", principal["role"], instance, principal["userid"]
            )
        else:
            decision = self.checker.may_start_session(principal["type"], name, instance)
        return decision.allowed

    def _connect(self, index: int, spec: dict[str, Any]) -> None:
        """The operator opens a live session (StartSession): allowed by the same policy evaluation as
        ``session``, then held open in (fake) Session Manager until it is terminated."""
        name = self._need(spec, "principal", index)
        principal = self._principal(name, index)
        instance = self._instance(self._need(spec, "instance", index), index)
        allowed = self._may_start(name, principal, instance)
        if allowed:
            owner, user_id = self._session_owner(name, principal)
            session_id = self.world.ssm.open_session(
                owner_arn=owner, user_id=user_id, target=instance, now=self.world.clock.now()
            )
            self._sessions.append({"principal": name, "instance": spec["instance"], "id": session_id})
        actual = "connected" if allowed else "denied"
        self._say(name, f"opens a session on {spec['instance']}: {actual.upper()}")
        self._check(index, f"connect {name} -> {spec['instance']}", "connected", actual)

    def _live_sessions(self, index: int, spec: dict[str, Any]) -> None:
        """How many sessions DescribeSessions(State=Active) shows for the principal on the instance.

        SSM API Reference, DescribeSessions: Active lists the sessions not terminated; a Session's
        Owner is the AWS user (ARN) that started it. Counted by asking the (fake) service, not from
        what connect steps remember.
        """
        name = self._need(spec, "principal", index)
        principal = self._principal(name, index)
        instance = self._instance(self._need(spec, "instance", index), index)
        expected = self._need(spec, "expect", index)
        owner = self._session_owner(name, principal)[0]
        if principal["type"] == "role":  # any session of the role
            owner = owner.rsplit("/", 1)[0] + "/"
        live = [
            s
            for s in self._describe_sessions("Active", instance)
            if s.get("Owner") == owner or (owner.endswith("/") and str(s.get("Owner")).startswith(owner))
        ]
        self._check(index, f"live sessions of {name} on {spec['instance']}", expected, len(live))

    def _session_owner(self, name: str, principal: dict[str, Any]) -> tuple[str, str]:
        """The Owner ARN Session Manager records for the principal's session, and its aws:userid.

        An IAM user's session is owned by the user's ARN; a role's by the role session's ARN (a
        ``role`` principal connects with a session named after the role).
        """
        iam = self.world.client("iam")
        if principal["type"] == "user":
            return principal["arn"], iam.get_user(UserName=name)["User"]["UserId"]
        if principal["type"] == "session":
            return principal["arn"], principal["userid"]
        role_id = iam.get_role(RoleName=name)["Role"]["RoleId"]
        return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{name}", f"{role_id}:{name}"

    def _describe_sessions(self, state: str, instance: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"State": state}
        if instance is not None:
            params["Filters"] = [{"key": "Target", "value": instance}]
        found: list[dict[str, Any]] = []
        while True:
            page = self.world.ssm.describe_sessions(**params)
            found += page.get("Sessions", [])
            if not page.get("NextToken"):
                return found
            params["NextToken"] = page["NextToken"]

    def _tags(self, index: int, spec: dict[str, Any]) -> None:
        name = self._need(spec, "principal", index)
        expected = {k: self._value(v) for k, v in (spec.get("expect") or {}).items()}
        self._check(index, f"slot tags of {name}", expected, self._slot_tags(name))

    def _grant(self, index: int, spec: dict[str, Any]) -> None:
        request = self._request_of(spec, index)
        item = self._grant_item(request["grant_id"])
        status = item["status"] if item else "none"
        self._check(index, f"grant of [{spec['request']}]", self._need(spec, "expect", index), status)
        if "denial" in spec:
            codes = [d["code"] for d in (item or {}).get("denials", [])]
            self._check(
                index,
                f"denial of [{spec['request']}]",
                spec["denial"],
                spec["denial"] if spec["denial"] in codes else codes,
            )

    def _schedules(self, index: int, spec: dict[str, Any]) -> None:
        self._check(index, "pending schedules", self._need(spec, "expect", index), len(self._schedule_list()))

    def _notified(self, index: int, spec: dict[str, Any]) -> None:
        event_type = self._need(spec, "event_type", index)
        grant_id = self._request_of(spec, index)["grant_id"] if "request" in spec else None
        matching = [
            e
            for e in self.report.events
            if e["event_type"] == event_type and (grant_id is None or e.get("grant_id") == grant_id)
        ]
        label = f"notification {event_type}" + (f" for [{spec['request']}]" if grant_id else "")
        if "count" in spec:  # exactly this many such notifications so far
            self._check(index, f"{label} count", spec["count"], len(matching))
            return
        self._check(index, label, spec.get("expect", True), bool(matching))

    # -- invariants ----------------------------------------------------------------------------------
    def _invariants(self, index: int) -> None:
        """After every step: tags match live grants; nothing expired outlives one reconciler period."""
        now = self.world.clock.now()
        grace = self.period + timedelta(seconds=90)
        items = self._items()
        grants = [i for i in items if i.get("kind") == "grant"]
        holders = {i["pk"].removeprefix("SLOT#"): i.get("grant_id") for i in items if i.get("kind") == "slot"}
        by_id = {g["grant_id"]: g for g in grants}
        tags = {name: self._slot_tags(name) for name, p in self.principals.items() if p["type"] != "session"}
        for grant in grants:
            if grant.get("status") != "ACTIVE":
                continue
            expires = _time(grant["expires_at"])
            name = grant["principal_arn"].rsplit("/", 1)[-1]
            key = slot_key(int(grant["slot"]))
            if now < expires and tags.get(name, {}).get(key) != grant["instance_id"]:
                self._violate(index, "lost_tag", f"{grant['grant_id']} is active but {name} lacks {key}")
            if now > expires + grace:
                self._violate(
                    index, "overdue_grant", f"{grant['grant_id']} expired {to_iso(expires)}, still active"
                )
        for name, slot_tags in tags.items():
            arn = self.principals[name]["arn"]
            for key, value in slot_tags.items():
                if not key.startswith(INSTANCE_KEY):
                    continue
                slot = int(key.removeprefix(INSTANCE_KEY) or 1)
                holder = by_id.get(str(holders.get(f"{arn}#{slot}")))
                explained = holder is not None and holder.get("status") in ("ACTIVE", "PROVISIONING")
                explained = explained and holder is not None and holder.get("instance_id") == value
                seen = self._leak_seen.setdefault((name, key), now) if not explained else None
                if explained:
                    self._leak_seen.pop((name, key), None)
                elif seen is not None and now - seen > grace:
                    self._violate(index, "leaked_tag", f"{name} keeps {key}={value} with no live grant")
        # A tag that is gone starts a new clock if it comes back (tagged again later).
        present = {(name, key) for name, slot_tags in tags.items() for key in slot_tags}
        for gone in set(self._leak_seen) - present:
            del self._leak_seen[gone]

    def _violate(self, index: int, kind: str, text: str) -> None:
        violation = {"step": index, "at": to_iso(self.world.clock.now()), "invariant": kind, "detail": text}
        if violation not in self.report.invariant_violations:
            self.report.invariant_violations.append(violation)
            self._say("INVARIANT", f"{kind}: {text}")

    def _items(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        table = self.world.stack.resources["GrantsTable"].physical_id
        des = TypeDeserializer()
        items = []
        for page in self.world.client("dynamodb").get_paginator("scan").paginate(TableName=table):
            items += [{k: des.deserialize(v) for k, v in item.items()} for item in page["Items"]]
        return items

    # -- reading the emulated AWS state ------------------------------------------------------------
    def _slot_tags(self, name: str) -> dict[str, str]:
        iam = self.world.client("iam")
        principal = self.principals[name]
        if principal["type"] == "session":
            name, principal = principal["role"], self.principals[principal["role"]]
        if principal["type"] == "user":
            tags = iam.list_user_tags(UserName=name)["Tags"]
        else:
            tags = iam.list_role_tags(RoleName=name)["Tags"]
        return {t["Key"]: t["Value"] for t in tags if t["Key"].startswith((INSTANCE_KEY, USER_KEY))}

    def _grant_item(self, grant_id: str) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        table = self.world.stack.resources["GrantsTable"].physical_id
        item = (
            self.world.client("dynamodb")
            .get_item(TableName=table, Key={"pk": {"S": f"GRANT#{grant_id}"}}, ConsistentRead=True)
            .get("Item")
        )
        if not item or "status" not in item:
            return None  # no grant (an item holding only a revocation request is none)
        des = TypeDeserializer()
        return {k: des.deserialize(v) for k, v in item.items()}

    def _schedule_list(self) -> list[dict[str, Any]]:
        scheduler = self.world.client("scheduler")
        group = self.world.stack.resources["ScheduleGroup"].physical_id
        out = []
        for summary in scheduler.list_schedules(GroupName=group)["Schedules"]:
            s = scheduler.get_schedule(Name=summary["Name"], GroupName=group)
            out.append(
                {
                    "name": s["Name"],
                    "expression": s["ScheduleExpression"],
                    "timezone": s.get("ScheduleExpressionTimezone"),
                    "target": s["Target"]["Arn"],
                    "action_after_completion": s.get("ActionAfterCompletion"),
                }
            )
        return out

    def _collect(self) -> None:
        open_ids = {s["id"] for s in self._sessions if not s.get("ended")}
        if open_ids:
            ended = {s["SessionId"] for s in self._describe_sessions("History")} & open_ids
            for session in self._sessions:
                if session["id"] in ended:
                    session["ended"] = True
                    self._say(session["principal"], f"session on {session['instance']} has been terminated")
        for note in self.world.notifications():
            event = {
                "at": note["message"].get("at") or to_iso(self.world.clock.now()),
                "event_type": note["attributes"].get("event_type"),
            }
            message = note["message"]
            for key in (
                "grant_id",
                "principal_arn",
                "instance_id",
                "expires_at",
                "reason",
                "denials",
                "problem",
                "repairs",
                "digest",
                "source",
            ):
                if message.get(key) not in (None, "", []):
                    event[key] = message[key]
            self.report.events.append(event)
            self.report.timeline.append(
                {"at": event["at"], "actor": "sessiongate", "text": _describe(event, self.instances)}
            )

    def _finish(self) -> None:
        for name, principal in self.principals.items():
            if principal["type"] != "session":
                self.report.principals[name] = self._slot_tags(name)
        for plain in self._items():
            if plain.get("kind") == "grant" and plain.get("status") == "ACTIVE":
                grant = {k: plain.get(k) for k in ("grant_id", "principal_arn", "instance_id", "expires_at")}
                grant["slot"] = int(plain["slot"]) if plain.get("slot") is not None else None
                self.report.grants.append(grant)
        self.report.schedules = self._schedule_list()
        self.report.revocations = [
            {
                "schedule": f.name,
                "due": to_iso(f.due),
                "fired": to_iso(f.fired),
                "lag_seconds": (f.fired - f.due).seconds,
            }
            for f in self.world.fired
        ]
        self.report.failed_invocations = [
            {"at": to_iso(i.at), "function": i.function, "trigger": i.trigger, "error": i.error}
            for i in self.world.invocations
            if i.error
        ]
        self.report.aws_calls = dict(sorted(self.world.calls.items()))
        for record, fault in zip(self.report.faults, self._faults, strict=True):
            record["injected"] = fault.injected
        self.report.timeline.sort(key=lambda line: line["at"])  # stable: same-time lines keep their order

    # -- helpers ----------------------------------------------------------------------------------
    def _check(self, index: int, what: str, expected: Any, actual: Any) -> None:
        check = Check(index, what, expected, actual)
        self.report.checks.append(check)
        mark = "ok  " if check.passed else "FAIL"
        self._say("check", f"{mark} {what}: expected {expected!r}, got {actual!r}")

    def _say(self, actor: str, text: str) -> None:
        self.report.timeline.append({"at": to_iso(self.world.clock.now()), "actor": actor, "text": text})

    def _value(self, value: object) -> object:
        """Scenario names stand for what AWS holds: instance name -> id, session name -> aws:userid."""
        if str(value) in self.instances:
            return self.instances[str(value)]
        principal = self.principals.get(str(value))
        if principal is not None and principal["type"] == "session":
            return principal["userid"]
        return value

    def _need(self, spec: dict[str, Any], key: str, index: int) -> Any:
        if key not in spec:
            raise ScenarioError(f"step {index}: missing {key!r}")
        return spec[key]

    def _principal(self, name: str, index: int) -> dict[str, Any]:
        if name not in self.principals:
            raise ScenarioError(f"step {index}: unknown principal {name!r} (declare it under principals)")
        return self.principals[name]

    def _instance(self, name: str, index: int) -> str:
        if name not in self.instances:
            raise ScenarioError(f"step {index}: unknown instance {name!r} (declare it under instances)")
        return self.instances[name]

    def _request_of(self, spec: dict[str, Any], index: int) -> dict[str, Any]:
        rid = self._need(spec, "request", index)
        if rid not in self.requests:
            raise ScenarioError(f"step {index}: unknown request {rid!r}")
        return self.requests[rid]


def _describe(event: dict[str, Any], instances: dict[str, str]) -> str:
    names = {v: k for k, v in instances.items()}
    principal = str(event.get("principal_arn", "")).rsplit("/", 1)[-1]
    instance = names.get(event.get("instance_id", ""), event.get("instance_id", ""))
    kind = event["event_type"]
    if kind == "AccessGranted":
        return f"GRANTED {principal} -> {instance} until {event.get('expires_at')}"
    if kind == "AccessRevoked":
        return f"REVOKED {principal} -> {instance} ({event.get('reason')})"
    if kind == "AccessDenied":
        codes = ", ".join(d["code"] for d in event.get("denials", []))
        return f"DENIED {principal or '?'} -> {instance or '?'}: {codes}"
    if kind == "ReconcilerRepaired":
        done = {k: len(v) for k, v in event.get("repairs", {}).items() if v}
        return "RECONCILER repaired " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in done.items())
    if kind == "PolicyChanged":
        return f"POLICY in effect: {str(event.get('digest', '?'))[:12]} from {event.get('source', '?')}"
    if event.get("problem"):
        return f"{kind}: {event['problem']}"
    return f"{kind} {principal or '?'} -> {instance or '?'}"  # the request API's lifecycle


def _time(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"start {value!r} is not an ISO-8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_file(path: str | Path) -> Report:
    return Runner(load(path)).run()
