"""The sandbox's API Gateway in front of the request API: REST events, and the resource policy deciding
who of another account may call (the organization: the stack's account and its member accounts)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.scenario import Runner
from sandbox.scenario.play import Play
from sandbox.world import World

ORG = "o-exampleorg1"
MEMBER = "210987654321"
OUTSIDER = "555555555555"


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Principals named ``<name>@<account>`` sign as IAM user ``name`` of that account (the sandbox's
    principals all live in the stack's account); returns the callers whose call reached the function."""
    real = Play.principal
    real_invoke = World.invoke
    reached: list[str] = []

    def invoke(self: World, arn: str, event: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("trigger", "")).startswith("api "):
            reached.append(event["requestContext"]["identity"]["userArn"])
        return real_invoke(self, arn, event, **kwargs)

    def principal(self: Play, name: str, index: int) -> dict[str, Any]:
        if "@" not in name:
            return real(self, name, index)
        user, account = name.split("@")
        return {**real(self, user, index), "arn": f"arn:aws:iam::{account}:user/{user}"}

    monkeypatch.setattr(Play, "principal", principal)
    monkeypatch.setattr(World, "invoke", invoke)
    return reached


def _run(parameters: dict[str, str], *steps: dict[str, Any]) -> Any:
    scenario = {
        "name": "t",
        "principals": {"alice": {"type": "user"}},
        "instances": {"web": {}},
        "parameters": parameters,
        "steps": list(steps),
    }
    return Runner(scenario).run()


def _ask(by: str, expect_error: str) -> dict[str, Any]:
    return {
        "request": {"via": "api", "id": f"r-{by}", "by": by, "instance": "web", "expect_error": expect_error}
    }


def test_the_organization_reaches_the_handler_and_nobody_else(elsewhere: list[str]) -> None:
    """A member-account caller passes API Gateway and is served in her own account ("web" is not there);
    a caller of an account outside the organization never reaches the function."""
    report = _run(
        {"OrganizationId": ORG, "MemberAccounts": MEMBER},
        _ask(f"alice@{MEMBER}", "instance_not_found"),
        _ask(f"alice@{OUTSIDER}", "forbidden"),
    )
    assert report.passed, [c.as_dict() for c in report.checks]
    assert elsewhere == [f"arn:aws:iam::{MEMBER}:user/alice"]


def test_without_an_organization_only_the_stacks_account_may_call(elsewhere: list[str]) -> None:
    report = _run(
        {"MemberAccounts": MEMBER},
        _ask(f"alice@{MEMBER}", "forbidden"),
        {"request": {"via": "api", "id": "r1", "by": "alice", "instance": "web"}},
    )
    assert report.passed, [c.as_dict() for c in report.checks]
    assert elsewhere == ["arn:aws:iam::123456789012:user/alice"]
