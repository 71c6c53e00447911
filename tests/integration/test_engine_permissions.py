"""Least privilege of the engine roles, evaluated by an IAM policy evaluator over template.yaml's policies.

The roles are created in moto exactly as the template declares them (sandbox.World); principalmapper
evaluates their policies with conditions (``aws:TagKeys``, ``ForAllValues``, ``Null``), which moto's own
evaluator cannot. The same questions against real IAM are in tests/aws (opt-in).
"""

from __future__ import annotations

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


@pytest.mark.parametrize("function", ["GrantAccessFunctionRole", "RevokeAccessFunctionRole"])
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


@pytest.mark.parametrize("target", ["GrantAccessFunctionRole", "RevokeAccessFunctionRole", "SchedulerRole"])
def test_engine_roles_cannot_tag_or_untag_sessiongate_roles(
    iam: tuple[World, SessionChecker], target: str
) -> None:
    world, checker = iam
    arn = world.stack.resources[target].arn
    context = {"aws:TagKeys": ["SecurityAllowSessionInstance"]}
    for function in ("GrantAccessFunctionRole", "RevokeAccessFunctionRole"):
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
