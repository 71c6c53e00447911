"""Reconciler Lambda: revoke overdue grants (schedule), repair one principal's slot tags (its IAM tag
event from CloudTrail) or instances' (their EC2 tag event, or a launch's state-change event), sweep
every principal and slot lock (daily schedule with ``{"sweep": "full"}``), publish the usage
report (weekly schedule with ``{"report": "usage"}``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiongate import wiring
from sessiongate.observability import lambda_entry

if TYPE_CHECKING:
    from sessiongate.core.engine import Engine

CLOUDTRAIL_API_CALL = "AWS API Call via CloudTrail"
# An instance launched (pending/running): its slot tags repaired, whatever launched it (REVIEW-A F3).
INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
ROLE = "reconcile"  # what it needs: sessiongate.wiring.REQUIRED[ROLE], built by sessiongate.wiring.build


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, deps: Engine | None = None) -> dict[str, Any]:
    """``deps``: the engine to use (tests, sandbox); by default the process-wide one."""
    engine = deps or wiring.engine(ROLE)
    if event.get("detail-type") in (CLOUDTRAIL_API_CALL, INSTANCE_STATE_CHANGE):
        return engine.on_tag_event(event).as_dict()
    if event.get("sweep") == "full":
        return engine.sweep().as_dict()
    if event.get("report") == "usage":
        return engine.usage_report().as_dict()
    return engine.reconcile().as_dict()
