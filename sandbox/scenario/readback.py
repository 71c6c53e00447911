"""The emulated AWS state read back: what checks, invariants and the report state.

Tags come from IAM, schedules from Scheduler, grants from the DynamoDB table, sessions from (fake)
Session Manager: never from the engine's return values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer

from sessiongate.core.slots import FOR_KEY, INSTANCE_KEY, USER_KEY

from ..policy import SESSION_DOCUMENT
from ..world import ACCOUNT

if TYPE_CHECKING:
    from ..world import World
    from .play import Play


def slot_tags(play: Play, name: str) -> dict[str, str]:
    """The slot tags IAM holds on a principal (a session's: its role's)."""
    iam = play.world.client("iam")
    principal = play.principals[name]
    if principal["type"] == "session":
        name, principal = principal["role"], play.principals[principal["role"]]
    if principal["type"] == "user":
        tags = iam.list_user_tags(UserName=name)["Tags"]
    else:
        tags = iam.list_role_tags(RoleName=name)["Tags"]
    return {t["Key"]: t["Value"] for t in tags if t["Key"].startswith((INSTANCE_KEY, USER_KEY))}


def identity_center(play: Play) -> dict[str, Any]:
    """Each type: sso principal as IAM and the identity store hold it: its permission set's role (path,
    attached policies), its session (ARN, aws:userid) and the groups the identity store puts it in."""
    from .setup import IDENTITY_STORE_ID  # the sandbox's store

    people = {name: p for name, p in play.principals.items() if p.get("sso")}
    if not people:
        return {}
    iam, store = play.world.client("iam"), play.world.client("identitystore")
    listed = store.list_groups(IdentityStoreId=IDENTITY_STORE_ID)["Groups"]
    groups = {g["GroupId"]: g["DisplayName"] for g in listed}
    out: dict[str, Any] = {}
    for name, person in people.items():
        role = iam.get_role(RoleName=person["role"])["Role"]
        attached = iam.list_attached_role_policies(RoleName=person["role"])["AttachedPolicies"]
        member_of: list[str] = []
        wanted = [{"AttributePath": "UserName", "AttributeValue": person["user"]}]
        for user in store.list_users(IdentityStoreId=IDENTITY_STORE_ID, Filters=wanted)["Users"]:
            memberships = store.list_group_memberships_for_member(
                IdentityStoreId=IDENTITY_STORE_ID, MemberId={"UserId": user["UserId"]}
            )["GroupMemberships"]
            member_of += sorted(groups[m["GroupId"]] for m in memberships if m["GroupId"] in groups)
        out[name] = {
            "user": person["user"],
            "permission_set": person["permission_set"],
            "role": role["Arn"],
            "role_path": role["Path"],
            "policies": [p["PolicyName"] for p in attached],
            "session_arn": person["arn"],
            "userid": person["userid"],
            "groups": member_of,
        }
    return out


def instance_slot_tags(play: Play, instance_id: str) -> dict[str, str]:
    """The slot tags EC2 holds on an instance (instance binding), in any letter case."""
    reservations = play.world.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    tags = [t for r in reservations for i in r["Instances"] for t in i.get("Tags", [])]
    return {t["Key"]: t["Value"] for t in tags if t["Key"].lower().startswith(FOR_KEY.lower())}


def ledger_items(world: World) -> list[dict[str, Any]]:
    """Every item of the grants table (grants, slots, ...), as plain values."""
    table = world.stack.resources["GrantsTable"].physical_id
    items = []
    for page in world.client("dynamodb").get_paginator("scan").paginate(TableName=table):
        items += [_plain(item) for item in page["Items"]]
    return items


def history_records(world: World) -> list[dict[str, Any]]:
    """The history export's records in its bucket (every object under history/, in key order)."""
    from sessiongate.history import PREFIX, parse_lines

    resource = world.stack.resources.get("HistoryBucket")
    if resource is None:
        return []
    s3, records = world.client("s3"), []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=resource.physical_id, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=resource.physical_id, Key=obj["Key"])["Body"].read()
            records += [{**r, "key": obj["Key"]} for r in parse_lines(body)]
    return records


def grant_item(world: World, grant_id: str) -> dict[str, Any] | None:
    table = world.stack.resources["GrantsTable"].physical_id
    item = (
        world.client("dynamodb")
        .get_item(TableName=table, Key={"pk": {"S": f"GRANT#{grant_id}"}}, ConsistentRead=True)
        .get("Item")
    )
    if not item or "status" not in item:
        return None  # no grant (an item holding only a revocation request is none)
    return _plain(item)


def schedules(world: World) -> list[dict[str, Any]]:
    """The pending schedules of the stack's schedule group."""
    scheduler = world.client("scheduler")
    group = world.stack.resources["ScheduleGroup"].physical_id
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


def sessions(world: World, state: str, instance: str | None = None) -> list[dict[str, Any]]:
    """DescribeSessions with ``state`` (Active or History), every page, optionally on one target."""
    params: dict[str, Any] = {"State": state}
    if instance is not None:
        params["Filters"] = [{"key": "Target", "value": instance}]
    found: list[dict[str, Any]] = []
    while True:
        page = world.ssm.describe_sessions(**params)
        found += page.get("Sessions", [])
        if not page.get("NextToken"):
            return found
        params["NextToken"] = page["NextToken"]


def session_owner(play: Play, name: str, principal: dict[str, Any]) -> tuple[str, str]:
    """The Owner ARN Session Manager records for the principal's session, and its aws:userid.

    An IAM user's session is owned by the user's ARN; a role's by the role session's ARN (a
    ``role`` principal connects with a session named after the role).
    """
    iam = play.world.client("iam")
    if principal["type"] == "user":
        return principal["arn"], iam.get_user(UserName=name)["User"]["UserId"]
    if principal["type"] == "session":
        return principal["arn"], principal["userid"]
    role_id = iam.get_role(RoleName=name)["Role"]["RoleId"]
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{name}", f"{role_id}:{name}"


def may_start(
    play: Play, name: str, principal: dict[str, Any], instance: str, document: str = SESSION_DOCUMENT
) -> bool:
    """StartSession's IAM decision for the principal on the instance (with the session document), from
    its current tags."""
    if principal["type"] == "session":
        decision = play.checker.may_start_session(
            "role", principal["role"], instance, principal["userid"], document=document
        )
    else:
        decision = play.checker.may_start_session(principal["type"], name, instance, document=document)
    return decision.allowed


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    des = TypeDeserializer()
    return {k: des.deserialize(v) for k, v in item.items()}
