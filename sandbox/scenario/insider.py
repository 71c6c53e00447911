"""An account insider who is not a deployer, with AWS admin rights on a service (never IAM), tries to
get around the approval (issue 13).

The sandbox does not evaluate resource policies on data calls, so a write the table policy would
refuse goes through here: what follows shows the next line of defence holding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sessiongate.access_requests.records import Approval, RequestStatus
from sessiongate.adapters.request_store import RequestStore, to_item
from sessiongate.clock import to_iso
from sessiongate.core.model import ACCESS_APPROVED, EVENT_SOURCE

from ..world import ACCOUNT
from .schema import ScenarioError

if TYPE_CHECKING:
    from .play import Play


def insider(play: Play, index: int, spec: dict[str, Any]) -> None:
    """The step's ``action`` (one of ``ACTIONS``), by ``by``."""
    ACTIONS[spec["action"]](play, index, spec, spec["by"])


def forge_approval(play: Play, index: int, spec: dict[str, Any], by: str) -> None:
    """``dynamodb:PutItem`` of ``request`` as APPROVED by ``approvers``, then
    ``lambda:InvokeFunction`` of the grant function with the matching event."""
    request = play.request_of(spec, index)
    if "api_id" not in request:
        raise ScenarioError(f"step {index}: forge_approval needs a request made with via: api")
    approvers = [play.principal(str(a), index)["arn"] for a in spec["approvers"]]
    table = play.world.stack.resources["RequestsTable"].physical_id
    record = RequestStore(play.world.client("dynamodb"), table).get(request["api_id"])
    if record is None:
        raise ScenarioError(f"step {index}: request [{spec['request']}] is not in the table")
    now = to_iso(play.now())
    forged = replace(
        record,
        status=RequestStatus.APPROVED,
        approvals=tuple(Approval(arn, 0, now) for arn in approvers),
        approver_arns=tuple(approvers),
        approved_at=now,
        version=record.version + 1,
    )
    play.world.client("dynamodb").put_item(TableName=table, Item=to_item(forged))
    play.say(by, f"writes [{spec['request']}] as APPROVED by {', '.join(map(str, spec['approvers']))}")
    event = {
        "source": EVENT_SOURCE,
        "detail-type": ACCESS_APPROVED,
        "detail": forged.to_access_approved().to_detail(),
    }
    play.world.invoke(play.world.function_arn("GrantAccessFunction"), event, trigger="insider")
    play.world.settle()
    play.say(by, "invokes the grant function directly")


def retag_instance(play: Play, index: int, spec: dict[str, Any], by: str) -> None:
    """``ec2:CreateTags`` on ``instance`` (e.g. prod re-tagged dev, or a slot tag naming someone: a
    principal name stands for its aws:userid). CloudTrail records the call for EventBridge, as the IAM
    tag calls of ``tamper``."""
    name = spec["instance"]
    instance_id = play.instance(name, index)
    tags = {str(k): str(play.userid(v)) for k, v in (spec.get("tags") or {}).items()}
    play.world.client("ec2").create_tags(
        Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )
    play.world.record_api_call(
        {
            "eventSource": "ec2.amazonaws.com",
            "eventName": "CreateTags",
            "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/{by}"},
            "requestParameters": {
                "resourcesSet": {"items": [{"resourceId": instance_id}]},
                "tagSet": {"items": [{"key": k, "value": v} for k, v in tags.items()]},
            },
        }
    )
    play.say(by, f"re-tags {name} by hand: " + ", ".join(f"{k}={v}" for k, v in tags.items()))


def write_policy(play: Play, index: int, spec: dict[str, Any], by: str) -> None:
    """``ssm:PutParameter`` of the approval policy parameter, unsigned."""
    variables = play.world.stack.resources["RequestApiFunction"].properties["Environment"]["Variables"]
    name = variables.get("SESSIONGATE_APPROVAL_POLICY_PARAMETER")
    if not name:
        raise ScenarioError(f"step {index}: write_policy needs the scenario's approval_policy")
    document = json.dumps(play.arns(spec["policy"]))
    play.world.client("ssm").put_parameter(Name=name, Value=document, Type="String", Overwrite=True)
    play.say(by, f"writes the approval policy parameter {name} by hand")


ACTIONS: dict[str, Callable[[Play, int, dict[str, Any], str], None]] = {
    "forge_approval": forge_approval,
    "retag_instance": retag_instance,
    "write_policy": write_policy,
}
