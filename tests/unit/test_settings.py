from __future__ import annotations

import pytest

from sessiongate.errors import ConfigError
from sessiongate.settings import Settings


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.from_env({})
    assert (s.default_validity_minutes, s.max_validity_minutes, s.slot_count) == (10, 60, 5)
    assert s.change_template_name == "AllowSsmSessionStartTemplate"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "SESSIONGATE_SLOT_COUNT": "3",
            "SESSIONGATE_EXCLUDED_PRINCIPALS": "Admin*, break-glass ,",
            "SESSIONGATE_INSTANCE_REQUIRED_TAG": "Env=dev",
            "SESSIONGATE_REQUIRE_SSM_MANAGED": "False",
        }
    )
    assert s.slot_count == 3
    assert s.excluded_principals == ("Admin*", "break-glass")
    assert s.instance_required_tag == ("Env", "dev")
    assert s.require_ssm_managed is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SESSIONGATE_SLOT_COUNT": "eleven"}, "SESSIONGATE_SLOT_COUNT: must be an integer"),
        ({"SESSIONGATE_SLOT_COUNT": "11"}, "slot count must be 1..10"),
        ({"SESSIONGATE_DEFAULT_VALIDITY_MINUTES": "90"}, "default validity"),
        ({"SESSIONGATE_REQUIRE_SSM_MANAGED": "yes"}, "must be true or false"),
        ({"SESSIONGATE_INSTANCE_DENIED_TAG": "no-equals-sign"}, "must be KEY=VALUE"),
        ({"SESSIONGATE_ENGINE_ROLE_PATH": "/"}, "engine role path must not be '/'"),
        ({"SESSIONGATE_ACCOUNT_ID": "12345"}, "account id must be 12 digits"),
        ({"SESSIONGATE_APPROVER_TYPE": "IamGroups"}, "approver type must be one of"),
        ({"SESSIONGATE_APPROVER_NAME": "team/Approvers"}, "approver name must be"),
        ({"SESSIONGATE_MIN_REQUIRED_APPROVALS": "0"}, "minimum required approvals must be 1..5"),
        (
            {"SESSIONGATE_APPROVER_TYPE": "IamUser", "SESSIONGATE_MIN_REQUIRED_APPROVALS": "2"},
            "an IamUser or SSOUser approver is one person",
        ),
    ],
)
def test_invalid_values_are_reported(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_every_missing_required_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({}, require=("table_name", "topic_arn"))
    assert "SESSIONGATE_TABLE is required" in str(err.value)
    assert "SESSIONGATE_TOPIC_ARN is required" in str(err.value)


def test_the_change_request_functions_need_the_stacks_approver_at_cold_start() -> None:
    from sessiongate.wiring import REQUIRED

    for role in ("adapter", "grant"):
        with pytest.raises(ConfigError) as err:
            Settings.from_env({}, require=REQUIRED[role])
        assert "SESSIONGATE_APPROVER_NAME is required" in str(err.value)
        assert "SESSIONGATE_APPROVER_TYPE is required" in str(err.value)
