"""The reconciler's AWS calls per steady run, through the real adapters over counting stubbed
clients (``bench.reconciler_scale``): bounded whatever the number of live grants (issues 16, 17)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bench import reconciler_scale


@pytest.mark.parametrize("require_logging", [False, True])
def test_the_steady_run_makes_18_calls_at_1000_live_grants(require_logging: bool) -> None:
    engine, calls = reconciler_scale.build(1000, 1000, require_session_logging=require_logging)
    calls.clear()
    outcome = engine.reconcile()
    assert outcome.result == "reconciled"
    # 17 live-index queries (16 shards + legacy LIVE), one USAGE shard (review M5), and with
    # RequireSessionLogging one GetDocument for the one configured account (review M2).
    expected = {"dynamodb:Query": 18}
    if require_logging:
        expected["ssm:GetDocument"] = 1
    assert dict(calls) == expected


def test_the_usage_shards_rotate_over_16_steady_runs() -> None:
    from sessiongate.core import usage

    engine, calls = reconciler_scale.build(10, 10)
    seen = set()
    for run in range(16):
        calls.clear()
        usage.record_pending(engine, reconciler_scale.START + timedelta(minutes=5 * run))
        seen.add(engine.ledger._db.last_usage_partition)
        assert dict(calls) == {"dynamodb:Query": 1}
    assert seen == {f"USAGE#{n}" for n in range(16)}
