"""The request API's date inputs (``start_at``, the only one): a bad value is a 400 ``invalid_start_at``,
never an unhandled error (a Lambda error is a 502 for the caller). Review B, L1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.apigw import api_event
from sessiongate.access_requests.http import RequestApi
from tests.unit.access_world import ALICE, new_world
from tests.unit.fakes.access import World

WORLD: list[World] = []


def answer(start_at: object) -> tuple[int, dict[str, Any]]:
    if not WORLD:
        WORLD.append(new_world())
    w = WORLD[0]
    body = {"instance_id": w.instance(), "reason": "restart nginx", "start_at": start_at}
    out = RequestApi(w.service).handle(api_event("POST /requests", ALICE, body=body))
    return int(out["statusCode"]), json.loads(out["body"] or "{}")


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-23:59",  # no UTC value (past datetime.max)
        "0001-01-01T00:00:00+01:00",  # no UTC value (before datetime.min)
        "2026-01-05T10:00:00",  # no zone
        "2026-02-30T10:00:00Z",
        "tomorrow",
        "",
        12,
        ["2026-01-05T10:00:00Z"],
        "2026-01-05T10:00:00Z" + " " * 40,
    ],
)
def test_a_bad_start_at_is_a_400_invalid_start_at(value: object) -> None:
    status, body = answer(value)
    assert status == 400, body
    assert body["error"] == "invalid_start_at", body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=45),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.builds(
            lambda d, minutes: d.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
            st.datetimes(),
            st.integers(min_value=-1439, max_value=1439),
        ),
    )
)
def test_any_start_at_is_answered_never_an_error(value: str) -> None:
    status, body = answer(value)
    assert 400 <= status < 500 or status in (200, 201), (value, status, body)
    if status == 400 and "invalid_start_at" not in json.dumps(body):
        # Accepted as a time: then it had a UTC value (refused later for another reason).
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert parsed.astimezone(UTC)
