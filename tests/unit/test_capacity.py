"""bench.capacity's arithmetic: a quota allows quota / calls-per-grant grants per second, unpublished quotas
bind nothing, the lowest rate binds first, Lambda concurrency divides by function seconds per grant."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.capacity import QUOTAS_US_EAST_1, Quota, binding, calls_per, lambda_seconds, table

SCHEDULER = Quota("CreateSchedule", ("scheduler:CreateSchedule",), 1_000, "doc")
IAM = Quota("IAM", ("iam:TagUser", "iam:UntagUser", "iam:GetUser"), None, "doc")
DDB = Quota("partition", ("dynamodb:PutItem", "dynamodb:UpdateItem"), 1_000, "doc")
LAMBDA = Quota("Lambda", ("lambda:(concurrency)",), 1_000, "doc")


def rows(grant: dict[str, int], revoke: dict[str, int], *quotas: Quota) -> list:  # type: ignore[type-arg]
    return table(grant, revoke, quotas, lambda_seconds_per_grant=0.5, lambda_seconds_per_revoke=0.125)


def test_a_quota_allows_its_rate_divided_by_the_calls_each_grant_makes() -> None:
    grant = {"scheduler:CreateSchedule": 1, "dynamodb:PutItem": 3, "dynamodb:UpdateItem": 1}
    sched, ddb = rows(grant, {"dynamodb:UpdateItem": 2}, SCHEDULER, DDB)
    assert (sched.per_grant, sched.max_grants_per_second) == (1, 1_000)
    assert (ddb.per_grant, ddb.max_grants_per_second) == (4, 250)  # every listed operation counts
    assert (ddb.per_revoke, ddb.max_revokes_per_second) == (2, 500)
    assert sched.max_revokes_per_second is None  # a revocation makes no CreateSchedule call


def test_an_unpublished_quota_has_no_rate_and_never_binds() -> None:
    result = rows({"iam:TagUser": 1, "iam:GetUser": 2, "scheduler:CreateSchedule": 1}, {}, IAM, SCHEDULER)
    iam = result[0]
    assert iam.per_grant == 3
    assert iam.max_grants_per_second is None
    first = binding(result)
    assert first is not None
    assert first.quota is SCHEDULER


def test_the_lowest_rate_binds_first() -> None:
    result = rows(
        {"scheduler:CreateSchedule": 1, "dynamodb:PutItem": 5}, {"dynamodb:PutItem": 1}, SCHEDULER, DDB
    )
    first = binding(result)
    assert first is not None
    assert first.quota is DDB
    assert first.max_grants_per_second == 200
    revoke_first = binding(result, "max_revokes_per_second")
    assert revoke_first is not None
    assert revoke_first.quota is DDB
    assert binding(rows({}, {}, IAM)) is None


def test_lambda_concurrency_is_divided_by_function_seconds_per_grant() -> None:
    (row,) = rows({}, {}, LAMBDA)
    assert row.max_grants_per_second == pytest.approx(2_000)  # 1,000 slots / 0.5 s each
    assert row.max_revokes_per_second == pytest.approx(8_000)
    assert lambda_seconds(calls=12, call_ms=20, cpu_ms=25) == pytest.approx(0.265)


def test_calls_of_several_invocations_add_up_by_operation() -> None:
    total = calls_per([{"iam:GetGroup": 1, "sns:Publish": 1}, Counter({"iam:GetGroup": 1})])
    assert total == Counter({"iam:GetGroup": 2, "sns:Publish": 1})


def test_every_shipped_quota_cites_its_source_and_unpublished_ones_say_why() -> None:
    for quota in QUOTAS_US_EAST_1:
        assert quota.source
        assert quota.operations
        if quota.per_second is None:
            assert quota.note, quota.name
