"""Before the first step: the scenario's principals (IAM), instances (EC2) and approval policy (SSM)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import TYPE_CHECKING, Any

from sessiongate.access_requests.policy import PolicyError
from sessiongate.adapters.kms import Macs
from sessiongate.adapters.policy_source import sign_and_put

from .. import fake_iam
from ..world import ACCOUNT
from .schema import ScenarioError

if TYPE_CHECKING:
    from .play import Play

TRUST_NOBODY = '{"Version":"2012-10-17","Statement":[]}'
SANDBOX_AMI = "ami-12c6146b"
# IAM Identity Center in the sandbox: its identity store (moto's identitystore) and the read-only role
# SessionGate assumes to ask it (member/identity-store.yaml's, here in the sandbox's one account).
IDENTITY_STORE_ID = "d-1234567890"
IDENTITY_STORE_READER = "SessionGateIdentityStoreReader"
IDENTITY_STORE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sessiongate/{IDENTITY_STORE_READER}"
# A permission set role trusts the account's IAM Identity Center SAML provider (IAM Identity Center
# User Guide, "IAM roles created by IAM Identity Center").
SSO_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {
                    "Federated": f"arn:aws:iam::{ACCOUNT}:saml-provider/AWSSSO_0123456789abcdef_DO_NOT_DELETE"
                },
                "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
                "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}},
            }
        ],
    }
)


def identity_center_parameters(scenario: dict[str, Any]) -> dict[str, str]:
    """Stack parameters a scenario with Identity Center groups needs (its policy may name them)."""
    if not (scenario.get("identity_center") or {}).get("groups"):
        return {}
    return {"IdentityStoreId": IDENTITY_STORE_ID, "IdentityStoreRoleArn": IDENTITY_STORE_ROLE_ARN}


def setup(play: Play, scenario: dict[str, Any]) -> None:
    identity_center = scenario.get("identity_center") or {}
    for name, spec in (scenario.get("principals") or {}).items():
        if (spec or {}).get("type") == "sso":
            play.principals[name] = _sso(play, name, spec, identity_center.get("permission_sets") or {})
        else:
            play.principals[name] = _principal(play, name, spec or {})
    if identity_center.get("groups"):
        _identity_store(play, identity_center["groups"])
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
            # A role in IAM Identity Center's reserved path only IdC may change (type: sso says it all).
            reserved = fake_iam.is_protected_role(path)
            with fake_iam.as_identity_center() if reserved else contextlib.nullcontext():
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


def sso_role_name(permission_set: str, account: str) -> str:
    """``AWSReservedSSO_<PermissionSet>_<16 hex>``: one role per permission set and account (the hash
    is IAM Identity Center's own; here a stable one)."""
    digest = hashlib.sha256(f"{account}/{permission_set}".encode()).hexdigest()[:16]
    return f"AWSReservedSSO_{permission_set}_{digest}"


def _sso(play: Play, name: str, spec: dict[str, Any], permission_sets: dict[str, Any]) -> dict[str, Any]:
    """An IAM Identity Center user's session of its permission set's role: the role (in the reserved path,
    unmodifiable except by Identity Center, with the permission set's managed policies) is provisioned
    once per permission set and account, and shared by everyone assigned to it."""
    account = str(spec.get("account", ACCOUNT))
    if account != ACCOUNT:
        raise ScenarioError(
            f"principal {name}: account {account}: the sandbox emulates one account ({ACCOUNT}) so far"
        )
    user, permission_set = str(spec["user"]), str(spec["permission_set"])
    role = sso_role_name(permission_set, account)
    iam = play.world.client("iam")
    if role not in play.principals:
        arn = iam.create_role(
            RoleName=role, Path=fake_iam.RESERVED_SSO_PATH, AssumeRolePolicyDocument=SSO_TRUST
        )["Role"]["Arn"]
        policies = (permission_sets.get(permission_set) or {}).get("managed_policies", ["operator"])
        with fake_iam.as_identity_center():  # only Identity Center writes to its roles
            for policy in policies:
                policy_arn = _policy_arn(play, str(policy), account)
                try:
                    iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)
                except iam.exceptions.NoSuchEntityException:
                    raise ScenarioError(
                        f"permission set {permission_set}: policy {policy_arn} does not exist in account "
                        f"{account} (IAM Identity Center needs it there)"
                    ) from None
        play.principals[role] = {"type": "role", "arn": arn, "permission_set": permission_set}
        play.say("setup", f"permission set {permission_set} is role {role} ({', '.join(map(str, policies))})")
    role_id = iam.get_role(RoleName=role)["Role"]["RoleId"]
    return {
        "type": "session",
        "sso": True,
        "role": role,
        "user": user,
        "permission_set": permission_set,
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{user}",
        "userid": f"{role_id}:{user}",
    }


def _policy_arn(play: Play, policy: str, account: str) -> str:
    """A permission set's managed policy: ``operator`` (SessionGate's), an ARN, or a policy name in the
    account (a customer managed policy reference)."""
    if policy == "operator":
        return str(play.world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn)
    if policy.startswith("arn:"):
        return policy
    return f"arn:aws:iam::{account}:policy/{policy}"


def _identity_store(play: Play, groups: dict[str, list[str]]) -> None:
    """The identity store's users (every type: sso user) and the scenario's groups, and the read-only
    role SessionGate assumes to ask it."""
    store = play.world.client("identitystore")
    users = sorted({str(p["user"]) for p in play.principals.values() if p.get("sso")})
    ids = {}
    for user in users:
        ids[user] = store.create_user(
            IdentityStoreId=IDENTITY_STORE_ID,
            UserName=user,
            DisplayName=user,
            Name={"GivenName": user.split("@")[0], "FamilyName": "Sandbox"},
        )["UserId"]
    for group, members in groups.items():
        group_id = store.create_group(IdentityStoreId=IDENTITY_STORE_ID, DisplayName=group)["GroupId"]
        for member in members:
            store.create_group_membership(
                IdentityStoreId=IDENTITY_STORE_ID, GroupId=group_id, MemberId={"UserId": ids[member]}
            )
        play.say("setup", f"Identity Center group {group}: {', '.join(members) or 'nobody'}")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    play.world.client("iam").create_role(
        RoleName=IDENTITY_STORE_READER, Path="/sessiongate/", AssumeRolePolicyDocument=json.dumps(trust)
    )


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
