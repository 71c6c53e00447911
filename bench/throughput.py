"""Soak (a correctness run, not a speed test): N requests granted and revoked through the sandbox (the real
handlers on moto) on its virtual clock.

Every request goes the whole way: a change request created and approved in the SSM fake, the Change
Manager event routed by the template's rule to the adapter, AccessApproved routed to the grant handler,
the revoke schedule fired by the virtual Scheduler. A second run loses every pending schedule each
virtual minute, so the reconciler alone revokes. Figures come from AWS state: revocation lag is
``revoked_at - expires_at`` from the ledger, leaked tags are read from IAM at the end. Requests are
split over ``--workers`` processes (one moto world each).

Invariants checked: no leaked tag at the end, every grant revoked (none left ACTIVE), no failed
invocation, the same number of AWS calls for every grant and for every revocation (a call count that grew
with the ledger would show here), revocation lag bounded. The elapsed time is printed for information
only: it is moto's speed (SessionGate's own code is a few percent of the CPU; ``bench.cpu`` measures it),
not a rate AWS would sustain (``bench.capacity`` derives that from AWS's quotas).

    python -m bench.throughput --requests 10000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
import warnings
from datetime import timedelta
from typing import Any

MINUTE = timedelta(minutes=1)


def shard(
    requests: int, per_minute: int, validity: int, drop_schedules: bool, seed: int, world_size: int
) -> dict[str, Any]:
    """One process: grant and revoke ``requests`` requests, in fresh worlds of ``world_size`` each.

    moto's TransactWriteItems deep-copies the whole table on every call (its rollback), so one world's
    cost grows with the square of its ledger; fresh worlds keep the emulator, not SessionGate, linear.
    """
    parts = []
    done = 0
    while done < requests:
        n = min(world_size, requests - done)
        parts.append(_world(n, per_minute, validity, drop_schedules, seed + done))
        done += n
    return {
        "requests": requests,
        "granted": sum(p["granted"] for p in parts),
        "revoked": sum(p["revoked"] for p in parts),
        "denied": sum(p["denied"] for p in parts),
        "still_active": sum(p["still_active"] for p in parts),
        "wall_seconds": sum(p["wall_seconds"] for p in parts),
        "calls_per_grant": sorted({n for p in parts for n in p["calls_per_grant"]}),
        "calls_per_revoke": sorted({n for p in parts for n in p["calls_per_revoke"]}),
        "lags": [lag for p in parts for lag in p["lags"]],
        "leaked_tags": sum(p["leaked_tags"] for p in parts),
        "failed_invocations": sum(p["failed_invocations"] for p in parts),
        "peak_rss_mib": max(p["peak_rss_mib"] for p in parts),
    }


def _world(requests: int, per_minute: int, validity: int, drop_schedules: bool, seed: int) -> dict[str, Any]:
    """One moto world: grant and revoke ``requests`` requests."""
    warnings.filterwarnings("ignore")
    from sandbox.world import ACCOUNT, REGION, World
    from sessiongate.clock import parse_iso
    from sessiongate.core.slots import INSTANCE_KEY

    world = World()
    try:
        iam, ec2, ssm = world.client("iam"), world.client("ec2"), world.ssm
        policy = world.stack.resources["AllowStartSsmSessionBasedOnIamTags"].arn
        operators = max(1, per_minute * validity // 3)  # at most ~3 live grants per operator
        for i in range(operators):
            iam.create_user(UserName=f"op{i}")
            iam.attach_user_policy(UserName=f"op{i}", PolicyArn=policy)
        approver = iam.create_user(UserName="approver")["User"]["Arn"]
        iam.create_group(GroupName="SessionGateApprovers")  # the change template's approver group
        iam.add_user_to_group(GroupName="SessionGateApprovers", UserName="approver")
        reservation = ec2.run_instances(ImageId="ami-12c6146b", MinCount=20, MaxCount=20)
        instances = [i["InstanceId"] for i in reservation["Instances"]]
        ssm.managed.update(instances)

        started = time.perf_counter()
        sent = 0
        while sent < requests:
            for _ in range(min(per_minute, requests - sent)):
                op = f"op{(sent + seed) % operators}"
                execution = ssm.start_change_request_execution(
                    requester_arn=f"arn:aws:iam::{ACCOUNT}:user/{op}",
                    now=world.clock.now(),
                    DocumentName="AllowSsmSessionStartTemplate",
                    Runbooks=[
                        {
                            "DocumentName": "AllowSsmSessionStartRunbook",
                            "Parameters": {
                                "InstanceId": [instances[sent % len(instances)]],
                                "PrincipalType": ["User"],
                                "PrincipalName": [op],
                                "ValidityMinutes": [str(validity)],
                            },
                        }
                    ],
                )["AutomationExecutionId"]
                ssm.send_automation_signal(
                    signer_arn=approver,
                    now=world.clock.now(),
                    AutomationExecutionId=execution,
                    SignalType="Approve",
                )
                world.put_event(
                    ssm.status_event(execution, account=ACCOUNT, region=REGION, now=world.clock.now())
                )
                sent += 1
            _minute(world, drop_schedules)
        # Every validity ends, plus two reconciler periods.
        for _ in range(validity + 11):
            _minute(world, drop_schedules)
        wall = time.perf_counter() - started

        grants = _grants(world)
        lags = [
            (parse_iso(g["revoked_at"]) - parse_iso(g["expires_at"])).total_seconds()
            for g in grants
            if g["status"] == "REVOKED"
        ]
        leaked = sum(
            1
            for i in range(operators)
            for t in iam.list_user_tags(UserName=f"op{i}")["Tags"]
            if t["Key"].startswith(INSTANCE_KEY)
        )
        return {
            "requests": requests,
            "granted": sum(1 for g in grants if g["status"] in ("ACTIVE", "REVOKED")),
            "revoked": sum(1 for g in grants if g["status"] == "REVOKED"),
            "calls_per_grant": _calls(world, "GrantAccessFunction", "granted"),
            "calls_per_revoke": _calls(world, "RevokeAccessFunction", "revoked"),
            "denied": sum(1 for g in grants if g["status"] == "DENIED"),
            "still_active": sum(1 for g in grants if g["status"] == "ACTIVE"),
            "wall_seconds": wall,
            "lags": lags,
            "leaked_tags": leaked,
            "failed_invocations": sum(1 for i in world.invocations if i.error),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        world.close()


def _calls(world: Any, function: str, outcome: str) -> list[int]:
    """The distinct AWS call counts of ``function``'s invocations that ended in ``outcome``."""
    return sorted(
        {
            sum(i.calls.values())
            for i in world.invocations
            if i.function == function and isinstance(i.result, dict) and i.result.get("result") == outcome
        }
    )


def _minute(world: Any, drop_schedules: bool) -> None:
    world.settle()
    if drop_schedules:
        scheduler = world.client("scheduler")
        group = world.stack.resources["ScheduleGroup"].physical_id
        for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group):
            for schedule in page["Schedules"]:
                scheduler.delete_schedule(Name=schedule["Name"], GroupName=group)
    world.advance(MINUTE, step=MINUTE)


def _grants(world: Any) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    table = world.stack.resources["GrantsTable"].physical_id
    out = []
    for page in world.client("dynamodb").get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            plain = {k: des.deserialize(v) for k, v in item.items()}
            if plain.get("kind") == "grant":
                out.append(plain)
    return out


def run(
    requests: int, workers: int, per_minute: int, validity: int, drop_schedules: bool, world_size: int
) -> dict[str, Any]:
    sizes = [requests // workers + (1 if i < requests % workers else 0) for i in range(workers)]
    rate = max(1, per_minute // workers)
    jobs = [(n, rate, validity, drop_schedules, i, world_size) for i, n in enumerate(sizes) if n]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        parts = pool.starmap(shard, jobs)
    wall = time.perf_counter() - started
    lags = sorted(lag for p in parts for lag in p["lags"])
    granted = sum(p["granted"] for p in parts)
    return {
        "mode": "schedules lost" if drop_schedules else "scheduler",
        "requests": requests,
        "granted": granted,
        "revoked": sum(p["revoked"] for p in parts),
        "denied": sum(p["denied"] for p in parts),
        "still_active": sum(p["still_active"] for p in parts),
        "calls_per_grant": sorted({n for p in parts for n in p["calls_per_grant"]}),
        "calls_per_revoke": sorted({n for p in parts for n in p["calls_per_revoke"]}),
        "moto_wall_seconds": round(wall, 1),
        "lag_p50_seconds": _pct(lags, 50),
        "lag_p99_seconds": _pct(lags, 99),
        "lag_max_seconds": lags[-1] if lags else None,
        "leaked_tags": sum(p["leaked_tags"] for p in parts),
        "failed_invocations": sum(p["failed_invocations"] for p in parts),
        "peak_rss_mib_per_worker": round(max(p["peak_rss_mib"] for p in parts), 1),
    }


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="processes, one moto world each")
    parser.add_argument(
        "--per-minute", type=int, default=100, help="arrivals per virtual minute, all workers"
    )
    parser.add_argument("--validity", type=int, default=10, help="minutes of access per grant")
    parser.add_argument("--world-size", type=int, default=100, help="requests per fresh moto world")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    common = (args.workers, args.per_minute, args.validity)
    rows = [
        run(args.requests, *common, drop_schedules=False, world_size=args.world_size),
        run(max(1, args.requests // 10), *common, drop_schedules=True, world_size=args.world_size),
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for key in rows[0]:
            print(f"{key:<26}" + "".join(f"{r[key]!s:>18}" for r in rows))
    sched, lost = rows
    ok = all(
        r["leaked_tags"] == 0
        and r["failed_invocations"] == 0
        and r["still_active"] == 0
        and r["revoked"] == r["granted"]
        and len(r["calls_per_grant"]) <= 1
        and len(r["calls_per_revoke"]) <= 1
        for r in rows
    )
    ok = ok and (sched["lag_p99_seconds"] or 0) <= 60 and (lost["lag_max_seconds"] or 0) <= 5 * 60 + 90
    print(
        f"soak: {sched['granted']} granted, {sched['revoked']} revoked, {sched['still_active']} left active; "
        f"AWS calls per grant {sched['calls_per_grant']}, per revocation {sched['calls_per_revoke']} "
        f"(one value each: constant); revocation lag p50/p99 {sched['lag_p50_seconds']}/"
        f"{sched['lag_p99_seconds']} s with Scheduler, p99/max {lost['lag_p99_seconds']}/"
        f"{lost['lag_max_seconds']} s with every schedule lost ({lost['revoked']}/{lost['granted']} "
        f"revoked by the reconciler); leaked tags {sched['leaked_tags'] + lost['leaked_tags']}; "
        f"failed invocations {sched['failed_invocations'] + lost['failed_invocations']} "
        f"-> {'OK' if ok else 'INVARIANT BROKEN'} "
        f"(moto took {sched['moto_wall_seconds'] + lost['moto_wall_seconds']:.0f} s: the emulator's speed, "
        "not SessionGate's or AWS's)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
