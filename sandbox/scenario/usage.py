"""Issue 17 steps: Session Manager preferences set by an administrator, the usage a grant's record holds
(the sessions recorded after its revocation, where its logs went), and the weekly usage report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import readback

if TYPE_CHECKING:
    from .play import Play


def session_preferences(play: Play, index: int, spec: dict[str, Any]) -> None:
    """An administrator sets the account's Session Manager preferences (a new version of
    SSM-SessionManagerRunShell with these ``inputs``), or deletes the document (``delete: true``)."""
    if spec.get("delete"):
        play.world.ssm.set_preferences(None)
        play.say("admin", "deletes the Session Manager preferences document")
        return
    inputs = dict(spec.get("inputs") or {})
    play.world.ssm.set_preferences(inputs)
    play.say("admin", f"sets the Session Manager preferences: {inputs}")


def usage(play: Play, index: int, spec: dict[str, Any]) -> None:
    """What the grant's record says of its usage: ``expect`` the number of sessions recorded, or
    ``pending`` (not recorded yet) or ``unknown``; ``destination``: its log destination."""
    item = readback.grant_item(play.world, play.request_of(spec, index)["grant_id"]) or {}
    if item.get("sessions") is not None:
        actual: Any = len(item["sessions"])
    else:
        actual = "unknown" if item.get("usage_unknown") else "pending"
    play.check(index, f"sessions of [{spec['request']}]", spec["expect"], actual)
    if "destination" in spec:
        where = item.get("log_destination")
        play.check(index, f"log destination of [{spec['request']}]", spec["destination"], where)


def usage_report(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The reconciler's weekly report, run now (its schedule's input): each ``expect`` key checked
    against the report it published (``UsageReport``, README "Usage")."""
    arn = play.world.function_arn("ReconcileGrantsFunction")
    invocation = play.world.invoke(arn, {"report": "usage"}, trigger="scenario", sync=True)
    report = (invocation.result or {}).get("report") or {}
    counts = f"{report.get('grants')} grants, {report.get('unused_grants')} unused"
    play.say("reconciler", f"reports usage: {counts}")
    for key, expected in (spec.get("expect") or {}).items():
        play.check(index, f"usage report {key}", expected, report.get(key))
