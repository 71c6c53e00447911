"""Property-based: random interleavings of grants, time, lost schedules, duplicate deliveries, early
revocations, reconciler runs, transient AWS faults (IAM conflicts and throttling, DynamoDB throttling,
an SNS outage) and hand-made slot tags, played on the sandbox. After every step the runner checks:
- a live (ACTIVE, unexpired) grant's tag is on its principal (no revocation removed another's tag);
- no slot tag outlives one reconciler period without a live grant explaining it;
- no grant stays ACTIVE longer than one reconciler period past its expiry.
At the end every pending schedule is lost; once every validity and one more reconciler period have passed,
no tag is left.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.scenario import Runner

OPERATORS = ["alice", "carol"]
INSTANCES = ["web", "db", "cache"]
# Transient faults botocore retries (at most 2 in a row: its standard mode makes 3 attempts), and an
# SNS outage, which must never block anything.
FAULTS = [
    ("iam:TagUser", "ConcurrentModification", 2),
    ("iam:UntagUser", "Throttling", 2),
    ("dynamodb:TransactWriteItems", "ThrottlingException", 2),
    ("sns:Publish", "InternalError", 30),
]

operation = st.one_of(
    st.tuples(st.just("grant"), st.sampled_from(OPERATORS), st.sampled_from(INSTANCES), st.integers(1, 20)),
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("drop"), st.integers(0, 7)),
    st.tuples(st.just("dup_approval"), st.integers(0, 7)),
    st.tuples(st.just("dup_revoke"), st.integers(0, 7)),
    st.tuples(st.just("early_revoke"), st.integers(0, 7)),
    st.tuples(st.just("reconcile")),
    st.tuples(st.just("drop_all")),
    st.tuples(st.just("fault"), st.sampled_from(FAULTS)),
    # eve holds the operator policy but is never granted anything: any slot tag on her is drift.
    st.tuples(st.just("tamper"), st.integers(1, 5), st.sampled_from(INSTANCES)),
)


def _steps(ops: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    requests: list[tuple[str, str]] = []
    for op in ops:
        kind = op[0]
        if kind == "grant":
            rid = f"r{len(requests)}"
            steps.append({"request": {"id": rid, "by": op[1], "instance": op[2], "minutes": op[3]}})
            steps.append({"approve": {"request": rid, "by": "bob"}})
            requests.append((rid, op[1]))
        elif kind == "advance":
            steps.append({"advance": f"{op[1]}m"})
        elif kind == "reconcile":
            steps.append({"reconcile": {}})
        elif kind == "drop_all":
            steps.append({"drop_schedule": {"request": "all"}})
        elif kind == "fault":
            operation, code, times = op[1]
            steps.append({"fault": {"operation": operation, "code": code, "times": times}})
        elif kind == "tamper":
            key = "SecurityAllowSessionInstance" + ("" if op[1] == 1 else str(op[1]))
            steps.append({"tamper": {"principal": "eve", "tags": {key: op[2]}}})
        elif requests:
            rid, owner = requests[op[1] % len(requests)]
            if kind == "drop":
                steps.append({"drop_schedule": {"request": rid}})
            elif kind == "dup_approval":
                steps.append({"redeliver": {"request": rid}})
            elif kind == "dup_revoke":
                steps.append({"redeliver": {"request": rid, "what": "revoke"}})
            else:
                steps.append({"revoke": {"request": rid, "by": owner}})
    # Scheduler loses everything still pending: the reconciler alone must clean up, within a period
    # of each expiry (checked after every step), and leave nothing behind.
    steps.append({"drop_schedule": {"request": "all"}})
    steps.append({"advance": "30m"})
    for name in [*OPERATORS, "eve"]:
        steps.append({"tags": {"principal": name, "expect": {}}})
    return steps


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=14))
def test_invariants_hold_under_any_interleaving(ops: list[tuple[Any, ...]]) -> None:
    scenario = {
        "name": "property",
        "principals": {"alice": {}, "carol": {}, "bob": {"groups": ["SessionGateApprovers"]}, "eve": {}},
        "instances": {name: {} for name in INSTANCES},
        "steps": _steps(ops),
    }
    report = Runner(scenario).run()
    assert report.invariant_violations == [], report.invariant_violations
    assert report.failed_invocations == [], report.failed_invocations
    assert all(c.passed for c in report.checks), [c.as_dict() for c in report.checks if not c.passed]
    assert report.grants == []
