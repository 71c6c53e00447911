"""A scenario file's shape is checked once, before anything runs (pure: no World, no moto)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.scenario import schema
from sandbox.scenario.schema import ScenarioError, load, parse_duration, parse_time, validate

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def _scenario(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "principals": {"alice": {}, "ops": {"type": "role"}},
        "instances": {"web": {}},
        "steps": [*steps, {"schedules": {"expect": 0}}],
        **extra,
    }


def test_importing_the_schema_imports_no_aws_emulation() -> None:
    code = (
        "import sys, sandbox.scenario.schema, sandbox.scenario\n"
        "print(sorted(m for m in ('moto', 'boto3', 'botocore', 'sandbox.world') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 (this interpreter, a fixed statement)
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_are_valid(path: Path) -> None:
    assert load(path)["steps"]


def test_the_tables_agree() -> None:
    for kind, required in schema.REQUIRED_FIELDS.items():
        assert required <= (schema.STEP_FIELDS[kind] or frozenset()), kind
    for (kind, key), values in schema.CHOICES.items():
        assert key in (schema.STEP_FIELDS[kind] or frozenset()), (kind, key)
        assert len(values) >= 2
    insider = schema.STEP_FIELDS["insider"] or frozenset()
    assert all(fields <= insider for fields in schema.INSIDER_ACTIONS.values())
    assert set(schema.STEP_FIELDS) >= schema.CHECK_STEPS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stpes": []}, "top level: unknown key 'stpes'"),
        ({"principals": {"bob": {"tgas": {}}}}, "principal bob: unknown key 'tgas'"),
        ({"instances": {"db": {"manged": False}}}, "instance db: unknown key 'manged'"),
        ({"instances": ["web"]}, "instances must be a mapping of names"),
        ({"principals": {"bob": "user"}}, "principal bob: needs a mapping"),
        (
            {"principals": {"bob": {"type": "group"}}},
            "principal bob: type must be user, role, session or sso",
        ),
        ({"principals": {"bob": {"type": "role", "groups": ["g"]}}}, "only users belong to IAM groups"),
        ({"principals": {"s": {"type": "session"}}}, "principal s: a session needs 'role'"),
        ({"principals": {"s": {"type": "session", "role": "alice"}}}, "a session needs 'role'"),
        ({"approval_policy": ["bob"]}, "approval_policy must be a mapping"),
        ({"start": "Monday"}, "start 'Monday' is not an ISO-8601 time"),
    ],
)
def test_top_level_principal_and_instance_mistakes(data: dict[str, Any], message: str) -> None:
    scenario = _scenario()
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(scenario.get(key), dict):
            scenario[key] = {**scenario[key], **value}
        else:
            scenario[key] = value
    with pytest.raises(ScenarioError, match=message):
        validate(scenario)


SSO_ALICE = {"type": "sso", "user": "alice@example.com", "permission_set": "Operators"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"principals": {"a": {"type": "sso", "permission_set": "Ops"}}},
            "principal a: user must be the Identity",
        ),
        ({"principals": {"a": {"type": "sso", "user": "a b", "permission_set": "Ops"}}}, "user must be"),
        ({"principals": {"a": {"type": "sso", "user": "ann"}}}, "principal a: permission_set must name"),
        ({"principals": {"a": {**SSO_ALICE, "permission_set": "x" * 33}}}, "permission_set must name"),
        ({"principals": {"a": {**SSO_ALICE, "account": "12"}}}, "account must be a 12-digit account id"),
        (
            {"principals": {"a": {**SSO_ALICE, "tags": {"k": "v"}}}},
            "takes user, permission_set and account only",
        ),
        ({"principals": {"a": {**SSO_ALICE, "path": "/x/"}}}, "no path, tags or policies of its own"),
        (
            {"principals": {"a": {"type": "role", "permission_set": "Ops"}}},
            "belong to type: sso principals only",
        ),
        ({"identity_center": ["g"]}, "identity_center must be a mapping"),
        ({"identity_center": {"group": {}}}, "identity_center: unknown key 'group'"),
        (
            {"identity_center": {"groups": {"Leads": "bob"}}},
            "identity_center.groups.Leads: members must be a list",
        ),
        (
            {"identity_center": {"groups": {"Leads": ["bob@example.com"]}}},
            "bob@example.com is no user of a type: sso",
        ),
        ({"identity_center": {"permission_sets": {"Ops": {"policies": []}}}}, "unknown key 'policies'"),
        (
            {"identity_center": {"permission_sets": {"Ops": {"managed_policies": "x"}}}},
            "managed_policies: a list",
        ),
    ],
)
def test_identity_center_mistakes_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        validate(_scenario(**data))


def test_sso_principals_and_their_groups_are_valid() -> None:
    validate(
        _scenario(
            principals={"alice-ops": SSO_ALICE, "alice-lead": {**SSO_ALICE, "permission_set": "Leads"}},
            identity_center={
                "groups": {"Platform-Leads": ["alice@example.com"]},
                "permission_sets": {"Operators": {"managed_policies": ["operator", "ReadOnly"]}},
            },
        )
    )


def test_a_session_of_a_role_declared_before_it_is_valid() -> None:
    validate(_scenario(principals={"ops": {"type": "role"}, "ann": {"type": "session", "role": "ops"}}))
    with pytest.raises(ScenarioError, match="declared before it"):
        validate(_scenario(principals={"ann": {"type": "session", "role": "ops"}, "ops": {"type": "role"}}))


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"fly": {}}, "step 1: unknown step 'fly'"),
        ({"grant": {}, "tags": {}}, "step 1: each step is a mapping with one key"),
        ({"grant": "r1"}, "step 1: grant needs a mapping"),
        (
            {"approve": {"request": "r1", "by": "bob", "coment": "ok"}},
            r"step 1 \(approve\): unknown field 'coment'",
        ),
        ({"reconcile": {"now": True}}, r"step 1 \(reconcile\): unknown field 'now' \(it takes none\)"),
        ({"grant": {"request": "r1"}}, r"step 1 \(grant\): missing 'expect'"),
        ({"request": {"by": "alice", "instance": "web"}}, r"step 1 \(request\): missing 'id'"),
        ({"tamper": {"tags": {}}}, r"step 1 \(tamper\): missing 'principal'"),
        (
            {"request": {"id": "r1", "by": "alice", "instance": "web", "via": "fax"}},
            r"step 1 \(request\): via must be change_manager or api",
        ),
        ({"redeliver": {"request": "r1", "what": "twice"}}, "what must be approval or revoke"),
        (
            {"insider": {"by": "alice", "action": "bribe"}},
            "action must be forge_approval, retag_instance or write_policy",
        ),
        (
            {"insider": {"by": "alice", "action": "retag_instance"}},
            r"\(insider retag_instance\): missing 'instance'",
        ),
        (
            {"insider": {"by": "alice", "action": "write_policy"}},
            r"\(insider write_policy\): missing 'policy'",
        ),
        (
            {"insider": {"by": "alice", "action": "forge_approval", "request": "r1", "approvers": []}},
            "approvers is empty",
        ),
        ({"fault": {"operation": "TagUser"}}, r"step 1 \(fault\): operation must look like iam:TagUser"),
        ({"advance": "soon"}, "step 1: duration 'soon' must look like 90s"),
        ({"approve": {"request": "r1", "by": "bob", "ssm_lag": "a bit"}}, "step 1: duration 'a bit'"),
        (
            {"request": {"id": "r1", "by": "alice", "instance": "web", "start_in": "1 hour"}},
            "duration '1 hour'",
        ),
    ],
)
def test_step_mistakes_name_the_step(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        validate(_scenario(step))


def test_a_scenario_without_checks_is_refused_unless_run_as_a_mapping() -> None:
    data = {"steps": [{"advance": "5m"}, {"reconcile": {}}]}
    with pytest.raises(ScenarioError, match="the scenario checks nothing"):
        validate(data)
    validate(data, require_checks=False)
    validate({"steps": [{"cancel": {"request": "r1", "by": "alice", "expect_error": "x"}}]})


def test_load_names_the_file_in_its_errors_and_the_scenario_after_it(tmp_path: Path) -> None:
    path = tmp_path / "named.yaml"
    path.write_text("steps: [{schedules: {expect: 0}}]")
    assert load(path)["name"] == "named"
    path.write_text("steps: [{grant: {request: r1}}]")
    with pytest.raises(ScenarioError, match=rf"^{path}: step 1 \(grant\): missing 'expect'$"):
        load(path)
    for text, message in [("steps: [", "is not valid YAML"), ("steps: 5", "a mapping with a 'steps' list")]:
        path.write_text(text)
        with pytest.raises(ScenarioError, match=message):
            load(path)
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load(tmp_path / "missing.yaml")


def test_durations_and_times() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration(" 2h ") == timedelta(hours=2)
    assert parse_duration("1d") == timedelta(days=1)
    with pytest.raises(ScenarioError):
        parse_duration("5 minutes")
    assert parse_time("2026-11-24T09:00:00Z") == datetime(2026, 11, 24, 9, tzinfo=UTC)
    assert parse_time(datetime(2026, 11, 24, 9)) == datetime(2026, 11, 24, 9, tzinfo=UTC)
