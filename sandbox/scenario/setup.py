"""Before the first step: the scenario's principals (IAM), instances (EC2) and approval policy (SSM)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from sessiongate.access_requests.policy import PolicyError
from sessiongate.adapters.kms import Macs
from sessiongate.adapters.policy_source import sign_and_put

from ..world import ACCOUNT
from .schema import ScenarioError

if TYPE_CHECKING:
    from .play import Play

TRUST_NOBODY = '{"Version":"2012-10-17","Statement":[]}'
SANDBOX_AMI = "ami-12c6146b"


def setup(play: Play, scenario: dict[str, Any]) -> None:
    for name, spec in (scenario.get("principals") or {}).items():
        play.principals[name] = _principal(play, name, spec or {})
    for name, spec in (scenario.get("instances") or {}).items():
        play.instances[name] = _instance(play, name, spec or {})
    if "approval_policy" in scenario:
        set_approval_policy(play, scenario["approval_policy"])


def _principal(play: Play, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Create an IAM user or role (a ``session`` is one person's session of a declared role)."""
    iam = play.world.client("iam")
    kind = spec.get("type", "user")
    if kind == "session":  # e.g. an IAM Identity Center user of a shared role
        role = spec["role"]
        role_id = iam.get_role(RoleName=role)["Role"]["RoleId"]
        arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{name}"
        return {"type": "session", "role": role, "arn": arn, "userid": f"{role_id}:{name}"}
    path = spec.get("path", "/")
    tags = [{"Key": k, "Value": str(v)} for k, v in (spec.get("tags") or {}).items()]
    operator = spec.get("operator", True)  # false: the operator policy is not attached
    operator_policy = play.world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
    if kind == "role":
        role = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST_NOBODY, Tags=tags)
        if operator:
            iam.attach_role_policy(RoleName=name, PolicyArn=operator_policy)
        return {"type": kind, "arn": role["Role"]["Arn"]}
    arn = iam.create_user(UserName=name, Path=path, Tags=tags)["User"]["Arn"]
    if operator:
        iam.attach_user_policy(UserName=name, PolicyArn=operator_policy)
    for group in spec.get("groups") or []:
        # IAM groups the user belongs to (e.g. the Change Manager approver group).
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_group(GroupName=str(group))
        iam.add_user_to_group(GroupName=str(group), UserName=name)
    return {"type": kind, "arn": arn}


def _instance(play: Play, name: str, spec: dict[str, Any]) -> str:
    """Run an EC2 instance, SSM-managed unless ``managed: false``."""
    kwargs: dict[str, Any] = {"ImageId": SANDBOX_AMI, "MinCount": 1, "MaxCount": 1}
    tags = [{"Key": k, "Value": str(v)} for k, v in (spec.get("tags") or {}).items()]
    if tags:
        kwargs["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
    instance_id = str(play.world.client("ec2").run_instances(**kwargs)["Instances"][0]["InstanceId"])
    managed = spec.get("managed", True)
    if managed:
        play.world.ssm.managed.add(instance_id)
    play.say("setup", f"instance {name} is {instance_id}" + ("" if managed else " (not SSM-managed)"))
    return instance_id


def set_approval_policy(play: Play, policy: dict[str, Any]) -> None:
    """The native API's approval policy (the SSM parameter); principal names stand for their ARNs."""
    variables = play.world.stack.resources["RequestApiFunction"].properties["Environment"]["Variables"]
    name = variables["SESSIONGATE_APPROVAL_POLICY_PARAMETER"]
    # Signed as a deployer signs it (sessiongate policy sign --put), with the stack's policy key.
    try:
        sign_and_put(
            play.arns(policy),
            Macs(play.world.client("kms")),
            variables["SESSIONGATE_APPROVAL_POLICY_KEY"],
            play.world.client("ssm"),
            name,
        )
    except PolicyError as exc:
        raise ScenarioError(f"approval_policy: {exc}") from None
    rules = len(policy.get("rules") or [])
    play.say("setup", f"approval policy {name} signed and set ({rules} rule(s))")
