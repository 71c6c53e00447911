"""The steps that act: requests and decisions through Change Manager (or the request API for a
``via: api`` request), the clock, and what goes wrong around SessionGate (drift, faults, lost or
repeated deliveries)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..world import ACCOUNT, REGION
from . import api
from .record import collect
from .schema import parse_duration

if TYPE_CHECKING:
    from .play import Play


def request(play: Play, index: int, spec: dict[str, Any]) -> None:
    """A change request from the AllowSsmSessionStart template (``via: api``: a native request)."""
    if spec.get("via") == "api":
        api.request(play, index, spec)
        return
    by = play.principal(spec["by"], index)
    target_name = spec.get("for", spec["by"])
    target = play.principal(target_name, index)
    if target["type"] == "session":  # a session asks for its role
        target_name, target = target["role"], play.principals[target["role"]]
    instance = play.instance(spec["instance"], index)
    minutes = spec.get("minutes", play.world.stack.parameters.get("ApprovalValidityMinutes", 10))
    runbook = {
        "DocumentName": "AllowSsmSessionStartRunbook",
        "Parameters": {
            "InstanceId": [instance],
            "PrincipalType": [target["type"].capitalize()],
            "PrincipalName": [target_name],
            "ValidityMinutes": [str(minutes)],
        },
    }
    params: dict[str, Any] = {
        "DocumentName": "AllowSsmSessionStartTemplate",
        "ChangeRequestName": spec.get("reason", f"shell on {spec['instance']} for {target_name}"),
        "Runbooks": [runbook],
    }
    if "start_in" in spec:
        params["ScheduledTime"] = play.now() + parse_duration(spec["start_in"])
    execution_id = play.world.ssm.start_change_request_execution(
        requester_arn=by["arn"], now=play.now(), **params
    )["AutomationExecutionId"]
    play.requests[spec["id"]] = {"execution_id": execution_id, "grant_id": f"cm-{execution_id}"}
    when = f", starting in {spec['start_in']}" if "start_in" in spec else ""
    play.say(
        spec["by"],
        f"requests a shell on {spec['instance']} for {target_name}, {minutes} min{when} [{spec['id']}]",
    )


def approve(play: Play, index: int, spec: dict[str, Any], signal: str = "Approve") -> None:
    """An approver's decision: SendAutomationSignal, then Change Manager's status event.

    ``ssm_lag``: SSM's reads show the decision only this long after it (eventual consistency), while
    Change Manager publishes the status change at once; once it shows, the runbook starts and
    RunbookInProgress is published too.
    """
    request = play.request_of(spec, index)
    if "api_id" in request:
        api.decide(play, index, spec, request, signal)
        return
    lag = parse_duration(spec["ssm_lag"]) if "ssm_lag" in spec else None
    status = _signal(play, index, spec, request, signal, lag)
    if status in ("Approved", "Scheduled", "Rejected"):
        # Change Manager publishes the status change on the default bus; the router takes it from there.
        publish_status(play, request["execution_id"])
        play.world.settle()
    if lag and status == "Approved":
        _start_runbook_after(play, spec, request["execution_id"], lag)


def reject(play: Play, index: int, spec: dict[str, Any]) -> None:
    approve(play, index, spec, signal="Reject")


def _signal(
    play: Play, index: int, spec: dict[str, Any], request: dict[str, Any], signal: str, lag: timedelta | None
) -> str | None:
    """SendAutomationSignal as the step's ``by``: the new status, or None when SSM refused it."""
    params: dict[str, Any] = {"AutomationExecutionId": request["execution_id"], "SignalType": signal}
    if spec.get("comment"):
        params["Payload"] = {"Comment": [str(spec["comment"])]}
    signer = play.principal(spec["by"], index)["arn"]
    verb = "approves" if signal == "Approve" else "rejects"
    what = f"{signal} by {spec['by']}"
    try:
        status = play.world.ssm.send_automation_signal(
            signer_arn=signer, now=play.now(), visible_after=lag, **params
        )
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        play.say(spec["by"], f"{verb} [{spec['request']}] -> refused: {code}")
        play.check(index, what, spec.get("expect_error", "success"), code)
        return None
    if "expect_error" in spec:
        play.check(index, what, spec["expect_error"], "success")
    lagging = f" (SSM shows it after {spec['ssm_lag']})" if lag else ""
    play.say(spec["by"], f"{verb} [{spec['request']}] -> {status}{lagging}")
    return str(status)


def _start_runbook_after(play: Play, spec: dict[str, Any], execution_id: str, lag: timedelta) -> None:
    def runbook_starts() -> None:
        play.world.ssm.start_runbook(execution_id, now=play.now())
        play.say("ssm", f"runbook of [{spec['request']}] starts -> RunbookInProgress")
        publish_status(play, execution_id)

    play.world.at(play.now() + lag, runbook_starts)


def publish_status(play: Play, execution_id: str) -> None:
    """Change Manager's ``Change Request Status Update`` event for the execution, on the default bus."""
    play.world.put_event(
        play.world.ssm.status_event(execution_id, account=ACCOUNT, region=REGION, now=play.now())
    )


def advance(play: Play, index: int, spec: object) -> None:
    """Virtual time passes (schedules fire, rules run); what happened is collected before the line."""
    play.world.advance(parse_duration(spec))
    collect(play)
    play.say("clock", f"{spec} pass")


def tamper(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Someone with IAM rights sets tags by hand, bypassing SessionGate (drift). CloudTrail records the
    call for EventBridge unless ``recorded: false`` (its events are best effort: a lost one)."""
    name = spec["principal"]
    principal = play.principal(name, index)
    tags = [
        {"Key": k, "Value": play.instances.get(str(v), str(v))} for k, v in (spec.get("tags") or {}).items()
    ]
    iam = play.world.client("iam")
    if principal["type"] == "user":
        iam.tag_user(UserName=name, Tags=tags)
        call, named = "TagUser", {"userName": name}
    else:
        call, named = "TagRole", {"roleName": principal.get("role", name)}
        iam.tag_role(RoleName=named["roleName"], Tags=tags)
    # CloudTrail records the call (an administrator's, not SessionGate's) for EventBridge.
    if spec.get("recorded", True) is not False:
        play.world.record_api_call(
            {
                "eventSource": "iam.amazonaws.com",
                "eventName": call,
                "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/admin"},
                "requestParameters": {
                    **named,
                    "tags": [{"key": t["Key"], "value": t["Value"]} for t in tags],
                },
            }
        )
    play.say(name, f"tags set by hand: {', '.join(t['Key'] for t in tags)}")


def fault(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Make the next ``times`` attempts of an AWS operation fail with ``code`` (botocore retries)."""
    operation = str(spec["operation"])
    code, times = str(spec.get("code", "ThrottlingException")), int(spec.get("times", 1))
    play.faults.append(play.world.faults.add(operation, code, times))
    play.report.faults.append({"step": index, "operation": operation, "code": code, "times": times})
    play.say("fault", f"next {times} call(s) of {operation} fail with {code}")


def drop_schedule(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Lose a revoke schedule (deleted by hand, never delivered); ``request: all`` loses them all."""
    group = play.world.stack.resources["ScheduleGroup"].physical_id
    scheduler = play.world.client("scheduler")
    if spec["request"] == "all":
        names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
        for name in names:
            scheduler.delete_schedule(Name=name, GroupName=group)
        play.say("fault", f"all {len(names)} pending schedule(s) are lost")
        return
    request = play.request_of(spec, index)
    try:
        scheduler.delete_schedule(Name=f"sg-revoke-{request['grant_id']}", GroupName=group)
        play.say("fault", f"revoke schedule of [{spec['request']}] is lost")
    except scheduler.exceptions.ResourceNotFoundException:
        play.say("fault", f"[{spec['request']}] had no revoke schedule to lose")


def redeliver(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Deliver a trigger again (EventBridge and Scheduler deliver at least once)."""
    request = play.request_of(spec, index)
    what = spec.get("what", "approval")
    if what == "approval":
        publish_status(play, request["execution_id"])
        play.world.settle()
    else:
        payload = {"grant_id": request["grant_id"], "reason": "expired"}
        play.world.invoke(
            play.world.function_arn("RevokeAccessFunction"), payload, trigger="redelivered schedule"
        )
    play.say("fault", f"{what} of [{spec['request']}] delivered again")


def reconcile(play: Play, index: int, spec: dict[str, Any]) -> None:
    arn = play.world.function_arn("ReconcileGrantsFunction")
    play.world.invoke(arn, {"source": "aws.events", "detail-type": "Scheduled Event"}, trigger="scenario")
    play.say("reconciler", "runs")


def revoke(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Early revoke ("I'm done") through the engine's revoke path, as the API does."""
    request = play.request_of(spec, index)
    if "api_id" in request:
        body = {"reason": str(spec["reason"])} if spec.get("reason") else {}
        api.act(play, index, spec, request, "revoke", body, f"revokes [{spec['request']}]")
        return
    by = play.principal(spec["by"], index)
    outcome = play.world.engine("revoke").revoke(request["grant_id"], reason="done", by=by["arn"])
    play.say(spec["by"], f"is done with [{spec['request']}] -> {outcome.result}")
