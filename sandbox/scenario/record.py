"""What happened, from the world into the report: notifications and ended sessions after each step,
the state read back at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiongate.clock import to_iso

from . import readback
from .report import describe, event_of

if TYPE_CHECKING:
    from .play import Play


def collect(play: Play) -> None:
    """Note the sessions Session Manager ended and the lifecycle notifications published so far."""
    open_ids = {s["id"] for s in play.sessions if not s.get("ended")}
    if open_ids:
        ended = {s["SessionId"] for s in readback.sessions(play.world, "History")} & open_ids
        for session in play.sessions:
            if session["id"] in ended:
                session["ended"] = True
                play.say(session["principal"], f"session on {session['instance']} has been terminated")
    for note in play.world.notifications():
        event = event_of(note, to_iso(play.now()))
        play.report.events.append(event)
        play.report.timeline.append(
            {"at": event["at"], "actor": "sessiongate", "text": describe(event, play.instances)}
        )


def finish(play: Play) -> None:
    """The report's end state: tags, active grants, schedules, revocations, failures, AWS calls."""
    report, world = play.report, play.world
    for name, principal in play.principals.items():
        if principal["type"] != "session":
            report.principals[name] = readback.slot_tags(play, name)
    for plain in readback.ledger_items(world):
        if plain.get("kind") == "grant" and plain.get("status") == "ACTIVE":
            grant = {k: plain.get(k) for k in ("grant_id", "principal_arn", "instance_id", "expires_at")}
            grant["slot"] = int(plain["slot"]) if plain.get("slot") is not None else None
            report.grants.append(grant)
    shown = ("grant_id", "principal_arn", "instance_id", "log_destination", "sessions", "usage_unknown")
    report.usage = [
        {k: plain[k] for k in shown if plain.get(k) is not None}
        for plain in readback.ledger_items(world)
        if plain.get("kind") == "grant"
        and (plain.get("log_destination") or plain.get("sessions") is not None)
    ]
    report.schedules = readback.schedules(world)
    report.revocations = [
        {
            "schedule": f.name,
            "due": to_iso(f.due),
            "fired": to_iso(f.fired),
            "lag_seconds": (f.fired - f.due).seconds,
        }
        for f in world.fired
    ]
    report.failed_invocations = [
        {"at": to_iso(i.at), "function": i.function, "trigger": i.trigger, "error": i.error}
        for i in world.invocations
        if i.error
    ]
    report.aws_calls = dict(sorted(world.calls.items()))
    report.identity_center = readback.identity_center(play)  # (read after counting SessionGate's calls)
    report.history = [
        {k: r.get(k) for k in ("key", "transition", "at", "grant_id", "request_id", "principal_arn", "via")}
        for r in readback.history_records(world)
    ]
    for record, fault in zip(report.faults, play.faults, strict=True):
        record["injected"] = fault.injected
    report.timeline.sort(key=lambda line: line["at"])  # stable: same-time lines keep their order
