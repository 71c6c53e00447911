"""Capacity against AWS quotas: the grant (and revoke) rate each quota allows, and which binds first.

Calls per operation are measured (``bench.api_calls``: one Change Manager request end to end in the
sandbox, counted with botocore hooks); the quotas are AWS's published defaults, each cited below by its
documentation page title. For each quota: calls of its operations per grant lifecycle (adapter + grant +
revoke) and per revocation, and the maximum sustained rate that allows (quota / calls). A quota AWS does
not publish is listed with "not published" and no rate: it cannot be planned against, only observed
(CloudWatch ``ThrottlingException`` counts). Lambda concurrency is the one row that needs a latency
assumption (``--call-ms``, not measured here: the benchmark has no AWS to time).

    python -m bench.capacity [--call-ms 20] [--cpu-ms 25]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sessiongate.adapters.ledger import LIVE_SHARDS, live_shard


@dataclass(frozen=True)
class Quota:
    name: str
    operations: tuple[str, ...]  # ``service:Operation`` as bench.api_calls counts them
    per_second: float | None  # None: AWS publishes no figure
    source: str  # the AWS documentation page title the figure comes from
    note: str = ""


# Pseudo-operations that are not API calls SessionGate makes but consume a quota once per grant.
SCHEDULE_FIRED = "scheduler:(schedule invocation)"
LIVE_INDEX_WRITE = "dynamodb:(live-by-expiry write)"
# Writes to the live-by-expiry index per grant lifecycle, under one of LIVE_SHARDS partition key values
# (adapters/ledger.py, by CRC-32 of the grant id): the grant's one transaction puts the record with live
# + expires_at (1), revocation moves live off LIVE#<n> (1 there; issue 17: it moves it to USAGE#<n>, the
# usage recording then to DAY#<date>#<n>: 2 writes on USAGE#<n>, 1 on DAY#<date>#<n>, other key values
# with the same spread, so no key value takes more than these 2 per lifecycle).
# A resumed grant's rebind changes activated_at, neither a
# key nor projected (the index projects grant_id only): 0 ("If an update to the table changes the value of
# an indexed key attribute ... two writes are required", DynamoDB Developer Guide, "Using Global
# Secondary Indexes in DynamoDB", GSI.html#GSI.Writes). Each index item is a few dozen bytes: 1 write
# unit each. (The previous release wrote it 4 times: create, slot claim moving expires_at (2), revoke.)
LIVE_INDEX_WRITES_PER_GRANT = 2


def busiest_shard_share(grants: int = 10_000) -> float:
    """The share of ``grants`` grant ids the busiest live-by-expiry key value takes."""
    spread = Counter(live_shard(f"rq-{n:032x}") for n in range(grants))
    return max(spread.values()) / grants


BUSIEST_SHARD_SHARE = busiest_shard_share()

QUOTAS_US_EAST_1: tuple[Quota, ...] = (
    Quota(
        "IAM API request rate (account-wide)",
        ("iam:GetUser", "iam:GetGroup", "iam:TagUser", "iam:UntagUser", "iam:TagRole", "iam:UntagRole"),
        None,
        "IAM and AWS STS quotas; Knowledge Center: How do I resolve API throttling or "
        '"Rate exceeded" errors for IAM and AWS STS',
        "not published: the quotas page lists object counts and sizes only; the Knowledge Center says "
        "IAM calls count toward an account rate limit that cannot be increased. IAM is a global service: "
        "every Region's grants and every other IAM caller in the account share it.",
    ),
    Quota(
        "EventBridge Scheduler CreateSchedule request rate",
        ("scheduler:CreateSchedule",),
        5_000,
        "Quotas for Amazon EventBridge Scheduler (EventBridge Scheduler User Guide)",
        "us-east-1 and the other large Regions (older copies of the page: 1,000); 250 in each other Region; "
        "adjustable",
    ),
    Quota(
        "EventBridge Scheduler DeleteSchedule request rate",
        ("scheduler:DeleteSchedule",),
        1_000,
        "Quotas for Amazon EventBridge Scheduler (EventBridge Scheduler User Guide)",
        "1,000 in the large Regions, 250 elsewhere; SessionGate deletes no schedule on the normal path "
        "(one-time schedules delete themselves after running)",
    ),
    Quota(
        "EventBridge Scheduler GetSchedule request rate",
        ("scheduler:GetSchedule",),
        1_000,
        "Quotas for Amazon EventBridge Scheduler (EventBridge Scheduler User Guide)",
        "not called by SessionGate since the reconciler stopped reading schedules (bench.reconciler_scale)",
    ),
    Quota(
        "EventBridge Scheduler invocations throttle limit",
        (SCHEDULE_FIRED,),
        1_000,
        "Quotas for Amazon EventBridge Scheduler (EventBridge Scheduler User Guide)",
        "each grant's revoke schedule fires once; over the limit, invocations are delayed, not lost",
    ),
    Quota(
        "EventBridge PutEvents throttle limit",
        ("events:PutEvents",),
        10_000,
        "Amazon EventBridge quotas (EventBridge User Guide)",
        "us-east-1 (us-east-2: 2,400; smaller in other Regions); account-wide, all buses",
    ),
    Quota(
        "Lambda concurrent executions",
        ("lambda:(concurrency)",),
        1_000,
        "Lambda quotas (AWS Lambda Developer Guide)",
        "default per Region, adjustable; new accounts start lower. Scaling rate: 1,000 execution "
        "environments every 10 s per function (Lambda scaling behavior)",
    ),
    Quota(
        "DynamoDB per-partition write throughput (live-by-expiry, busiest shard)",
        (LIVE_INDEX_WRITE,),
        round(1_000 / BUSIEST_SHARD_SHARE),
        "Knowledge Center: Why is my on-demand DynamoDB table being throttled? (each partition serves "
        "up to 1,000 write request units/s)",
        f"{LIVE_INDEX_WRITES_PER_GRANT} index writes per grant spread over {LIVE_SHARDS} key values; the "
        f"busiest takes {BUSIEST_SHARD_SHARE:.1%} of 10,000 grant ids, so the index as a whole takes "
        "1,000 / that share writes/s before one value reaches 1,000",
    ),
    Quota(
        "SNS Publish request rate",
        ("sns:Publish",),
        None,
        "Amazon Simple Notification Service endpoints and quotas (AWS General Reference)",
        "per Region, published on that page; the figure could not be read from the stored copy here, so "
        "no rate is computed",
    ),
    Quota(
        "EC2 DescribeInstances request rate",
        ("ec2:DescribeInstances",),
        None,
        "Request throttling for the Amazon EC2 API (Amazon EC2 Developer Guide)",
        "a per-action token bucket per account and Region, shared with every other caller; the "
        "DescribeInstances figure could not be read from the stored copy here",
    ),
    Quota(
        "Systems Manager API request rates",
        (
            "ssm:GetAutomationExecution",
            "ssm:DescribeAutomationExecutions",
            "ssm:DescribeInstanceInformation",
        ),
        None,
        "AWS Systems Manager endpoints and quotas (AWS General Reference)",
        "no figure for these operations found in the pages searched (treated as not published)",
    ),
)


@dataclass(frozen=True)
class Row:
    quota: Quota
    per_grant: int
    per_revoke: int
    max_grants_per_second: float | None
    max_revokes_per_second: float | None


def calls_per(functions: Iterable[Mapping[str, int]]) -> Counter[str]:
    """The calls of several handler invocations, summed by operation."""
    total: Counter[str] = Counter()
    for calls in functions:
        total.update(calls)
    return total


def lambda_seconds(calls: int, call_ms: float, cpu_ms: float) -> float:
    """Seconds one invocation holds a concurrency slot: its AWS calls in sequence plus its own CPU."""
    return (calls * call_ms + cpu_ms) / 1000


def table(
    grant_calls: Mapping[str, int],
    revoke_calls: Mapping[str, int],
    quotas: Iterable[Quota],
    *,
    lambda_seconds_per_grant: float,
    lambda_seconds_per_revoke: float,
) -> list[Row]:
    """Per quota: its calls per grant lifecycle and per revocation, and the rate it allows.

    ``grant_calls`` counts every call of one grant lifecycle (adapter + grant + revoke),
    ``revoke_calls`` those of one revocation alone. The Lambda row divides concurrency by the seconds of
    function time per grant (a rate times a duration is the concurrency it holds).
    """
    rows = []
    for quota in quotas:
        if quota.operations == ("lambda:(concurrency)",):
            per_grant_time, per_revoke_time = lambda_seconds_per_grant, lambda_seconds_per_revoke
            g = quota.per_second / per_grant_time if quota.per_second and per_grant_time else None
            r = quota.per_second / per_revoke_time if quota.per_second and per_revoke_time else None
            rows.append(Row(quota, 0, 0, g, r))
            continue
        per_grant = sum(grant_calls.get(op, 0) for op in quota.operations)
        per_revoke = sum(revoke_calls.get(op, 0) for op in quota.operations)
        rate = quota.per_second
        rows.append(
            Row(
                quota,
                per_grant,
                per_revoke,
                rate / per_grant if rate is not None and per_grant else None,
                rate / per_revoke if rate is not None and per_revoke else None,
            )
        )
    return rows


def binding(rows: Iterable[Row], attr: str = "max_grants_per_second") -> Row | None:
    """The row whose quota allows the lowest rate (the one that binds first); rows without a figure are
    left out."""
    known = [r for r in rows if getattr(r, attr) is not None]
    return min(known, key=lambda r: float(getattr(r, attr))) if known else None


def measured() -> tuple[Counter[str], Counter[str], dict[str, int]]:
    """Calls per grant lifecycle and per revocation from bench.api_calls, plus calls per handler."""
    from bench.api_calls import measure

    per = measure()
    lifecycle = calls_per(
        per[f] for f in ("AdaptChangeRequestFunction", "GrantAccessFunction", "RevokeAccessFunction")
    )
    lifecycle[SCHEDULE_FIRED] += 1
    lifecycle[LIVE_INDEX_WRITE] += LIVE_INDEX_WRITES_PER_GRANT
    revoke = Counter(per["RevokeAccessFunction"])
    revoke[SCHEDULE_FIRED] += 1
    revoke[LIVE_INDEX_WRITE] += 1
    handlers = {f: sum(per[f].values()) for f in per if "(again)" not in f}
    return lifecycle, revoke, handlers


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--call-ms", type=float, default=20.0, help="assumed AWS call latency from Lambda (not measured)"
    )
    parser.add_argument(
        "--cpu-ms",
        type=float,
        default=25.0,
        help="warm CPU per invocation (bench.cpu measures ~5-25 ms with botocore's parsing)",
    )
    args = parser.parse_args(argv)
    lifecycle, revoke, handlers = measured()
    adapt, grant, rev = (
        handlers["AdaptChangeRequestFunction"],
        handlers["GrantAccessFunction"],
        handlers["RevokeAccessFunction"],
    )
    seconds_grant = sum(lambda_seconds(n, args.call_ms, args.cpu_ms) for n in (adapt, grant, rev))
    seconds_revoke = lambda_seconds(rev, args.call_ms, args.cpu_ms)
    rows = table(
        lifecycle,
        revoke,
        QUOTAS_US_EAST_1,
        lambda_seconds_per_grant=seconds_grant,
        lambda_seconds_per_revoke=seconds_revoke,
    )
    print(
        f"calls per grant lifecycle (adapter {adapt} + grant {grant} + revoke {rev}) = "
        f"{adapt + grant + rev}; us-east-1 default quotas"
    )
    print(
        f"{'quota':<52}{'quota/s':>9}{'per grant':>10}{'per revoke':>11}{'max grants':>12}{'max revokes':>12}"
    )
    for row in rows:
        q = row.quota
        limit = "?" if q.per_second is None else f"{q.per_second:,.0f}"
        per_g = "-" if q.operations == ("lambda:(concurrency)",) else str(row.per_grant)
        per_r = "-" if q.operations == ("lambda:(concurrency)",) else str(row.per_revoke)
        print(
            f"{q.name:<52}{limit:>9}{per_g:>10}{per_r:>11}{_rate(row.max_grants_per_second):>12}"
            f"{_rate(row.max_revokes_per_second):>12}"
        )
    print(
        "(?: no figure: IAM's and these SSM operations' rates are not published; SNS's and EC2's are "
        "published per Region but were not read for this table; sources below. "
        f"Lambda: {seconds_grant * 1000:.0f} ms of function time per grant lifecycle "
        f"at an assumed {args.call_ms:.0f} ms per AWS call + {args.cpu_ms:.0f} ms CPU per invocation.)"
    )
    for q in QUOTAS_US_EAST_1:
        print(f"  {q.name}: {q.source}" + (f"; {q.note}" if q.note else ""))
    first, first_revoke = binding(rows), binding(rows, "max_revokes_per_second")
    iam = next(r for r in rows if r.quota.name.startswith("IAM"))
    if first is None or first_revoke is None:
        print("capacity: no published quota applies")
        return 1
    print(
        f"capacity: the first published quota to bind is {first.quota.name} at "
        f"{_rate(first.max_grants_per_second)} grant lifecycles ({first_revoke.quota.name} at "
        f"{_rate(first_revoke.max_revokes_per_second)} revocations); IAM's rate is not published and "
        f"each grant lifecycle makes {iam.per_grant} IAM calls ({lifecycle['iam:TagUser']} tag, "
        f"{lifecycle['iam:UntagUser']} untag)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
