"""Least privilege of the engine roles, evaluated by an IAM policy evaluator over template.yaml's policies.

The roles are created in moto exactly as the template declares them (sandbox.World); principalmapper
evaluates their policies with conditions (``aws:TagKeys``, ``ForAllValues``, ``Null``), which moto's own
evaluator cannot. The same questions against real IAM are in tests/aws (opt-in).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from sandbox.policy import SessionChecker
from sandbox.world import ACCOUNT, REGION, World
from sessiongate import slots

USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ops-oncall"


@pytest.fixture(scope="module")
def iam() -> Iterator[tuple[World, SessionChecker]]:
    with World() as world:
        yield world, SessionChecker(world.client("iam"), REGION, ACCOUNT)


def _role(world: World, logical_id: str) -> str:
    return world.stack.resources[logical_id].physical_id


# Every engine role that may remove slot tags (the reconciler repairs drift, the request API revokes early).
UNTAGGING_ROLES = [
    "GrantAccessFunctionRole",
    "RevokeAccessFunctionRole",
    "ReconcileGrantsFunctionRole",
    "RequestApiFunctionRole",
]


@pytest.mark.parametrize("function", UNTAGGING_ROLES)
@pytest.mark.parametrize(
    ("action", "resource", "keys", "allowed"),
    [
        ("iam:UntagUser", USER, ["SecurityAllowSessionInstance"], True),
        ("iam:UntagRole", ROLE, ["SecurityAllowSessionInstance2", "SecurityAllowSessionUser2"], True),
        ("iam:UntagUser", USER, ["Owner"], False),
        ("iam:UntagUser", USER, ["SecurityAllowSessionInstance", "CostCenter"], False),
        ("iam:UntagUser", USER, None, False),  # no keys at all: the Null check
        ("iam:UntagUser", USER, ["SecurityAllowSessionInstance6"], False),  # beyond the 5 template slots
    ],
)
def test_engine_untags_only_slot_keys(
    iam: tuple[World, SessionChecker],
    function: str,
    action: str,
    resource: str,
    keys: list[str] | None,
    allowed: bool,
) -> None:
    world, checker = iam
    context = {"aws:TagKeys": keys} if keys is not None else {}
    assert checker.authorized("role", _role(world, function), action, resource, context) is allowed


@pytest.mark.parametrize(
    ("keys", "allowed"),
    [
        (["SecurityAllowSessionInstance"], True),
        ([slots.instance_key(5), slots.user_key(5)], True),
        (["Owner"], False),
        (["SecurityAllowSessionInstance", "Owner"], False),
        (None, False),
    ],
)
def test_grant_role_tags_only_slot_keys(
    iam: tuple[World, SessionChecker], keys: list[str] | None, allowed: bool
) -> None:
    world, checker = iam
    context = {"aws:TagKeys": keys} if keys is not None else {}
    assert (
        checker.authorized("role", _role(world, "GrantAccessFunctionRole"), "iam:TagUser", USER, context)
        is allowed
    )


@pytest.mark.parametrize("target", [*UNTAGGING_ROLES, "SchedulerRole"])
def test_engine_roles_cannot_tag_or_untag_sessiongate_roles(
    iam: tuple[World, SessionChecker], target: str
) -> None:
    world, checker = iam
    arn = world.stack.resources[target].arn
    context = {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
    for function in UNTAGGING_ROLES:
        for action in ("iam:TagRole", "iam:UntagRole"):
            assert not checker.authorized("role", _role(world, function), action, arn, context), (
                function,
                action,
                target,
            )


def test_revoke_role_cannot_tag(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    context = {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
    assert not checker.authorized(
        "role", _role(world, "RevokeAccessFunctionRole"), "iam:TagUser", USER, context
    )


@pytest.mark.parametrize("function", ["ReconcileGrantsFunctionRole", "RequestApiFunctionRole"])
def test_reconciler_and_request_api_only_untag(iam: tuple[World, SessionChecker], function: str) -> None:
    world, checker = iam
    role = _role(world, function)
    for keys in (["SecurityAllowSessionInstance"], ["Owner"]):
        for action, resource in (("iam:TagUser", USER), ("iam:TagRole", ROLE)):
            assert not checker.authorized("role", role, action, resource, {"aws:TagKeys": keys}), (
                action,
                keys,
            )


@pytest.mark.parametrize("function", UNTAGGING_ROLES)
@pytest.mark.parametrize("action", ["iam:ListUserTags", "iam:ListRoleTags"])
def test_engine_roles_hold_no_list_tags_rights(
    iam: tuple[World, SessionChecker], function: str, action: str
) -> None:
    """The engine reads tags with GetUser/GetRole; List*Tags (never allowed under the TagKeys
    condition anyway) are gone."""
    world, checker = iam
    resource = USER if action == "iam:ListUserTags" else ROLE
    assert not checker.authorized("role", _role(world, function), action, resource)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("SecurityAllowSessionInstance", "i-0123456789abcdef0", True),
        ("SecurityAllowSessionInstance", "not-an-instance", False),
        (slots.instance_key(3), "arn:aws:ec2:*:*:instance/*", False),
        (slots.user_key(2), "AROAEXAMPLEROLEID:dave@example.com", True),
        (slots.user_key(2), "AIDAALICE", False),
        (slots.user_key(2), "*", False),
    ],
)
def test_grant_role_tags_only_well_formed_values(
    iam: tuple[World, SessionChecker], key: str, value: str, allowed: bool
) -> None:
    world, checker = iam
    role = _role(world, "GrantAccessFunctionRole")
    context = {"aws:TagKeys": [key], f"aws:RequestTag/{key}": value}
    for action, resource in (("iam:TagUser", USER), ("iam:TagRole", ROLE)):
        assert checker.authorized("role", role, action, resource, context) is allowed, (action, key, value)


def test_adapter_cannot_touch_iam_tags_at_all(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    context = {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
    role = _role(world, "AdaptChangeRequestFunctionRole")
    for action in ("iam:TagUser", "iam:UntagUser", "iam:TagRole"):
        assert not checker.authorized("role", role, action, USER, context)


def test_pass_role_only_the_scheduler_role_to_scheduler(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    role = _role(world, "GrantAccessFunctionRole")
    scheduler_role = world.stack.resources["SchedulerRole"].arn
    to_scheduler = {"iam:PassedToService": "scheduler.amazonaws.com"}
    assert checker.authorized("role", role, "iam:PassRole", scheduler_role, to_scheduler)
    assert not checker.authorized(
        "role", role, "iam:PassRole", scheduler_role, {"iam:PassedToService": "ec2.amazonaws.com"}
    )
    other = world.stack.resources["RevokeAccessFunctionRole"].arn
    assert not checker.authorized("role", role, "iam:PassRole", other, to_scheduler)


def test_schedules_are_limited_to_the_stack_group_and_prefix(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    group = world.stack.resources["ScheduleGroup"].physical_id
    base = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule"
    grant = _role(world, "GrantAccessFunctionRole")
    assert checker.authorized("role", grant, "scheduler:CreateSchedule", f"{base}/{group}/sg-revoke-cm-1")
    assert not checker.authorized("role", grant, "scheduler:CreateSchedule", f"{base}/{group}/other")
    assert not checker.authorized("role", grant, "scheduler:CreateSchedule", f"{base}/default/sg-revoke-cm-1")
    assert not checker.authorized("role", grant, "scheduler:DeleteSchedule", f"{base}/{group}/sg-revoke-cm-1")


def test_tag_key_guard_stops_everyone_else(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    iam_client = world.client("iam")
    admin_policy = iam_client.create_policy(
        PolicyName="TestAdmin",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
    )["Policy"]["Arn"]
    iam_client.create_user(UserName="admin-tester")
    iam_client.attach_user_policy(UserName="admin-tester", PolicyArn=admin_policy)
    assert checker.authorized(
        "user", "admin-tester", "iam:TagUser", USER, {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
    )
    iam_client.attach_user_policy(
        UserName="admin-tester", PolicyArn=world.stack.resources["SessionGateTagKeyGuard"].arn
    )
    for action in ("iam:TagUser", "iam:UntagUser"):
        assert not checker.authorized(
            "user", "admin-tester", action, USER, {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
        )
    assert checker.authorized("user", "admin-tester", "iam:TagUser", USER, {"aws:TagKeys": ["Owner"]})


def _guarded_admin(world: World, name: str) -> str:
    iam_client = world.client("iam")
    admin_policy = iam_client.create_policy(
        PolicyName=f"{name}-admin",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
    )["Policy"]["Arn"]
    iam_client.create_user(UserName=name)
    iam_client.attach_user_policy(UserName=name, PolicyArn=admin_policy)
    iam_client.attach_user_policy(
        UserName=name, PolicyArn=world.stack.resources["SessionGateTagKeyGuard"].arn
    )
    return name


ANY_CASE_SLOT_KEYS = [
    "securityallowsessioninstance",
    "SECURITYALLOWSESSIONINSTANCE",
    "securityAllowSessionInstance2",
    "SecurityallowsessionInstance5",
    "securityallowsessioninstance10",
    "SECURITYALLOWSESSIONUSER1",
    "securityallowsessionuser10",
]


@pytest.mark.parametrize("key", ANY_CASE_SLOT_KEYS)
def test_tag_key_guard_ignores_letter_case(iam: tuple[World, SessionChecker], key: str) -> None:
    """IAM tag keys are case-insensitive: a lower- or upper-case slot key is the same tag to IAM."""
    world, checker = iam
    admin = f"guarded-{ANY_CASE_SLOT_KEYS.index(key)}"
    _guarded_admin(world, admin)
    for action, resource in (
        ("iam:TagUser", USER),
        ("iam:TagRole", ROLE),
        ("iam:UntagUser", USER),
        ("iam:UntagRole", ROLE),
    ):
        context = {"aws:TagKeys": [key, "Owner"], f"aws:RequestTag/{key}": "i-0123456789abcdef0"}
        assert not checker.authorized("user", admin, action, resource, context), (action, key)


def test_tag_key_guard_covers_principals_created_with_tags(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    admin = _guarded_admin(world, "guarded-creator")
    for key in ("SecurityAllowSessionInstance", "securityallowsessioninstance3", "SecurityAllowSessionUser1"):
        context = {"aws:TagKeys": [key], f"aws:RequestTag/{key}": "i-0123456789abcdef0"}
        assert not checker.authorized(
            "user", admin, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/x", context
        )
        assert not checker.authorized(
            "user", admin, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/x", context
        )
        # A session tag overrides the role's tag in aws:PrincipalTag: no slot keys as session tags either.
        assert not checker.authorized(
            "user", admin, "sts:TagSession", f"arn:aws:iam::{ACCOUNT}:role/x", context
        )
    # Everything else stays the admin's business.
    assert checker.authorized("user", admin, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/x")
    assert checker.authorized(
        "user", admin, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/x", {"aws:TagKeys": ["Owner"]}
    )
    assert checker.authorized("user", admin, "iam:TagUser", USER, {"aws:TagKeys": ["SecurityInstance"]})


def test_scp_sample_denies_slot_keys_in_any_case() -> None:
    import json
    from pathlib import Path

    from principalmapper.common import Node, Policy
    from principalmapper.querying.query_interface import local_check_authorization_full

    from sandbox.policy import principal_node

    scp = json.loads((Path(__file__).resolve().parents[2] / "docs" / "scp-deny-slot-tags.json").read_text())
    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

    def node(arn: str) -> Node:
        trust = {} if ":role/" in arn else None
        return principal_node(arn, "AIDAEXAMPLE", [Policy(arn, "admin", admin)], trust=trust, is_admin=True)

    # SCPs filter: FullAWSAccess (the default SCP) allows, the sample denies.
    full_access = Policy(
        "arn:aws:organizations::aws:policy/service_control_policy/p-FullAWSAccess", "full", admin
    )
    scps = [[full_access, Policy("arn:aws:organizations::111111111111:policy/p-1", "scp", scp)]]

    def allowed(who: Node, action: str, key: str) -> bool:
        return bool(
            local_check_authorization_full(
                who, action, USER, {"aws:TagKeys": [key]}, service_control_policy_groups=scps
            )
        )

    someone = node(f"arn:aws:iam::{ACCOUNT}:user/someone")
    engine = node(f"arn:aws:iam::{ACCOUNT}:role/sessiongate/sessiongate-grant")
    for key in [*ANY_CASE_SLOT_KEYS, *slots.all_keys(slots.MAX_SLOTS)]:
        for action in ("iam:TagUser", "iam:UntagUser", "iam:CreateUser", "iam:CreateRole", "sts:TagSession"):
            assert not allowed(someone, action, key), (action, key)
        assert allowed(engine, "iam:TagUser", key)
    assert allowed(someone, "iam:TagUser", "Owner")


def test_users_end_their_own_sessions_only(iam: tuple[World, SessionChecker]) -> None:
    """Session ids of IAM users start with the user name; the operator policy lets them end their own."""
    world, checker = iam
    iam_client = world.client("iam")
    operator_policy = world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
    for name in ("op-carol", "op-dave"):
        iam_client.create_user(UserName=name)
        iam_client.attach_user_policy(UserName=name, PolicyArn=operator_policy)
    carol = iam_client.get_user(UserName="op-carol")["User"]
    own = world.ssm.open_session(
        owner_arn=carol["Arn"], user_id=carol["UserId"], target="i-0123456789abcdef0", now=world.clock.now()
    )
    assert re.fullmatch(r"op-carol-[0-9a-f]{17}", own)
    tags = world.ssm.resource_tags(own)
    for action in ("ssm:TerminateSession", "ssm:ResumeSession"):
        assert checker.may_act_on_session("user", "op-carol", action, own, tags)
        assert not checker.may_act_on_session("user", "op-dave", action, own, tags)


def test_role_sessions_end_their_own_sessions_only(iam: tuple[World, SessionChecker]) -> None:
    """A role session's id starts with its role session name, not with aws:userid (RoleId:session): it is
    known as its own by the session's aws:ssmmessages:session-id tag (Session Manager, method 2)."""
    world, checker = iam
    iam_client = world.client("iam")
    operator_policy = world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
    role = iam_client.create_role(RoleName="op-shared", AssumeRolePolicyDocument="{}")["Role"]
    iam_client.attach_role_policy(RoleName="op-shared", PolicyArn=operator_policy)
    erin, frank = f"{role['RoleId']}:erin", f"{role['RoleId']}:frank"
    sts = f"arn:aws:sts::{ACCOUNT}:assumed-role/op-shared/"
    own = world.ssm.open_session(
        owner_arn=sts + "erin", user_id=erin, target="i-0123456789abcdef0", now=world.clock.now()
    )
    assert re.fullmatch(r"erin-[0-9a-f]{17}", own)
    tags = world.ssm.resource_tags(own)
    assert tags["aws:ssmmessages:session-id"] == erin
    for action in ("ssm:TerminateSession", "ssm:ResumeSession"):
        assert checker.may_act_on_session("role", "op-shared", action, own, tags, user_id=erin)
        # Another session of the same role, and a session with no tag, are not its own.
        assert not checker.may_act_on_session("role", "op-shared", action, own, tags, user_id=frank)
        assert not checker.may_act_on_session("role", "op-shared", action, own, {}, user_id=erin)
    # The data channel of a session (opened with the token StartSession returned) in this account.
    session_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/{own}"
    assert checker.authorized("role", "op-shared", "ssmmessages:OpenDataChannel", session_arn, user_id=erin)
    elsewhere = f"arn:aws:ssm:{REGION}:210987654321:session/{own}"
    assert not checker.authorized("role", "op-shared", "ssmmessages:OpenDataChannel", elsewhere, user_id=erin)
