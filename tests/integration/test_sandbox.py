"""The offline sandbox: scenarios, the report's sources, routing, schedules and failure handling."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox import cli
from sandbox.scenario import Runner, ScenarioError, load, parse_duration, run_file
from sandbox.world import World, schedule_due
from tests.integration.test_called_actions_allowed import PLAYED

# The scenarios test_called_actions_allowed plays (and checks they pass, with every call's IAM) are not
# played twice (CI time).
SCENARIOS = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml") if p.name not in PLAYED
)


def test_every_shipped_scenario_is_played_by_one_test() -> None:
    """A scenario played by neither test would go unchecked."""
    every = {p.name for p in (Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml")}
    assert set(PLAYED) <= every
    assert {p.name for p in SCENARIOS} | set(PLAYED) == every


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_pass(path: Path) -> None:
    report = run_file(path)
    failed = [c.as_dict() for c in report.checks if not c.passed]
    assert report.passed, (failed, report.failed_invocations)
    assert report.checks


def test_demo_prints_a_timeline_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "GRANTED alice -> web until 2026-11-24T09:10:00Z" in out
    assert "REVOKED alice -> web (expired)" in out
    assert "DENIED mallory -> web: self_approval" in out
    assert out.strip().splitlines()[-1].startswith("== PASSED")


def _scenario(steps: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "principals": {
            "alice": {"type": "user"},
            "bob": {"type": "user", "groups": ["SessionGateApprovers"]},
        },
        "instances": {"web": {}},
        "steps": steps,
        **extra,
    }


def test_report_states_iam_tags_not_the_engines_bookkeeping() -> None:
    report = Runner(
        _scenario([{"tamper": {"principal": "alice", "tags": {"SecurityAllowSessionInstance3": "web"}}}])
    ).run()
    # No grant exists, yet the tag is reported: it is read back from IAM.
    assert list(report.principals["alice"]) == ["SecurityAllowSessionInstance3"]
    assert report.grants == []


def test_session_check_evaluates_the_policy_against_current_tags() -> None:
    report = Runner(
        _scenario(
            [
                {"session": {"principal": "alice", "instance": "web", "expect": "denied"}},
                {"tamper": {"principal": "alice", "tags": {"SecurityAllowSessionInstance4": "web"}}},
                {"session": {"principal": "alice", "instance": "web", "expect": "allowed"}},
                {
                    "tamper": {
                        "principal": "alice",
                        "tags": {"SecurityAllowSessionInstance4": "i-0123456789abcdef0"},
                    }
                },
                {"session": {"principal": "alice", "instance": "web", "expect": "denied"}},
            ]
        )
    ).run()
    assert [c.actual for c in report.checks] == ["denied", "allowed", "denied"]


def test_a_wrong_expectation_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(
        json.dumps(_scenario([{"session": {"principal": "alice", "instance": "web", "expect": "allowed"}}]))
    )
    assert cli.main(["run", str(path)]) == 1
    assert "FAIL session alice -> web" in capsys.readouterr().out


def test_json_report_lists_events_tags_grants_schedules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "grant.yaml"
    steps = [
        {"request": {"id": "r1", "by": "alice", "instance": "web", "minutes": 5}},
        {"approve": {"request": "r1", "by": "bob"}},
        {"grant": {"request": "r1", "expect": "ACTIVE"}},
    ]
    path.write_text(json.dumps(_scenario(steps)))
    assert cli.main(["run", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert [e["event_type"] for e in report["events"]] == ["AccessGranted"]
    [grant] = report["active_grants"]
    assert grant["slot"] == 1
    assert report["principals"]["alice"] == {"SecurityAllowSessionInstance": grant["instance_id"]}
    [schedule] = report["schedules"]
    assert schedule["expression"] == "at(2026-11-24T09:05:00)"
    assert schedule["action_after_completion"] == "DELETE"
    assert report["aws_calls"]["iam:TagUser"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("steps: [{fly: {}}]", "unknown step 'fly'"),
        (
            "steps: [{session: {principal: nobody, instance: web, expect: denied}}]",
            "unknown principal 'nobody'",
        ),
        ("steps: [{advance: soon}]", "must look like 90s"),
        ("steps: [{approve: {request: r9, by: alice}}, {schedules: {expect: 0}}]", "unknown request 'r9'"),
        ("steps: 5", "a scenario is a mapping"),
        ("steps: [", "is not valid YAML"),
        (
            "parameters: {NoSuchParameter: 1}\nsteps: [{schedules: {expect: 0}}]",
            "template has no parameter 'NoSuchParameter'",
        ),
        (
            "steps: [{request: {id: r1, by: alice, instance: web, via: fax}}, {schedules: {expect: 0}}]",
            "via must be change_manager or api",
        ),
        (
            "steps: [{request: {id: r1, by: alice, instance: web}},"
            " {extend: {request: r1, id: r2, by: alice}}, {schedules: {expect: 0}}]",
            "extend works on requests made with via: api",
        ),
        ("approval_policy: [bob]\nsteps: [{schedules: {expect: 0}}]", "approval_policy must be a mapping"),
        ("steps: [{tags: {principal: nobody}}]", "unknown principal 'nobody'"),
    ],
)
def test_scenario_mistakes_are_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("principals: {alice: {}}\ninstances: {web: {}}\n" + content)
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("stpes: []\nsteps: [{schedules: {expect: 0}}]", "top level: unknown key 'stpes'"),
        (
            "principals: {alice: {type: user, tgas: {a: b}}}\nsteps: [{schedules: {expect: 0}}]",
            "principal alice: unknown key 'tgas'",
        ),
        ("instances: {web: {manged: false}}\nsteps: [{schedules: {expect: 0}}]", "instance web: unknown key"),
        (
            "steps: [{schedules: {expect: 0}}, {approve: {request: r1, by: bob, coment: ok}}]",
            "step 2 (approve): unknown field 'coment'",
        ),
        ("steps: [{schedules: {expect: 0, at: 5m}}]", "step 1 (schedules): unknown field 'at'"),
        ("steps: [{reconcile: {now: true}}, {schedules: {expect: 0}}]", "step 1 (reconcile): unknown field"),
        ("steps: [{advance: 5m}]", "the scenario checks nothing"),
        ("steps: []", "the scenario checks nothing"),
    ],
)
def test_unknown_keys_and_checkless_files_are_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(content)
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(path) in err


def test_every_step_kind_in_the_table_has_a_handler_and_approve_takes_ssm_lag() -> None:
    from sandbox.scenario.insider import ACTIONS
    from sandbox.scenario.runner import STEPS
    from sandbox.scenario.schema import INSIDER_ACTIONS, STEP_FIELDS

    assert list(STEPS) == list(STEP_FIELDS)
    assert list(ACTIONS) == list(INSIDER_ACTIONS)
    approve = STEP_FIELDS["approve"]
    assert approve is not None
    assert "ssm_lag" in approve


def test_connect_opens_a_live_session_only_when_the_policy_allows_it() -> None:
    live = {"live_sessions": {"principal": "alice", "instance": "web", "expect": 1}}
    report = Runner(
        _scenario(
            [
                {"connect": {"principal": "alice", "instance": "web"}},  # no tag: refused
                {"tamper": {"principal": "alice", "tags": {"SecurityAllowSessionInstance4": "web"}}},
                {"connect": {"principal": "alice", "instance": "web"}},
                live,
                {"live_sessions": {"principal": "bob", "instance": "web", "expect": 0}},
            ]
        )
    ).run()
    assert [(c.what, c.actual, c.passed) for c in report.checks] == [
        ("connect alice -> web", "denied", False),
        ("connect alice -> web", "connected", True),
        ("live sessions of alice on web", 1, True),
        ("live sessions of bob on web", 0, True),
    ]
    assert not report.passed


def test_missing_scenario_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "no/such/file.yaml"]) == 2
    assert "cannot read scenario" in capsys.readouterr().err


def test_schedule_due_honours_the_time_zone() -> None:
    due = schedule_due(
        {"ScheduleExpression": "at(2026-11-24T10:00:00)", "ScheduleExpressionTimezone": "Europe/Berlin"}
    )
    assert due == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert schedule_due({"ScheduleExpression": "rate(5 minutes)"}) is None


def test_parse_duration() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2h") == timedelta(hours=2)
    with pytest.raises(ScenarioError):
        parse_duration("5 minutes")


def test_events_are_routed_only_when_the_template_pattern_matches() -> None:
    with World() as world:
        foreign = {
            "Source": "aws.ssm",
            "DetailType": "Change Request Status Update",
            "Detail": json.dumps({"ops-item-status": "Approved", "change-template-document-name": "NotOurs"}),
        }
        world.put_event(foreign)
        world.settle()
        assert world.invocations == []


def test_streams_are_read_again_only_after_a_table_write() -> None:
    """The stream pollers skip reading when no DynamoDB call that may add a record was made since
    their last read (the read would find nothing): the sandbox's calls, not its outcome."""
    with World() as world:
        reads: list[str] = []
        for poller in world._pollers:
            poller.reader.meta.events.register(
                "before-call.dynamodbstreams.*",
                lambda model, **_: reads.append(model.name),
                unique_id="reads",
            )
        ddb = world.client("dynamodb")
        world.drain_streams()
        first = len(reads)
        assert first > 0
        ddb.list_tables()  # a read adds no record
        world.drain_streams()
        assert len(reads) == first
        table = ddb.list_tables()["TableNames"][0]
        keys = ddb.describe_table(TableName=table)["Table"]["KeySchema"]
        ddb.put_item(TableName=table, Item={k["AttributeName"]: {"S": "probe"} for k in keys})
        world.drain_streams()
        assert len(reads) > first


def test_a_handler_that_keeps_failing_lands_in_the_on_failure_queue() -> None:
    scenario = _scenario(
        [
            {"request": {"id": "r1", "by": "alice", "instance": "web"}},
            {"approve": {"request": "r1", "by": "bob"}},
        ]
    )
    runner = Runner(scenario)
    original = World.__post_init__

    def with_faults(self: World) -> None:
        original(self)
        self.faults.add("iam:TagUser", "Throttling", times=100)  # beyond botocore's retries

    World.__post_init__ = with_faults  # type: ignore[method-assign]
    try:
        report = runner.run()
    finally:
        World.__post_init__ = original  # type: ignore[method-assign]
    assert not report.passed
    [failure] = report.failed_invocations
    assert failure["function"] == "GrantAccessFunction"
    assert "(Throttling)" in failure["error"]
    assert "reached max retries" in failure["error"]
    assert report.principals["alice"] == {}


def test_fake_ssm_refuses_requests_botocore_would_refuse() -> None:
    with World() as world, pytest.raises(AssertionError, match="Runbooks"):
        world.ssm.start_change_request_execution(
            requester_arn="arn:aws:iam::123456789012:user/alice",
            now=world.clock.now(),
            DocumentName="AllowSsmSessionStartTemplate",
        )


def test_scenario_loader_names_scenarios_after_their_file(tmp_path: Path) -> None:
    path = tmp_path / "named.yaml"
    path.write_text("steps: [{schedules: {expect: 0}}]")
    assert load(path)["name"] == "named"


def test_a_leak_the_reconciler_cannot_see_is_reported_as_an_invariant_violation() -> None:
    scenario = _scenario(
        [
            {
                "tamper": {
                    "principal": "eve",
                    "tags": {"SecurityAllowSessionInstance": "web"},
                    "recorded": False,
                }
            },
            {"advance": "12m"},
        ]
    )
    # CloudTrail's event was lost: only the daily sweep would see the tag, so it stays for now.
    scenario["principals"]["eve"] = {"type": "user", "operator": False}
    report = Runner(scenario).run()
    assert not report.passed
    assert [v["invariant"] for v in report.invariant_violations] == ["leaked_tag"]
    assert report.principals["eve"] == {
        "SecurityAllowSessionInstance": report.principals["eve"]["SecurityAllowSessionInstance"]
    }


def test_fault_injections_are_reported_with_what_they_did() -> None:
    path = Path(__file__).resolve().parents[2] / "scenarios" / "faults-and-duplicates.yaml"
    report = run_file(path)
    assert report.passed
    injected = {f["operation"]: f["injected"] for f in report.faults}
    assert injected["iam:TagUser"] == 2
    assert injected["dynamodb:TransactWriteItems"] == 2
    assert injected["sns:Publish"] == 20  # the outage failed publishes...
    types = [e["event_type"] for e in report.events]
    # ...which the stream consumer retried: every notification arrived, once.
    assert (types.count("AccessGranted"), types.count("AccessRevoked")) == (2, 2)
    assert report.invariant_violations == []


def test_native_requests_go_through_the_request_api_and_the_approval_policy_parameter() -> None:
    # No approval_policy in the scenario: the stack's default policy, built from NativeApproverArns.
    bob = "arn:aws:iam::123456789012:user/bob"
    steps = [
        {"request": {"via": "api", "id": "r1", "by": "alice", "instance": "web", "minutes": 5}},
        {"approve": {"request": "r1", "by": "alice"}},  # self-approval: refused by the API
        {"approve": {"request": "r1", "by": "bob"}},
    ]
    report = Runner(_scenario(steps, parameters={"NativeApproverArns": bob})).run()
    [refused] = report.checks
    assert (refused.expected, refused.actual, refused.passed) == ("success", "self_approval", False)
    assert not report.passed  # an API refusal the scenario did not expect fails the run
    [grant] = report.grants
    assert grant["grant_id"].startswith("rq-")
    assert report.principals["alice"] == {"SecurityAllowSessionInstance": grant["instance_id"]}
    types = [e["event_type"] for e in report.events]
    # The first write records the policy in effect (PolicyChanged), then the request's lifecycle.
    assert types == ["PolicyChanged", "AccessRequested", "AccessApproved", "AccessGranted"]


def test_without_approvers_configured_nobody_can_approve_a_native_request() -> None:
    steps = [
        {"request": {"via": "api", "id": "r1", "by": "alice", "instance": "web"}},
        {"approve": {"request": "r1", "by": "bob", "expect_error": "not_an_approver"}},
        {"status": {"request": "r1", "expect": "PENDING"}},
        {"tags": {"principal": "alice", "expect": {}}},
    ]
    report = Runner(_scenario(steps)).run()
    assert report.passed, [c.as_dict() for c in report.checks]


def test_an_sns_outage_costs_no_grant_and_no_revocation_a_retry_and_loses_no_notification() -> None:
    """Each grant and revocation succeeds on its first attempt while SNS fails every publish; the
    notifications, published from the tables' streams, arrive once each when SNS is back."""
    steps = [
        {"fault": {"operation": "sns:Publish", "code": "InternalError", "times": 30}},
        {"request": {"id": "r1", "by": "alice", "instance": "web", "minutes": 5}},
        {"approve": {"request": "r1", "by": "bob"}},
        {"advance": "6m"},
        {"grant": {"request": "r1", "expect": "REVOKED"}},
        {"tags": {"principal": "alice", "expect": {}}},
    ]
    runner = Runner(_scenario(steps))
    report = runner.run()
    assert report.passed, [c.as_dict() for c in report.checks]
    assert [f["injected"] for f in report.faults] == [30]  # every publish failed for a while...
    lifecycle = [e["event_type"] for e in report.events if e["event_type"].startswith("Access")]
    assert lifecycle == ["AccessGranted", "AccessRevoked"]  # ...none lost, none twice
    attempts = [
        (i.function, i.error, (i.result or {}).get("result"))
        for i in runner.world.invocations
        if i.function in ("GrantAccessFunction", "RevokeAccessFunction")
    ]
    # ...yet one attempt each did its work (a raised notification failure would show as a retry).
    assert attempts == [("GrantAccessFunction", None, "granted"), ("RevokeAccessFunction", None, "revoked")]


def test_notifications_still_failing_after_the_stream_retries_reach_the_failure_queue() -> None:
    """An outage longer than the event source mapping's retries: the record is reported to the
    PublishFailuresQueue (alarmed) and the run says so; the grant is untouched."""
    steps = [
        {"fault": {"operation": "sns:Publish", "code": "InternalError", "times": 1000}},
        {"request": {"id": "r1", "by": "alice", "instance": "web", "minutes": 30}},
        {"approve": {"request": "r1", "by": "bob"}},
        {"advance": "10m"},
        {"grant": {"request": "r1", "expect": "ACTIVE"}},
    ]
    runner = Runner({**_scenario(steps), "expect_failed_invocations": True})
    report = runner.run()
    assert report.passed, [c.as_dict() for c in report.checks]
    assert [e for e in report.events if e["event_type"].startswith("Access")] == []
    assert [(f["function"], f["error"]) for f in report.failed_invocations] == [
        ("PublishEventsFunction", "record discarded after retries")
    ]


def test_a_tag_made_again_after_the_reconciler_removed_it_gets_a_new_period() -> None:
    """The leak clock of a removed tag restarts when someone tags again (no false leaked_tag)."""
    tamper = {"tamper": {"principal": "alice", "tags": {"SecurityAllowSessionInstance2": "web"}}}
    steps = [tamper, {"advance": "5m"}, tamper, {"advance": "4m"}]
    report = Runner(_scenario(steps)).run()
    assert report.invariant_violations == []
    # ...and the second tag is removed by the next run all the same.
    late = Runner(
        _scenario([*steps, {"advance": "2m"}, {"tags": {"principal": "alice", "expect": {}}}])
    ).run()
    assert late.passed, [c.as_dict() for c in late.checks]
