"""The old design vs SessionGate, from their numbers (no measurement: the inputs are cited quotas).

Old design: each grant is one Automation execution that tags, runs ``aws:sleep`` for the whole
validity, then untags. An account runs 100 Automation executions at once; more queue as Pending,
so a queued request starts (and its access begins) late, and a failed execution never untags.
SessionGate: a grant is a tag plus one EventBridge Scheduler one-time schedule; nothing waits.

    python -m bench.old_design --validity 10 --principals 500
"""

from __future__ import annotations

import argparse
import sys

AUTOMATION_CONCURRENCY = 100  # concurrent Automation executions per account (DESIGN.md, section 2)
SCHEDULES_PER_REGION = 10_000_000  # EventBridge Scheduler default quota (Scheduler user guide, quotas)
SCHEDULER_INVOCATIONS_PER_SECOND = 1_000  # default invocation throttle in primary Regions (same page)
SLOTS_PER_PRINCIPAL = 5  # SessionGate's default SlotCount (IAM allows 50 tags per principal)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validity", type=int, default=10, help="minutes of access per grant")
    parser.add_argument("--principals", type=int, default=500, help="operators in the account")
    args = parser.parse_args(argv)
    v, p = args.validity, args.principals

    old_concurrent = AUTOMATION_CONCURRENCY  # shared with every other automation in the account
    old_per_hour = old_concurrent * 60 // v
    new_concurrent = min(SCHEDULES_PER_REGION, SLOTS_PER_PRINCIPAL * p)
    new_per_hour = min(new_concurrent * 60 // v, SCHEDULER_INVOCATIONS_PER_SECOND * 3600)
    rows = [
        (
            "concurrent grants (account)",
            f"{old_concurrent}",
            f"{new_concurrent} (= {SLOTS_PER_PRINCIPAL} x {p})",
        ),
        (f"grants per hour at {v} min", f"{old_per_hour}", f"{new_per_hour}"),
        ("one principal, at once", "1 (one tag key)", f"{SLOTS_PER_PRINCIPAL} (tag slots)"),
        ("held while access lasts", "1 Automation execution asleep", "0 (a schedule waits, nothing runs)"),
        ("request #101 at peak", "queued Pending: access starts late", "granted at once"),
        ("revocation if the runner fails", "never (tag stays)", "retried, DLQ, reconciler <= 5 min + 90 s"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'':<{width}}{'old runbook design':<38}SessionGate")
    for name, old, new in rows:
        print(f"{name:<{width}}{old:<38}{new}")
    print(
        f"old design: {old_concurrent} concurrent grants per account ({old_per_hour}/hour at {v} min); "
        f"SessionGate: {new_concurrent} for {p} principals, bounded by tag slots, not by a runner"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
