"""Least privilege of the engine roles, evaluated by an IAM policy evaluator over template.yaml's policies.

The roles are created in moto exactly as the template declares them (sandbox.World); principalmapper
evaluates their policies with conditions (``aws:TagKeys``, ``ForAllValues``, ``Null``), which moto's own
evaluator cannot. The same questions against real IAM are in tests/aws (opt-in).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import cfn
from sandbox.policy import Policy, SessionChecker, local_check_authorization_full, principal_node
from sandbox.world import ACCOUNT, REGION, World
from sessiongate.core import slots

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


def test_reconciler_reads_what_its_three_triggers_need_and_nothing_of_scheduler(
    iam: tuple[World, SessionChecker],
) -> None:
    """Issue 16: the sweep's account read and batched ledger reads; no schedule read or write, no
    operator listing (the steady run reads no schedule, drift comes from tag events and the sweep)."""
    world, checker = iam
    role = _role(world, "ReconcileGrantsFunctionRole")
    table = world.stack.resources["GrantsTable"].arn
    group = world.stack.resources["ScheduleGroup"].physical_id
    schedule = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/sg-revoke-cm-1"
    assert checker.authorized("role", role, "iam:GetAccountAuthorizationDetails", "*")
    assert checker.authorized("role", role, "dynamodb:BatchGetItem", table)
    assert checker.authorized("role", role, "dynamodb:Query", f"{table}/index/live-by-expiry")
    assert checker.authorized("role", role, "iam:GetUser", USER)
    for action in ("scheduler:GetSchedule", "scheduler:CreateSchedule", "scheduler:DeleteSchedule"):
        assert not checker.authorized("role", role, action, schedule), action
    assert not checker.authorized("role", role, "dynamodb:Scan", table)
    assert not checker.authorized(
        "role",
        role,
        "iam:ListEntitiesForPolicy",
        f"arn:aws:iam::{ACCOUNT}:policy/AllowStartSsmSessionBasedOnIamTags",
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


def test_adapter_reads_instances_for_the_managed_node_check_and_nothing_more(
    iam: tuple[World, SessionChecker],
) -> None:
    """RequireSsmManagedInstance is asked by the Change Manager adapter: it reads instances and whether
    they are managed nodes; it neither starts nor ends sessions, nor changes instances or SSM."""
    world, checker = iam
    role = _role(world, "AdaptChangeRequestFunctionRole")
    assert checker.authorized("role", role, "ec2:DescribeInstances", "*")
    assert checker.authorized("role", role, "ssm:DescribeInstanceInformation", "*")
    instance = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"
    session = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/alice-0123456789abcdef0"
    for action, resource in (
        ("ssm:StartSession", instance),
        ("ssm:TerminateSession", session),
        ("ssm:DescribeSessions", "*"),
        ("ec2:CreateTags", instance),
        ("ec2:StopInstances", instance),
        ("iam:GetUser", USER),
    ):
        assert not checker.authorized("role", role, action, resource), action


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
    # The sample's exempt engine role (an exact ARN to be replaced by the EngineRoleArns output) ...
    engine = node(scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"][0])
    # ... and not whoever creates a role at the same path.
    squatter = node("arn:aws:iam::111111111111:role/sessiongate/mine")
    for key in [*ANY_CASE_SLOT_KEYS, *slots.all_keys(slots.MAX_SLOTS)]:
        for action in (
            "iam:TagUser",
            "iam:UntagUser",
            "iam:CreateUser",
            "iam:CreateRole",
            "sts:TagSession",
            "sts:GetFederationToken",
        ):
            assert not allowed(someone, action, key), (action, key)
            assert not allowed(squatter, action, key), (action, key)
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


# ---------------------------------------------------------------- control-plane protection (issue 13)
ADMIN_DOCUMENT = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _admin(world: World, name: str, *extra_policies: str, path: str = "/") -> str:
    """A role ``name`` holding AdministratorAccess-like rights (and ``extra_policies``, by logical id)."""
    iam_client = world.client("iam")
    iam_client.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument="{}")
    iam_client.put_role_policy(RoleName=name, PolicyName="admin", PolicyDocument=json.dumps(ADMIN_DOCUMENT))
    for logical_id in extra_policies:
        iam_client.attach_role_policy(RoleName=name, PolicyArn=world.stack.resources[logical_id].arn)
    return name


# The guard is two managed policies (IAM's 6,144-character limit): deployers attach both to admins.
GUARDS = ("SessionGateTagKeyGuard", "SessionGateControlPlaneGuard")


def _attach_guards(world: World, role: str) -> None:
    for guard in GUARDS:
        world.client("iam").attach_role_policy(RoleName=role, PolicyArn=world.stack.resources[guard].arn)


SESSION_TAG_KEYS = [
    "SecurityAllowSessionInstance",
    "securityallowsessioninstance",
    "SECURITYALLOWSESSIONUSER3",
]


@pytest.mark.parametrize("key", SESSION_TAG_KEYS)
@pytest.mark.parametrize("action", ["sts:TagSession", "sts:GetFederationToken"])
def test_operator_policy_denies_slot_keys_as_session_tags(
    iam: tuple[World, SessionChecker], key: str, action: str
) -> None:
    """Finding 3: a session tag overrides the principal tag; an operator may not set slot keys as one."""
    world, checker = iam
    name = f"op-sts-{SESSION_TAG_KEYS.index(key)}-{action.split(':')[1]}"
    _admin(world, name)  # e.g. rights to assume a role whose trust allows sts:TagSession
    target = f"arn:aws:iam::{ACCOUNT}:role/tag-session-allowed"
    context = {"aws:TagKeys": [key], f"aws:RequestTag/{key}": "i-0123456789abcdef0"}
    assert checker.authorized("role", name, action, target, context)  # without the operator policy
    world.client("iam").attach_role_policy(
        RoleName=name, PolicyArn=world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
    )
    assert not checker.authorized("role", name, action, target, context)
    # Other session tags stay allowed.
    assert checker.authorized("role", name, action, target, {"aws:TagKeys": ["Project"]})


def test_guard_exempts_exact_engine_roles_not_their_path(iam: tuple[World, SessionChecker]) -> None:
    """Finding 7: a role someone else creates at /sessiongate/ is not SessionGate."""
    world, checker = iam
    squatter = _admin(world, "squatter", "SessionGateTagKeyGuard", path="/sessiongate/")
    context = {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
    for action in ("iam:TagUser", "iam:UntagUser", "sts:TagSession", "sts:GetFederationToken"):
        assert not checker.authorized("role", squatter, action, USER, context), action
    # The engine's own role stays exempt even if the guard is (wrongly) attached to it.
    grant = _role(world, "GrantAccessFunctionRole")
    world.client("iam").attach_role_policy(
        RoleName=grant, PolicyArn=world.stack.resources["SessionGateTagKeyGuard"].arn
    )
    try:
        assert checker.authorized("role", grant, "iam:TagUser", USER, context)
        scheduler_role = world.stack.resources["SchedulerRole"].arn
        to_scheduler = {"iam:PassedToService": "scheduler.amazonaws.com"}
        assert checker.authorized("role", grant, "iam:PassRole", scheduler_role, to_scheduler)
    finally:
        world.client("iam").detach_role_policy(
            RoleName=grant, PolicyArn=world.stack.resources["SessionGateTagKeyGuard"].arn
        )


ROLE_WRITES = [
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:DeleteRole",
    "iam:DeleteRolePermissionsBoundary",
    "iam:PassRole",
]


@pytest.mark.parametrize(
    "target",
    ["GrantAccessFunctionRole", "ReconcileGrantsFunctionRole", "RequestApiFunctionRole", "SchedulerRole"],
)
def test_guard_denies_changing_or_passing_sessiongate_roles(
    iam: tuple[World, SessionChecker], target: str
) -> None:
    """Finding 4/7: no IAM writes on SessionGate's roles, no passing them to a function of one's own."""
    world, checker = iam
    name = f"guarded-iam-{target}"
    _admin(world, name, *GUARDS)
    arn = world.stack.resources[target].arn
    for action in ROLE_WRITES:
        context = {"iam:PassedToService": "lambda.amazonaws.com"} if action == "iam:PassRole" else {}
        assert not checker.authorized("role", name, action, arn, context), action
    assert not checker.authorized(
        "role", name, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/sessiongate/x"
    )
    # Everything else stays the admin's business.
    assert checker.authorized("role", name, "iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/app")
    assert checker.authorized("role", name, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/app/x")


@pytest.mark.parametrize(
    "function",
    [
        "RequestApiFunction",
        "GrantAccessFunction",
        "RevokeAccessFunction",
        "ReconcileGrantsFunction",
        "PublishEventsFunction",
        "ExportHistoryFunction",
        "ChatInteractionsFunction",
        "ChatNotifyFunction",
    ],
)
def test_guard_denies_invoking_sessiongate_functions(
    iam: tuple[World, SessionChecker], function: str
) -> None:
    """A direct invocation hands a function any event: the request API would believe the caller named
    in a hand-made API Gateway event and sign an approval in that person's name."""
    world, checker = iam
    name = f"guarded-invoke-{function}"
    _admin(world, name)
    arn = world.stack.resources[function].arn
    assert checker.authorized("role", name, "lambda:InvokeFunction", arn)  # an admin without the guard
    _attach_guards(world, name)
    for action in ("lambda:InvokeFunction", "lambda:InvokeAsync"):
        assert not checker.authorized("role", name, action, arn), action
        assert not checker.authorized("role", name, action, f"{arn}:$LATEST"), action
    other = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:app"
    assert checker.authorized("role", name, "lambda:InvokeFunction", other)


MAPPING_ACTIONS = [
    "lambda:CreateEventSourceMapping",
    "lambda:UpdateEventSourceMapping",
    "lambda:DeleteEventSourceMapping",
]


@pytest.mark.parametrize(
    "function", ["PublishEventsFunction", "ExportHistoryFunction", "GrantAccessFunction"]
)
def test_guard_denies_changing_the_event_source_mappings_of_sessiongate_functions(
    iam: tuple[World, SessionChecker], function: str
) -> None:
    """Mapping actions are authorized on the mapping, not the function: a filter added to (or a disabled)
    stream mapping drops notifications and history silently, a new mapping feeds a function made-up
    events. The guard names the function through lambda:FunctionArn."""
    world, checker = iam
    name = f"guarded-mapping-{function}"
    _admin(world, name)
    mapping = f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:fa123456-14a1-4fd2-9fec-83de64ad683d"
    ours = {"lambda:FunctionArn": world.stack.resources[function].arn}
    theirs = {"lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:app"}
    assert checker.authorized("role", name, "lambda:UpdateEventSourceMapping", mapping, ours)
    _attach_guards(world, name)
    for action in MAPPING_ACTIONS:
        resource = "*" if action == "lambda:CreateEventSourceMapping" else mapping
        assert not checker.authorized("role", name, action, resource, ours), action
        assert checker.authorized("role", name, action, resource, theirs), action


REQUEST_API_WRITES = [
    ("apigateway:PATCH", "/resources/abc/methods/POST"),  # a method's integration type
    ("apigateway:PUT", "/resources/abc/methods/POST/integration"),  # a mapping template
    ("apigateway:PUT", ""),  # import over the whole API
    ("apigateway:POST", "/deployments"),
    ("apigateway:PATCH", "/stages/v1"),
    ("apigateway:DELETE", "/stages/v1"),
    ("apigateway:UpdateRestApiPolicy", ""),
]


@pytest.mark.parametrize("api_id", ["RequestApi", "ChatApi"])
def test_guard_denies_changing_the_request_api(iam: tuple[World, SessionChecker], api_id: str) -> None:
    """Review B, H2: a non-proxy integration's mapping template makes up requestContext.identity, so
    changing the request API (methods, integrations, stages, deployments, resource policy) would let
    anyone approve "as" anyone: nobody holding the guard writes it; other APIs stay the admin's. The
    chat API (issue 19) likewise, though its function checks Slack's signature itself."""
    world, checker = iam
    name = f"guarded-apigateway-{api_id}"
    _admin(world, name)
    api = world.stack.resources[api_id].physical_id
    base = f"arn:aws:apigateway:{REGION}::/restapis/{api}"
    [(action, path)] = REQUEST_API_WRITES[:1]
    assert checker.authorized("role", name, action, base + path)  # an admin without the guard
    _attach_guards(world, name)
    for action, path in REQUEST_API_WRITES:
        assert not checker.authorized("role", name, action, base + path), (action, path)
    assert checker.authorized("role", name, "apigateway:GET", base)  # reading stays allowed
    other = f"arn:aws:apigateway:{REGION}::/restapis/app123/resources/abc/methods/POST"
    assert checker.authorized("role", name, "apigateway:PATCH", other)


def _table(world: World, logical_id: str) -> tuple[str, dict[str, Any]]:
    table = world.stack.resources[logical_id]
    return table.arn, table.properties["ResourcePolicy"]["PolicyDocument"]


TABLE_WRITES = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLUpdate",
]


@pytest.mark.parametrize(
    ("table", "writer"),
    [
        ("GrantsTable", "GrantAccessFunctionRole"),
        ("RequestsTable", "RequestApiFunctionRole"),
        # Issue 19: who approves as whom in chat, and the codes and signatures behind it.
        ("ChatLinksTable", "RequestApiFunctionRole"),
        ("ChatStateTable", "ChatInteractionsFunctionRole"),
    ],
)
def test_only_the_engine_writes_its_tables(
    iam: tuple[World, SessionChecker], table: str, writer: str
) -> None:
    """Finding 2: a DynamoDB admin can read the ledger but not forge or alter a record."""
    world, checker = iam
    arn, policy = _table(world, table)
    admin = _admin(world, f"dynamodb-admin-{table}")
    for action in TABLE_WRITES:
        assert checker.authorized("role", admin, action, arn)  # IAM alone allows it ...
        assert not checker.authorized("role", admin, action, arn, resource_policy=policy), (
            action
        )  # ... not here
    assert checker.authorized("role", admin, "dynamodb:GetItem", arn, resource_policy=policy)
    writer_role = _role(world, writer)
    assert checker.authorized("role", writer_role, "dynamodb:PutItem", arn, resource_policy=policy)


def _as_admin(arn: str, action: str, resource: str, policy: dict[str, Any]) -> bool:
    """Whether ``arn``, were its IAM policies to allow everything, may do ``action`` under ``policy``
    (the resource's own policy: what it alone refuses)."""
    node = principal_node(arn, "AROAEXAMPLE", [Policy(arn, "admin", ADMIN_DOCUMENT)], trust={})
    return bool(
        local_check_authorization_full(
            node, action, resource, {}, resource_policy=policy, resource_owner=ACCOUNT
        )
    )


def test_only_the_request_api_writes_chat_links(iam: tuple[World, SessionChecker]) -> None:
    """Issue 19: a link says whose approval a Slack click is. Only the request API (a SigV4-signed
    ``sessiongate chat link``) writes it: the table's policy refuses even the chat functions' roles."""
    world, checker = iam
    arn, policy = _table(world, "ChatLinksTable")
    res = world.stack.resources
    for role in ("ChatInteractionsFunctionRole", "ChatNotifyFunctionRole"):
        for action in TABLE_WRITES:
            assert not _as_admin(res[role].arn, action, arn, policy), (role, action)
    assert _as_admin(res["RequestApiFunctionRole"].arn, "dynamodb:PutItem", arn, policy)
    interactions = _role(world, "ChatInteractionsFunctionRole")
    assert checker.authorized("role", interactions, "dynamodb:GetItem", arn, resource_policy=policy)


@pytest.mark.parametrize(
    ("role", "action", "own", "others"),
    [
        ("ChatNotifyFunctionRole", "dynamodb:PutItem", ["msg#r-1"], ["code#x", "sig#x"]),
        ("ChatNotifyFunctionRole", "dynamodb:GetItem", ["msg#r-1"], ["code#x"]),
        ("ChatInteractionsFunctionRole", "dynamodb:PutItem", ["code#x", "sig#x"], ["msg#r-1"]),
        ("RequestApiFunctionRole", "dynamodb:DeleteItem", ["code#x"], ["msg#r-1", "sig#x"]),
    ],
)
def test_each_chat_writer_touches_only_its_own_chat_state_items(
    iam: tuple[World, SessionChecker], role: str, action: str, own: list[str], others: list[str]
) -> None:
    """Review of issue 19, finding 7: the notifier cannot plant link codes or forget signatures seen
    (replays), the interactions function cannot rewrite request messages (dynamodb:LeadingKeys)."""
    world, checker = iam
    arn, policy = _table(world, "ChatStateTable")
    name = _role(world, role)
    for key in own:
        context = {"dynamodb:LeadingKeys": [key]}
        assert checker.authorized("role", name, action, arn, context, resource_policy=policy), key
    for key in others:
        context = {"dynamodb:LeadingKeys": [key]}
        assert not checker.authorized("role", name, action, arn, context, resource_policy=policy), key


@pytest.mark.parametrize(
    ("secret", "reader"),
    [("SlackSigningSecret", "ChatInteractionsFunctionRole"), ("SlackBotToken", "ChatNotifyFunctionRole")],
)
def test_only_its_function_reads_a_slack_secret_and_the_guard_keeps_admins_off(
    iam: tuple[World, SessionChecker], secret: str, reader: str
) -> None:
    """Issue 19: whoever reads or rewrites the signing secret can sign clicks as any linked Slack user.
    The secret's own policy lets only its function read it; the guard keeps guarded admins off both."""
    world, checker = iam
    res = world.stack.resources
    arn = res[secret].physical_id
    policy = res[f"{secret}Policy"].properties["ResourcePolicy"]
    admin = _admin(world, f"secrets-admin-{secret}")
    assert checker.authorized("role", admin, "secretsmanager:PutSecretValue", arn, resource_policy=policy)
    assert not checker.authorized("role", admin, "secretsmanager:GetSecretValue", arn, resource_policy=policy)
    assert checker.authorized(
        "role", _role(world, reader), "secretsmanager:GetSecretValue", arn, resource_policy=policy
    )
    for role in ("ChatInteractionsFunctionRole", "ChatNotifyFunctionRole", "RequestApiFunctionRole"):
        if role != reader:  # even with every IAM right, the secret's policy refuses the others
            assert not _as_admin(res[role].arn, "secretsmanager:GetSecretValue", arn, policy), role
    _attach_guards(world, admin)
    for action in (
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteResourcePolicy",
        "secretsmanager:UpdateSecret",
    ):
        assert not checker.authorized("role", admin, action, arn, resource_policy=policy), action


def test_only_deployers_change_the_slack_secrets() -> None:
    deployer = f"arn:aws:iam::{ACCOUNT}:role/deploy-pipeline"
    stack = cfn.load("sessiongate", ACCOUNT, REGION, {"DeployerArns": deployer})
    for logical_id in ("SlackSigningSecret", "SlackBotToken"):
        arn = stack.resources[logical_id].physical_id
        policy = stack.resources[f"{logical_id}Policy"].properties["ResourcePolicy"]
        for who, expected in ((deployer, True), (f"arn:aws:iam::{ACCOUNT}:role/secrets-admin", False)):
            node = principal_node(who, "AROAEXAMPLE", [Policy(who, "admin", ADMIN_DOCUMENT)], trust={})
            for action in ("secretsmanager:PutSecretValue", "secretsmanager:DeleteResourcePolicy"):
                decision = local_check_authorization_full(
                    node, action, arn, {}, resource_policy=policy, resource_owner=ACCOUNT
                )
                assert decision is expected, (logical_id, who, action)


def test_grant_role_cannot_write_requests(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    arn, policy = _table(world, "RequestsTable")
    grant = _role(world, "GrantAccessFunctionRole")
    assert checker.authorized("role", grant, "dynamodb:GetItem", arn, resource_policy=policy)
    assert not checker.authorized("role", grant, "dynamodb:PutItem", arn, resource_policy=policy)


def test_only_deployers_change_the_tables() -> None:
    """With DeployerArns, only they change table settings and policies (others: Deny in the policy)."""
    deployer = f"arn:aws:iam::{ACCOUNT}:role/deploy-pipeline"
    stack = cfn.load("sessiongate", ACCOUNT, REGION, {"DeployerArns": deployer})
    for logical_id in ("GrantsTable", "RequestsTable", "ChatLinksTable", "ChatStateTable"):
        table = stack.resources[logical_id]
        policy = table.properties["ResourcePolicy"]["PolicyDocument"]
        for who, expected in ((deployer, True), (f"arn:aws:iam::{ACCOUNT}:role/dynamodb-admin", False)):
            node = principal_node(who, "AROAEXAMPLE", [Policy(who, "admin", ADMIN_DOCUMENT)], trust={})
            for action in (
                "dynamodb:PutResourcePolicy",
                "dynamodb:DeleteResourcePolicy",
                "dynamodb:UpdateTable",
                "dynamodb:DeleteTable",
                "dynamodb:CreateTableReplica",
            ):
                decision = local_check_authorization_full(
                    node, action, table.arn, {}, resource_policy=policy, resource_owner=ACCOUNT
                )
                assert decision is expected, (logical_id, who, action)


def test_only_the_emitting_roles_put_events_on_the_bus(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    bus = world.stack.resources["EventBus"].arn
    statement = world.stack.resources["EventBusPutGuard"].properties["Statement"]
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    squatter = _admin(world, "events-squatter", path="/sessiongate/")
    assert checker.authorized("role", squatter, "events:PutEvents", bus)
    assert not checker.authorized("role", squatter, "events:PutEvents", bus, resource_policy=policy)
    # ChatInteractionsFunctionRole: a final approval from Slack emits AccessApproved (review, finding 2).
    for emitter in (
        "RequestApiFunctionRole",
        "AdaptChangeRequestFunctionRole",
        "ChatInteractionsFunctionRole",
    ):
        assert checker.authorized(
            "role", _role(world, emitter), "events:PutEvents", bus, resource_policy=policy
        )
    assert not checker.authorized(
        "role", _role(world, "GrantAccessFunctionRole"), "events:PutEvents", bus, resource_policy=policy
    )


NOTIFICATION_PUBLISHERS = [
    "PublishEventsFunctionRole",
    "GrantAccessFunctionRole",
    "RevokeAccessFunctionRole",
    "ReconcileGrantsFunctionRole",
    "RequestApiFunctionRole",
    "AdaptChangeRequestFunctionRole",
]


def test_only_sessiongate_publishes_lifecycle_events(iam: tuple[World, SessionChecker]) -> None:
    """Review of issue 19, finding 1: an AccessRequested published by anyone else reached the chat
    notifier (and every subscriber). The topic's policy refuses every publisher but SessionGate's roles;
    the guard refuses guarded admins publishing or changing the topic's policy."""
    world, checker = iam
    res = world.stack.resources
    topic = res["NotificationTopic"].physical_id
    policy = res["NotificationTopicPolicy"].properties["PolicyDocument"]
    squatter = _admin(world, "sns-squatter", path="/sessiongate/")
    assert checker.authorized("role", squatter, "sns:Publish", topic)
    assert not checker.authorized("role", squatter, "sns:Publish", topic, resource_policy=policy)
    for publisher in NOTIFICATION_PUBLISHERS:
        assert checker.authorized(
            "role", _role(world, publisher), "sns:Publish", topic, resource_policy=policy
        ), publisher
    for role in ("ChatNotifyFunctionRole", "ChatInteractionsFunctionRole", "ExportHistoryFunctionRole"):
        assert not _as_admin(res[role].arn, "sns:Publish", topic, policy), role
    # Subscribing stays open (approvers subscribe themselves).
    assert checker.authorized("role", squatter, "sns:Subscribe", topic, resource_policy=policy)
    _attach_guards(world, squatter)
    for action in ("sns:Publish", "sns:SetTopicAttributes", "sns:AddPermission", "sns:DeleteTopic"):
        assert not checker.authorized("role", squatter, action, topic), action
    assert checker.authorized("role", squatter, "sns:Subscribe", topic)


def test_change_manager_publishes_only_when_on_and_deployers_alone_change_the_topic() -> None:
    deployer = f"arn:aws:iam::{ACCOUNT}:role/deploy-pipeline"
    for enabled in ("true", "false"):
        stack = cfn.load(
            "sessiongate", ACCOUNT, REGION, {"DeployerArns": deployer, "EnableChangeManager": enabled}
        )
        topic = stack.resources["NotificationTopic"].physical_id
        policy = stack.resources["NotificationTopicPolicy"].properties["PolicyDocument"]
        denied = [s for s in policy["Statement"] if s["Effect"] == "Deny" and s["Action"] == "sns:Publish"]
        [deny] = denied
        # The service principal carries no aws:PrincipalArn: only the service-name exemption lets it by.
        exempt = "StringNotEquals" in deny["Condition"]
        assert exempt is (enabled == "true")
        if exempt:
            assert deny["Condition"]["StringNotEquals"] == {"aws:PrincipalServiceName": "ssm.amazonaws.com"}
        assert any(s.get("Principal") == {"Service": "ssm.amazonaws.com"} for s in policy["Statement"]) is (
            enabled == "true"
        )
        for who, expected in ((deployer, True), (f"arn:aws:iam::{ACCOUNT}:role/sns-admin", False)):
            node = principal_node(who, "AROAEXAMPLE", [Policy(who, "admin", ADMIN_DOCUMENT)], trust={})
            for action in ("sns:SetTopicAttributes", "sns:RemovePermission", "sns:DeleteTopic"):
                decision = local_check_authorization_full(
                    node, action, topic, {}, resource_policy=policy, resource_owner=ACCOUNT
                )
                assert decision is expected, (enabled, who, action)


def _scp(*names: str) -> dict[str, Any]:
    """The SCP samples ``names`` as one document (deny-only samples: attaching them together is the same
    as attaching their statements as one SCP)."""
    documents = [json.loads((cfn.ROOT / "docs" / name).read_text()) for name in names]
    return {**documents[0], "Statement": [s for d in documents for s in d["Statement"]]}


# An SCP holds 5,120 characters (AWS Organizations quotas): the engine's protection is two samples.
PROTECT_SESSIONGATE = ("scp-protect-sessiongate.json", "scp-protect-sessiongate-state.json")


def _scp_allows(scp: dict[str, Any], who: str, action: str, resource: str, context: dict[str, Any]) -> bool:
    node = principal_node(who, "AROAEXAMPLE", [Policy(who, "admin", ADMIN_DOCUMENT)], trust={}, is_admin=True)
    full_access = Policy(
        "arn:aws:organizations::aws:policy/service_control_policy/p-FullAWSAccess", "full", ADMIN_DOCUMENT
    )
    scps = [[full_access, Policy("arn:aws:organizations::111111111111:policy/p-1", "scp", scp)]]
    return bool(
        local_check_authorization_full(node, action, resource, context, service_control_policy_groups=scps)
    )


ENGINE = "111111111111"
# The schedule group is sessiongate-<the UUID part of the stack id> (template.yaml, ScheduleGroup).
STACK_UUID = "0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d"
FUNCTION = f"arn:aws:lambda:{REGION}:{ENGINE}:function:sessiongate-grant-access"
PROTECTED = [
    ("lambda:UpdateFunctionCode", FUNCTION, {}),
    ("lambda:UpdateFunctionConfiguration", FUNCTION, {}),
    ("lambda:PublishLayerVersion", f"arn:aws:lambda:{REGION}:{ENGINE}:layer:sessiongate-engine", {}),
    ("iam:PassRole", f"arn:aws:iam::{ENGINE}:role/sessiongate/sessiongate-GrantAccessFunctionRole-X", {}),
    (
        "iam:PutRolePolicy",
        f"arn:aws:iam::{ENGINE}:role/sessiongate/sessiongate-GrantAccessFunctionRole-X",
        {},
    ),
    ("iam:CreateRole", f"arn:aws:iam::{ENGINE}:role/sessiongate/mine", {}),
    ("iam:UpdateAssumeRolePolicy", "arn:aws:iam::222222222222:role/sessiongate/SessionGateMember", {}),
    ("dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ENGINE}:table/sessiongate-GrantsTable-ABC", {}),
    (
        "dynamodb:DeleteResourcePolicy",
        f"arn:aws:dynamodb:{REGION}:{ENGINE}:table/sessiongate-RequestsTable-A",
        {},
    ),
    (
        "events:DisableRule",
        f"arn:aws:events:{REGION}:{ENGINE}:rule/sessiongate-ReconcileGrantsFunctionEvery-A",
        {},
    ),
    ("events:PutEvents", f"arn:aws:events:{REGION}:{ENGINE}:event-bus/sessiongate-bus", {}),
    (
        "scheduler:DeleteSchedule",
        f"arn:aws:scheduler:{REGION}:{ENGINE}:schedule/sessiongate-{STACK_UUID}/sg-revoke-cm-1",
        {},
    ),
    ("cloudwatch:DisableAlarmActions", f"arn:aws:cloudwatch:{REGION}:{ENGINE}:alarm:sessiongate-Recon-A", {}),
    ("sns:Unsubscribe", f"arn:aws:sns:{REGION}:{ENGINE}:sessiongate-AlarmTopic-A", {}),
    # The member accounts' session-tag forwarder.
    ("events:DisableRule", f"arn:aws:events:{REGION}:222222222222:rule/sessiongate-session-tag-forward", {}),
    # The history export (issue 17): its records and its bucket's policy, lifecycle and lock.
    ("s3:PutObject", f"arn:aws:s3:::sessiongate-history-{STACK_UUID}/history/v1/dt=2026-01-05/x.jsonl", {}),
    ("s3:DeleteObjectVersion", f"arn:aws:s3:::sessiongate-history-{STACK_UUID}/history/v1/x.jsonl", {}),
    ("s3:PutBucketPolicy", f"arn:aws:s3:::sessiongate-history-{STACK_UUID}", {}),
    ("s3:PutLifecycleConfiguration", f"arn:aws:s3:::sessiongate-history-{STACK_UUID}", {}),
    ("s3:PutBucketObjectLockConfiguration", f"arn:aws:s3:::sessiongate-history-{STACK_UUID}", {}),
]


@pytest.mark.parametrize(("action", "resource", "context"), PROTECTED)
def test_scp_sample_protects_sessiongate_resources(
    action: str, resource: str, context: dict[str, Any]
) -> None:
    """Finding 4: outside the deployers, nobody in the organization changes SessionGate's control plane."""
    scp = _scp(*PROTECT_SESSIONGATE)
    [deployer] = [
        arn for arn in scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] if "deployer" in arn
    ]
    assert _scp_allows(
        scp, f"arn:aws:iam::{ENGINE}:role/Admin", action, resource.replace("sessiongate", "other"), context
    )
    assert not _scp_allows(scp, f"arn:aws:iam::{ENGINE}:role/Admin", action, resource, context)
    assert not _scp_allows(scp, f"arn:aws:iam::{ENGINE}:role/sessiongate/squatter", action, resource, context)
    assert _scp_allows(scp, deployer, action, resource, context)


def test_scp_sample_protects_the_event_source_mappings_of_sessiongate_functions() -> None:
    """A mapping feeds a function events (a front door) and unplugging one silences the export."""
    scp = _scp("scp-protect-front-doors.json")
    [deployer] = [
        arn for arn in scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] if "deployer" in arn
    ]
    mapping = f"arn:aws:lambda:{REGION}:{ENGINE}:event-source-mapping:fa123456-14a1-4fd2-9fec-83de64ad683d"
    ours = {"lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ENGINE}:function:sessiongate-export-history"}
    theirs = {"lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ENGINE}:function:app"}
    for action in MAPPING_ACTIONS:
        resource = "*" if action == "lambda:CreateEventSourceMapping" else mapping
        assert not _scp_allows(scp, f"arn:aws:iam::{ENGINE}:role/Admin", action, resource, ours), action
        assert _scp_allows(scp, f"arn:aws:iam::{ENGINE}:role/Admin", action, resource, theirs), action
        assert _scp_allows(scp, deployer, action, resource, ours), action


def test_scp_sample_lets_only_sessiongate_publish_lifecycle_events() -> None:
    """Review of issue 19, finding 1, organization-wide: nobody but SessionGate's publishing roles
    publishes to the notification topic (its default name)."""
    scp = _scp(*PROTECT_SESSIONGATE)
    [statement] = [s for s in scp["Statement"] if s["Sid"] == "OnlySessionGateChangesItsState"]
    publishers = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    topic = f"arn:aws:sns:{REGION}:{ENGINE}:change-manager-ssm-approval"
    assert not _scp_allows(scp, f"arn:aws:iam::{ENGINE}:role/Admin", "sns:Publish", topic, {})
    assert not _scp_allows(scp, f"arn:aws:iam::{ENGINE}:role/sessiongate/squatter", "sns:Publish", topic, {})
    assert any("NotificationPublisherRoleArn" in arn for arn in publishers)
    for publisher in publishers:
        assert _scp_allows(scp, publisher, "sns:Publish", topic, {}), publisher


def test_scp_sample_lets_the_engine_run() -> None:
    scp = _scp(*PROTECT_SESSIONGATE)
    engine = scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"][1]
    assert ":role/sessiongate/" in engine
    assert "*" not in engine
    for action, resource in (
        ("iam:PassRole", f"arn:aws:iam::{ENGINE}:role/sessiongate/sessiongate-SchedulerRole-A"),
        ("dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ENGINE}:table/sessiongate-GrantsTable-ABC"),
        ("scheduler:CreateSchedule", f"{SCHEDULES}/sg-revoke-1"),
        ("scheduler:DeleteSchedule", f"{SCHEDULES}/sg-revoke-1"),
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ENGINE}:event-bus/sessiongate-bus"),
    ):
        assert _scp_allows(scp, engine, action, resource, {}), action
    # ... but the engine does not change code.
    assert not _scp_allows(scp, engine, "lambda:UpdateFunctionCode", FUNCTION, {})
    # The Change Manager adapter emits approvals, records denials and defers starts.
    [adapter] = [
        arn for arn in scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] if "adapter" in arn
    ]
    for action, resource in (
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ENGINE}:event-bus/sessiongate-bus"),
        ("dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ENGINE}:table/sessiongate-GrantsTable-ABC"),
        ("scheduler:CreateSchedule", f"{SCHEDULES}/sg-start-cm-1"),
        ("iam:PassRole", f"arn:aws:iam::{ENGINE}:role/sessiongate/sessiongate-SchedulerRole-A"),
    ):
        assert _scp_allows(scp, adapter, action, resource, {}), action


REQUEST_API = f"arn:aws:apigateway:{REGION}::/restapis/EDIT-request-api-id"
SCHEDULES = f"arn:aws:scheduler:{REGION}:{ENGINE}:schedule/sessiongate-{STACK_UUID}"
FRONT_DOORS = [
    ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ENGINE}:function:sessiongate-request-api"),
    ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ENGINE}:function:sessiongate-grant-access:$LATEST"),
    ("ssm:UpdateDocument", f"arn:aws:ssm:{REGION}:{ENGINE}:document/AllowSsmSessionStartTemplate"),
    ("ssm:UpdateDocumentMetadata", f"arn:aws:ssm:{REGION}:{ENGINE}:document/AllowSsmSessionStartTemplate"),
    (
        "ssm:UpdateDocumentDefaultVersion",
        f"arn:aws:ssm:{REGION}:{ENGINE}:document/AllowSsmSessionStartRunbook",
    ),
    ("ssm:PutParameter", f"arn:aws:ssm:{REGION}:{ENGINE}:parameter/EDIT-approval-policy-parameter"),
    ("ssm:DeleteParameter", f"arn:aws:ssm:{REGION}:{ENGINE}:parameter/EDIT-approval-policy-parameter"),
    # The request API (review B, H2): a mapping template can make up the caller identity.
    ("apigateway:PATCH", f"{REQUEST_API}/resources/a/methods/POST"),
    ("apigateway:POST", f"{REQUEST_API}/deployments"),
    ("apigateway:UpdateRestApiPolicy", REQUEST_API),
    # The chat API and the Slack app's secrets (issue 19): a rewritten signing secret signs any click.
    ("apigateway:PATCH", f"arn:aws:apigateway:{REGION}::/restapis/EDIT-chat-api-id/stages/v1"),
    (
        "secretsmanager:PutSecretValue",
        f"arn:aws:secretsmanager:{REGION}:{ENGINE}:secret:sessiongate/slack/signing-secret-AbCdEf",
    ),
    (
        "secretsmanager:DeleteResourcePolicy",
        f"arn:aws:secretsmanager:{REGION}:{ENGINE}:secret:sessiongate/slack/bot-token-AbCdEf",
    ),
]


@pytest.mark.parametrize(("action", "resource"), FRONT_DOORS)
def test_scp_sample_protects_the_front_doors(action: str, resource: str) -> None:
    """Nobody but the deployers invokes SessionGate's functions directly (a hand-made event would name
    any caller), rewrites the change template's approvers or writes the approval policy parameter."""
    scp = _scp("scp-protect-front-doors.json")
    admin = f"arn:aws:iam::{ENGINE}:role/Admin"
    deployer = f"arn:aws:iam::{ENGINE}:role/EDIT-sessiongate-deployer"
    assert not _scp_allows(scp, admin, action, resource, {})
    assert _scp_allows(scp, deployer, action, resource, {})
    elsewhere = re.sub(
        r"sessiongate|AllowSsmSessionStart|EDIT-approval-policy-parameter|EDIT-request-api-id|EDIT-chat-api-id",
        "app",
        resource,
    )
    assert _scp_allows(scp, admin, action, elsewhere, {})


def test_scp_sample_lets_scheduler_invoke_the_engine() -> None:
    scp = _scp("scp-protect-front-doors.json")
    [scheduler] = [
        arn
        for s in scp["Statement"]
        for arn in s.get("Condition", {}).get("ArnNotLike", {}).get("aws:PrincipalArn", [])
        if "scheduler" in arn
    ]
    revoke = f"arn:aws:lambda:{REGION}:{ENGINE}:function:sessiongate-revoke-access"
    assert _scp_allows(scp, scheduler, "lambda:InvokeFunction", revoke, {})
    parameter = next(resource for action, resource in FRONT_DOORS if action == "ssm:PutParameter")
    assert not _scp_allows(scp, scheduler, "ssm:PutParameter", parameter, {})


@pytest.mark.parametrize("key", ["SessionGate", "sessiongate", "EDIT-InstanceRequiredTag-key"])
@pytest.mark.parametrize("action", ["ec2:CreateTags", "ec2:DeleteTags"])
def test_scp_sample_protects_instance_scope_tags(key: str, action: str) -> None:
    """Finding 8: the instance tag keys the approval policy relies on are changed by tag admins only."""
    scp = _scp("scp-deny-slot-tags.json")
    [statement] = [
        s for s in scp["Statement"] if s["Sid"] == "EDITInstanceScopeTagKeysOnlyTagAdministratorsChange"
    ]
    admins = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    instance = f"arn:aws:ec2:{REGION}:222222222222:instance/i-0123456789abcdef0"
    context = {"aws:TagKeys": [key]}
    assert not _scp_allows(scp, "arn:aws:iam::222222222222:role/Admin", action, instance, context)
    for admin in admins:
        assert _scp_allows(scp, admin.replace("*", "222222222222"), action, instance, context)
    assert _scp_allows(
        scp, "arn:aws:iam::222222222222:role/Admin", action, instance, {"aws:TagKeys": ["Owner"]}
    )


@pytest.mark.parametrize("path", ["", "aws-reserved/sso.amazonaws.com/", "team/"])
def test_scp_sample_reserves_identity_center_role_names(path: str) -> None:
    """An SSOUser approver and IdC people are recognised by the AWSReservedSSO_ role name, which STS
    ARNs show without the path: nobody in the organization creates a role named so (IAM Identity
    Center creates them through its service-linked role, which SCPs do not bind)."""
    scp = _scp("scp-protect-front-doors.json")
    role = f"arn:aws:iam::222222222222:role/{path}AWSReservedSSO_Approvers_0123456789abcdef"
    deployer = f"arn:aws:iam::{ENGINE}:role/EDIT-sessiongate-deployer"
    for who in ("arn:aws:iam::222222222222:role/Admin", deployer):
        assert not _scp_allows(scp, who, "iam:CreateRole", role, {})
    admin, app = "arn:aws:iam::222222222222:role/Admin", "arn:aws:iam::222222222222:role/app"
    assert _scp_allows(scp, admin, "iam:CreateRole", app, {})


def test_the_publisher_reads_the_two_streams_and_publishes_to_the_topic_only(
    iam: tuple[World, SessionChecker],
) -> None:
    """Issue 16: the stream consumer's role holds the streams' reads, sns:Publish on the lifecycle
    topic (through its key), its failure queue, and nothing else: no table item, tag or other topic."""
    world, checker = iam
    role = _role(world, "PublishEventsFunctionRole")
    res = world.stack.resources
    streams = [f"{res[t].arn}/stream/{cfn.STREAM_LABEL}" for t in ("GrantsTable", "RequestsTable")]
    for stream in streams:
        for action in ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"):
            assert checker.authorized("role", role, action, stream), (action, stream)
    other = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/payroll/stream/{cfn.STREAM_LABEL}"
    assert not checker.authorized("role", role, "dynamodb:GetRecords", other)
    assert checker.authorized("role", role, "sns:Publish", res["NotificationTopic"].arn)
    assert not checker.authorized("role", role, "sns:Publish", res["AlarmTopic"].arn)
    assert checker.authorized("role", role, "sqs:SendMessage", res["PublishFailuresQueue"].arn)
    assert not checker.authorized("role", role, "sqs:SendMessage", res["FailedInvocationsQueue"].arn)
    for table in ("GrantsTable", "RequestsTable"):
        for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:PutItem"):
            assert not checker.authorized("role", role, action, res[table].arn), (table, action)
    assert not checker.authorized("role", role, "iam:TagUser", USER)
    assert not checker.authorized("role", role, "iam:UntagUser", USER)
    assert not checker.authorized("role", role, "events:PutEvents", res["EventBus"].arn)


# ---------------------------------------------------------------- history export (issue 17)
def _history(world: World) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The bucket's ARN, its policy, and what a PutObject of the export carries (TLS, the key)."""
    res = world.stack.resources
    policy = res["HistoryBucketPolicy"].properties["PolicyDocument"]
    put = {
        "aws:SecureTransport": "true",
        "s3:x-amz-server-side-encryption-aws-kms-key-id": res["HistoryKey"].arn,
    }
    return res["HistoryBucket"].arn, policy, put


def test_the_export_writes_history_objects_and_reads_the_tables_only(
    iam: tuple[World, SessionChecker],
) -> None:
    world, checker = iam
    role = _role(world, "ExportHistoryFunctionRole")
    res = world.stack.resources
    bucket, policy, put = _history(world)
    key = f"{bucket}/history/v1/dt=2026-01-05/grant.rq-1.grant.jsonl"
    assert checker.authorized("role", role, "s3:PutObject", key, put, resource_policy=policy)
    # ...only under the history key, over TLS, only below history/v1/, never read or delete.
    other_key = {**put, "s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:1:key/x"}
    assert not checker.authorized("role", role, "s3:PutObject", key, other_key, resource_policy=policy)
    plain = {**put, "aws:SecureTransport": "false"}
    assert not checker.authorized("role", role, "s3:PutObject", key, plain, resource_policy=policy)
    assert not checker.authorized("role", role, "s3:PutObject", f"{bucket}/elsewhere", put)
    for action in (
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
    ):
        assert not checker.authorized("role", role, action, key, put, resource_policy=policy), action
    for table in ("GrantsTable", "RequestsTable"):
        assert checker.authorized("role", role, "dynamodb:Scan", res[table].arn)
        for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
            assert not checker.authorized("role", role, action, res[table].arn), (table, action)
    assert checker.authorized("role", role, "sqs:SendMessage", res["HistoryExportFailuresQueue"].arn)
    assert not checker.authorized("role", role, "sqs:SendMessage", res["PublishFailuresQueue"].arn)
    assert not checker.authorized("role", role, "sns:Publish", res["NotificationTopic"].arn)


@pytest.mark.parametrize("guarded", [False, True])
def test_an_admin_cannot_rewrite_or_delete_history(iam: tuple[World, SessionChecker], guarded: bool) -> None:
    """Issue 17: the bucket policy alone stops an account admin (no IAM needed) from writing or deleting
    a record; the guard also stops changing the bucket itself (its policy, lifecycle, lock)."""
    world, checker = iam
    name = f"history-admin-{guarded}"
    _admin(world, name, *(GUARDS if guarded else ()))
    bucket, policy, put = _history(world)
    key = f"{bucket}/history/v1/dt=2026-01-05/grant.rq-1.grant.jsonl"
    for action in (
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
    ):
        assert not checker.authorized("role", name, action, key, put, resource_policy=policy), action
    assert checker.authorized("role", name, "s3:GetObject", key, put, resource_policy=policy)
    for action in ("s3:PutBucketPolicy", "s3:PutLifecycleConfiguration", "s3:DeleteBucket"):
        allowed = checker.authorized("role", name, action, bucket, put, resource_policy=policy)
        assert allowed is not guarded, action


def test_the_auditor_policy_reads_the_history_and_writes_nothing(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    name = "history-auditor"
    world.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    world.client("iam").attach_role_policy(
        RoleName=name, PolicyArn=world.stack.resources["HistoryAuditorPolicy"].arn
    )
    bucket, policy, put = _history(world)
    key = f"{bucket}/history/v1/dt=2026-01-05/grant.rq-1.grant.jsonl"
    assert checker.authorized("role", name, "s3:GetObject", key, put, resource_policy=policy)
    assert checker.authorized("role", name, "s3:ListBucket", bucket, put, resource_policy=policy)
    assert not checker.authorized("role", name, "s3:PutObject", key, put, resource_policy=policy)
    assert not checker.authorized("role", name, "s3:GetObject", "arn:aws:s3:::payroll/x", put)
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{world.stack.resources['HistoryKey'].physical_id}"
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    assert checker.authorized("role", name, "kms:Decrypt", key_arn, via_s3)
    assert not checker.authorized("role", name, "kms:Decrypt", key_arn)  # only through S3
    assert not checker.authorized("role", name, "kms:GenerateDataKey", key_arn, via_s3)


# ---------------------------------------------------------------- instance binding (issue 15)
INSTANCE_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"
FOR1 = slots.for_key(1)


@pytest.mark.parametrize(
    ("keys", "value", "allowed"),
    [
        ([FOR1], "AIDAALICEUSERID", True),  # an IAM user's UserId
        ([slots.for_key(5)], "AROAEXAMPLEROLEID:dave@example.com", True),  # a role session's aws:userid
        ([FOR1], "i-0123456789abcdef0", False),  # no aws:userid
        ([FOR1], "*", False),
        (["Name"], "web", False),
        ([FOR1, "Name"], "AIDAALICEUSERID", False),
        ([slots.for_key(6)], "AIDAALICEUSERID", False),  # beyond the 5 template slots
        (["SecurityAllowSessionInstance"], "i-0123456789abcdef0", False),  # principal keys stay on IAM
        (None, None, False),  # no keys at all: the Null check
    ],
)
def test_grant_role_tags_instances_only_with_slot_keys_and_userids(
    iam: tuple[World, SessionChecker], keys: list[str] | None, value: str | None, allowed: bool
) -> None:
    world, checker = iam
    context: dict[str, Any] = {}
    if keys is not None:
        context = {"aws:TagKeys": keys, **{f"aws:RequestTag/{k}": value for k in keys}}
    role = _role(world, "GrantAccessFunctionRole")
    assert checker.authorized("role", role, "ec2:CreateTags", INSTANCE_ARN, context) is allowed
    # Never on anything but instances (volumes, images ... carry no session rights).
    volume = f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0123456789abcdef0"
    assert not checker.authorized("role", role, "ec2:CreateTags", volume, context)


@pytest.mark.parametrize("function", UNTAGGING_ROLES)
@pytest.mark.parametrize(
    ("keys", "allowed"),
    [
        ([FOR1], True),
        ([slots.for_key(2), slots.for_key(3)], True),
        (["Name"], False),
        ([FOR1, "Name"], False),
        (None, False),
    ],
)
def test_engine_untags_instances_only_of_slot_keys(
    iam: tuple[World, SessionChecker], function: str, keys: list[str] | None, allowed: bool
) -> None:
    world, checker = iam
    context = {"aws:TagKeys": keys} if keys is not None else {}
    assert (
        checker.authorized("role", _role(world, function), "ec2:DeleteTags", INSTANCE_ARN, context) is allowed
    )


@pytest.mark.parametrize(
    "function", ["RevokeAccessFunctionRole", "ReconcileGrantsFunctionRole", "RequestApiFunctionRole"]
)
def test_only_the_grant_role_tags_instances(iam: tuple[World, SessionChecker], function: str) -> None:
    world, checker = iam
    context = {"aws:TagKeys": [FOR1], f"aws:RequestTag/{FOR1}": "AIDAALICEUSERID"}
    assert not checker.authorized("role", _role(world, function), "ec2:CreateTags", INSTANCE_ARN, context)


def test_a_principal_mode_stack_gives_the_grant_role_no_instance_tagging() -> None:
    stack = cfn.load("sessiongate", ACCOUNT, REGION, {"BindingMode": "principal"})
    policies = stack.resources["GrantAccessFunctionRole"].properties["Policies"]
    actions = {
        action
        for policy in policies
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert "iam:TagUser" in actions
    assert not {"ec2:CreateTags", "ec2:DeleteTags"} & actions


def _instance(world: World, tags: dict[str, str]) -> str:
    kwargs: dict[str, Any] = {"ImageId": "ami-12c6146b", "MinCount": 1, "MaxCount": 1}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    return str(world.client("ec2").run_instances(**kwargs)["Instances"][0]["InstanceId"])


def test_operator_policy_opens_an_instance_to_the_aws_userid_its_slot_tag_names(
    iam: tuple[World, SessionChecker],
) -> None:
    world, _ = iam
    checker = SessionChecker(world.client("iam"), REGION, ACCOUNT, world.client("ec2"))
    iam_client = world.client("iam")
    operator_policy = world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
    users = {}
    for name in ("ib-alice", "ib-bob"):
        users[name] = iam_client.create_user(UserName=name)["User"]["UserId"]
        iam_client.attach_user_policy(UserName=name, PolicyArn=operator_policy)
    role_id = iam_client.create_role(RoleName="ib-shared", AssumeRolePolicyDocument="{}")["Role"]["RoleId"]
    iam_client.attach_role_policy(RoleName="ib-shared", PolicyArn=operator_policy)
    dave, erin = f"{role_id}:dave@example.com", f"{role_id}:erin@example.com"
    web = _instance(world, {"Name": "web", slots.for_key(1): users["ib-alice"], slots.for_key(3): dave})
    other = _instance(world, {"Name": "db"})
    assert checker.may_start_session("user", "ib-alice", web).allowed
    assert not checker.may_start_session("user", "ib-bob", web).allowed
    assert not checker.may_start_session("user", "ib-alice", other).allowed
    assert checker.may_start_session("role", "ib-shared", web, dave).allowed
    # Another person on the same role (permission set) is still denied on the same instance.
    assert not checker.may_start_session("role", "ib-shared", web, erin).allowed
    # The principal-mode keys on an instance mean nothing: only the instance keys bind.
    tagged_wrong = _instance(world, {"SecurityAllowSessionInstance": users["ib-bob"]})
    assert not checker.may_start_session("user", "ib-bob", tagged_wrong).allowed


ANY_CASE_INSTANCE_KEYS = [
    FOR1,
    FOR1.lower(),
    FOR1.upper(),
    "securityAllowSessionFor10",
    "SECURITYALLOWSESSIONFOR4",
]


@pytest.mark.parametrize("key", ANY_CASE_INSTANCE_KEYS)
def test_tag_key_guard_stops_everyone_else_on_instances(iam: tuple[World, SessionChecker], key: str) -> None:
    """Only SessionGate writes instance slot keys, in any letter case (IAM condition keys ignore case and
    EC2 keeps each spelling), also when tags are given at launch: EC2 authorizes those as ec2:CreateTags
    with ec2:CreateAction ("Grant permission to tag Amazon EC2 resources during creation")."""
    world, checker = iam
    admin = _guarded_admin(world, f"guarded-ec2-{ANY_CASE_INSTANCE_KEYS.index(key)}")
    context = {"aws:TagKeys": [key, "Name"], f"aws:RequestTag/{key}": "AIDAMALLORY"}
    for action, extra in (
        ("ec2:CreateTags", {}),
        ("ec2:DeleteTags", {}),
        ("ec2:CreateTags", {"ec2:CreateAction": "RunInstances"}),
        ("ec2:CreateTags", {"ec2:CreateAction": "CreateFleet"}),
        ("ec2:RunInstances", {}),
        ("ec2:CreateFleet", {}),
    ):
        assert not checker.authorized("user", admin, action, INSTANCE_ARN, {**context, **extra}), (
            action,
            key,
        )
    assert checker.authorized("user", admin, "ec2:CreateTags", INSTANCE_ARN, {"aws:TagKeys": ["Name"]})
    assert checker.authorized("user", admin, "ec2:CreateFleet", INSTANCE_ARN, {"aws:TagKeys": ["Name"]})


def test_guard_keeps_the_engine_exempt_on_instances(iam: tuple[World, SessionChecker]) -> None:
    world, checker = iam
    grant = _role(world, "GrantAccessFunctionRole")
    guard = world.stack.resources["SessionGateTagKeyGuard"].arn
    world.client("iam").attach_role_policy(RoleName=grant, PolicyArn=guard)
    try:
        context = {"aws:TagKeys": [FOR1], f"aws:RequestTag/{FOR1}": "AIDAALICEUSERID"}
        assert checker.authorized("role", grant, "ec2:CreateTags", INSTANCE_ARN, context)
    finally:
        world.client("iam").detach_role_policy(RoleName=grant, PolicyArn=guard)


def test_scp_sample_denies_instance_slot_keys_in_any_case() -> None:
    scp = _scp("scp-deny-slot-tags.json")
    someone = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    engine = scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"][0]
    for key in [*ANY_CASE_INSTANCE_KEYS, *slots.all_for_keys(slots.MAX_SLOTS)]:
        for action, extra in (
            ("ec2:CreateTags", {}),
            ("ec2:DeleteTags", {}),
            ("ec2:CreateTags", {"ec2:CreateAction": "RunInstances"}),
            ("ec2:CreateTags", {"ec2:CreateAction": "CreateFleet"}),
            ("ec2:RunInstances", {}),
            ("ec2:CreateFleet", {}),
        ):
            context = {"aws:TagKeys": [key], **extra}
            assert not _scp_allows(scp, someone, action, INSTANCE_ARN, context), (action, key)
            assert _scp_allows(scp, engine, action, INSTANCE_ARN, context), (action, key)
    assert _scp_allows(scp, someone, "ec2:CreateTags", INSTANCE_ARN, {"aws:TagKeys": ["Name"]})
    assert _scp_allows(scp, someone, "ec2:RunInstances", INSTANCE_ARN, {"aws:TagKeys": ["Name"]})


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        (
            "iam:UpdateAssumeRolePolicy",
            "role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Leads_0123456789abcdef",
        ),
        ("iam:UpdateSAMLProvider", "saml-provider/AWSSSO_0123456789abcdef_DO_NOT_DELETE"),
        ("iam:DeleteSAMLProvider", "saml-provider/AWSSSO_0123456789abcdef_DO_NOT_DELETE"),
    ],
)
def test_scp_sample_keeps_identity_center_sessions_minted_by_identity_center(
    action: str, resource: str
) -> None:
    """Review B, H1: an IdC session's name is IdC's user name only while IdC alone can mint sessions of
    its roles: nobody (IdC's service-linked role is not bound by SCPs) rewires their trust or IdC's
    SAML provider in a served account."""
    scp = _scp("scp-protect-front-doors.json")
    admin = "arn:aws:iam::222222222222:role/Admin"
    assert not _scp_allows(scp, admin, action, f"arn:aws:iam::222222222222:{resource}", {})
    other = re.sub(r"AWSReservedSSO_|AWSSSO_", "app", resource)
    assert _scp_allows(scp, admin, action, f"arn:aws:iam::222222222222:{other}", {})


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        # A group tag with PropagateAtLaunch reaches instances through Auto Scaling's service-linked role,
        # which no guard or SCP binds: the tag is stopped on the group (REVIEW-A F3).
        ("autoscaling:CreateOrUpdateTags", f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*"),
        ("autoscaling:CreateAutoScalingGroup", f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*"),
        ("ssm:AddTagsToResource", f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/mi-0123456789abcdef0"),
    ],
)
@pytest.mark.parametrize(
    "key", ["SecurityAllowSessionFor1", "securityallowsessionfor7", "SECURITYALLOWSESSIONUSER2"]
)
def test_guard_denies_slot_keys_on_auto_scaling_groups_and_ssm_resources(
    iam: tuple[World, SessionChecker], action: str, resource: str, key: str
) -> None:
    world, checker = iam
    name = f"op-asg-{action.split(':')[1].lower()}-{key.lower()}"
    _admin(world, name, *GUARDS)
    assert not checker.authorized("role", name, action, resource, {"aws:TagKeys": [key]})
    assert checker.authorized("role", name, action, resource, {"aws:TagKeys": ["Team"]})


@pytest.mark.parametrize("required", ["true", "false"])
def test_guarded_admins_keep_the_session_manager_preferences_with_required_logging(required: str) -> None:
    """RequireSessionLogging (issue 17): an admin holding the control-plane guard cannot point the session
    logs elsewhere (the preferences document); without the option the guard leaves the document alone."""
    stack = cfn.load("sessiongate", ACCOUNT, REGION, {"RequireSessionLogging": required})
    guard = stack.resources["SessionGateControlPlaneGuard"].properties["PolicyDocument"]
    admin = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    node = principal_node(
        admin,
        "AROAEXAMPLE",
        [Policy(admin, "admin", ADMIN_DOCUMENT), Policy(admin, "guard", guard)],
        trust={},
    )
    document = f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/SSM-SessionManagerRunShell"
    for action in ("ssm:UpdateDocument", "ssm:DeleteDocument", "ssm:UpdateDocumentDefaultVersion"):
        allowed = local_check_authorization_full(node, action, document, {}, resource_owner=ACCOUNT)
        assert bool(allowed) is (required == "false"), action
    other = f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/team-runbook"
    assert local_check_authorization_full(node, "ssm:UpdateDocument", other, {}, resource_owner=ACCOUNT)
