"""The steps that check: each compares what the step expects with the state read back from AWS and
records a check in the report (``connect`` also opens the session it checks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..policy import SESSION_DOCUMENT
from . import api, readback

if TYPE_CHECKING:
    from .play import Play


def status(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The request's status as the API reports it to ``by`` (default: its requester)."""
    request = api.native(play, spec, index, "status")
    by = spec.get("by", request["by"])
    answer = api.call(play, index, {}, by, "GET /requests/{id}", request_id=request["api_id"], label=None)
    actual = answer["status"] if answer is not None else "unreadable"
    play.check(index, f"request [{spec['request']}] status", spec["expect"], actual)


def session(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Whether StartSession would be allowed now (the operator policy evaluated on current tags)."""
    name = spec["principal"]
    principal = play.principal(name, index)
    instance = play.instance(spec["instance"], index)
    document = str(spec.get("document", SESSION_DOCUMENT))  # e.g. AWS-StartPortForwardingSession
    actual = "allowed" if readback.may_start(play, name, principal, instance, document) else "denied"
    with_document = "" if document == SESSION_DOCUMENT else f" with {document}"
    play.say(name, f"starts a session on {spec['instance']}{with_document}: {actual.upper()}")
    play.check(index, f"session {name} -> {spec['instance']}{with_document}", spec["expect"], actual)


def connect(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The operator opens a live session (StartSession): allowed by the same policy evaluation as
    ``session``, then held open in (fake) Session Manager until it is terminated."""
    name = spec["principal"]
    principal = play.principal(name, index)
    instance = play.instance(spec["instance"], index)
    allowed = readback.may_start(play, name, principal, instance)
    if allowed:
        owner, user_id = readback.session_owner(play, name, principal)
        session_id = play.world.ssm.open_session(
            owner_arn=owner, user_id=user_id, target=instance, now=play.now()
        )
        play.sessions.append({"principal": name, "instance": spec["instance"], "id": session_id})
    actual = "connected" if allowed else "denied"
    play.say(name, f"opens a session on {spec['instance']}: {actual.upper()}")
    play.check(index, f"connect {name} -> {spec['instance']}", "connected", actual)


def live_sessions(play: Play, index: int, spec: dict[str, Any]) -> None:
    """How many sessions DescribeSessions(State=Active) shows for the principal on the instance.

    SSM API Reference, DescribeSessions: Active lists the sessions not terminated; a Session's
    Owner is the AWS user (ARN) that started it. Counted by asking the (fake) service, not from
    what connect steps remember.
    """
    name = spec["principal"]
    principal = play.principal(name, index)
    instance = play.instance(spec["instance"], index)
    owner = readback.session_owner(play, name, principal)[0]
    if principal["type"] == "role":  # any session of the role
        owner = owner.rsplit("/", 1)[0] + "/"
    live = [
        s
        for s in readback.sessions(play.world, "Active", instance)
        if s.get("Owner") == owner or (owner.endswith("/") and str(s.get("Owner")).startswith(owner))
    ]
    play.check(index, f"live sessions of {name} on {spec['instance']}", spec["expect"], len(live))


def tags(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The principal's slot tags as IAM holds them (instance and session names stand for their ids)."""
    name = spec["principal"]
    play.principal(name, index)
    expected = {k: play.value(v) for k, v in (spec.get("expect") or {}).items()}
    play.check(index, f"slot tags of {name}", expected, readback.slot_tags(play, name))


def instance_tags(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The instance's slot tags as EC2 holds them (instance binding; session and user names stand for
    their aws:userid)."""
    name = spec["instance"]
    instance = play.instance(name, index)
    expected = {k: play.userid(v) for k, v in (spec.get("expect") or {}).items()}
    play.check(index, f"slot tags of instance {name}", expected, readback.instance_slot_tags(play, instance))


def grant(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The grant's status in the table, and optionally one of its denial codes."""
    item = readback.grant_item(play.world, play.request_of(spec, index)["grant_id"])
    status = item["status"] if item else "none"
    play.check(index, f"grant of [{spec['request']}]", spec["expect"], status)
    if "denial" in spec:
        codes = [d["code"] for d in (item or {}).get("denials", [])]
        actual = spec["denial"] if spec["denial"] in codes else codes
        play.check(index, f"denial of [{spec['request']}]", spec["denial"], actual)


def schedules(play: Play, index: int, spec: dict[str, Any]) -> None:
    play.check(index, "pending schedules", spec["expect"], len(readback.schedules(play.world)))


def notified(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Whether (``expect``, default true) or how often (``count``) such a notification came so far."""
    event_type = spec["event_type"]
    grant_id = play.request_of(spec, index)["grant_id"] if "request" in spec else None
    matching = [
        e
        for e in play.report.events
        if e["event_type"] == event_type and (grant_id is None or e.get("grant_id") == grant_id)
    ]
    label = f"notification {event_type}" + (f" for [{spec['request']}]" if grant_id else "")
    if "count" in spec:
        play.check(index, f"{label} count", spec["count"], len(matching))
        return
    play.check(index, label, spec.get("expect", True), bool(matching))


def history_exported(play: Play, index: int, spec: dict[str, Any]) -> None:
    """Whether (``expect``, default true) or how often (``count``) the history export holds a record
    of the ``transition`` (optional) for the ``request`` (optional: its grant's or its own records)."""
    records = readback.history_records(play.world)
    label = "history " + (spec.get("transition") or "record")
    if "request" in spec:
        request = play.request_of(spec, index)
        ids = {request.get("grant_id"), request.get("api_id")} - {None}
        records = [r for r in records if r.get("grant_id") in ids or r.get("request_id") in ids]
        label += f" of [{spec['request']}]"
    if "transition" in spec:
        records = [r for r in records if r.get("transition") == spec["transition"]]
    if "count" in spec:
        play.check(index, f"{label} count", spec["count"], len(records))
        return
    play.check(index, label, spec.get("expect", True), bool(records))
