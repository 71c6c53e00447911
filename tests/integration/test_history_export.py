"""The history export end to end on the sandbox (moto S3 and DynamoDB Streams, the template's event
source mappings): stream -> function -> one object per transition, valid against the published schema;
an S3 outage longer than the retries loses nothing (pointers on the failure queue, then the backfill
rebuilds the same keys); and the template's bucket, Glue table and auditor policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sandbox.scenario.runner import Runner
from sandbox.world import World
from sessiongate.history import PREFIX, parse_lines
from tests.support.template import resource

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/audit/history-record.v1.schema.json").read_text()
)
DAY = "2026-01-05"


class _KeptWorld(World):
    """A world the runner does not close: its moto state stays readable after the run."""

    def __exit__(self, *exc: object) -> None:
        pass


class _Runner(Runner):
    def _world(self) -> World:
        world = super()._world()
        world.__class__ = _KeptWorld
        return world


def _scenario(steps: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "history",
        "start": f"{DAY}T09:00:00Z",
        "principals": {
            "alice": {"type": "user"},
            "bob": {"type": "user", "groups": ["SessionGateApprovers"]},
        },
        "instances": {"web": {}},
        "steps": steps,
        **extra,
    }


STEPS = [
    {"request": {"id": "r1", "by": "alice", "instance": "web", "minutes": 5}},
    {"approve": {"request": "r1", "by": "bob"}},
    {"advance": "6m"},
    {"grant": {"request": "r1", "expect": "REVOKED"}},
]


@pytest.fixture
def played(request: pytest.FixtureRequest) -> Iterator[_Runner]:
    steps, *extra = request.param
    runner = _Runner(_scenario(steps, **(extra[0] if extra else {})))
    runner.run()
    try:
        yield runner
    finally:
        runner.world.close()


def _objects(world: World) -> dict[str, list[dict[str, Any]]]:
    s3, bucket = world.client("s3"), world.stack.resources["HistoryBucket"].physical_id
    out = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=PREFIX).get("Contents", []):
        out[obj["Key"]] = parse_lines(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return out


def _backfill(world: World) -> Any:
    function = world.function("ExportHistoryFunction")
    event = {"backfill": {"since": DAY, "until": DAY}}
    return world.invoke(function.arn, event, trigger="backfill", sync=True)


@pytest.mark.parametrize("played", [(STEPS,)], indirect=True)
def test_every_transition_lands_once_and_a_backfill_rewrites_the_same_keys(played: _Runner) -> None:
    world = played.world
    assert played.report.passed, [c.as_dict() for c in played.report.checks]
    objects = _objects(world)
    grant_id = played.report.history[0]["grant_id"]
    assert sorted(objects) == [
        f"history/v1/dt={DAY}/grant.{grant_id}.grant.jsonl",
        f"history/v1/dt={DAY}/grant.{grant_id}.revocation.jsonl",
    ]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for lines in objects.values():
        [record] = lines  # one line per object
        validator.validate(record)
        assert record["via"] == "stream"
        assert record["origin"] == "change-manager"
        assert record["principal_arn"].endswith(":user/alice")
    assert [h["transition"] for h in played.report.history] == ["grant", "revocation"]  # in --json
    # The backfill (a deployer's `sessiongate audit backfill`): the same keys, no new one, no extra line.
    answer = _backfill(world)
    assert answer.error is None, answer.error
    assert answer.result == {
        "backfill": {"since": DAY, "until": DAY, "written": 2, "failed": 0, "failed_items": []}
    }
    again = _objects(world)
    assert sorted(again) == sorted(objects)
    assert all(len(lines) == 1 and lines[0]["via"] == "backfill" for lines in again.values())
    bucket = world.stack.resources["HistoryBucket"].physical_id
    versions = world.client("s3").list_object_versions(Bucket=bucket, Prefix=PREFIX)["Versions"]
    assert len(versions) == 4  # the versioned bucket keeps what each write replaced


OUTAGE = [{"fault": {"operation": "s3:PutObject", "code": "InternalError", "times": 1000}}, *STEPS]


@pytest.mark.parametrize("played", [(OUTAGE, {"expect_failed_invocations": True})], indirect=True)
def test_an_s3_outage_past_the_retries_leaves_pointers_and_the_backfill_restores_the_days(
    played: _Runner,
) -> None:
    world = played.world
    assert played.report.passed, [c.as_dict() for c in played.report.checks]
    failed = {(f["function"], f["error"]) for f in played.report.failed_invocations}
    assert failed == {("ExportHistoryFunction", "record discarded after retries")}
    assert _objects(world) == {}
    queue = world.stack.resources["HistoryExportFailuresQueue"].physical_id
    pointers = world.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    # The record given up on, by its stream position (the change itself stays in the table).
    assert pointers
    assert all("DDBStreamBatchInfo" in json.loads(m["Body"]) for m in pointers)
    for fault in world.faults.faults:
        fault.remaining = 0  # S3 is back
    answer = _backfill(world)
    assert answer.error is None, answer.error
    restored = _objects(world)
    assert sorted(r[0]["transition"] for r in restored.values()) == ["grant", "revocation"]


# -- the template ----------------------------------------------------------------------------------
def test_the_bucket_is_encrypted_private_tls_only_retained_and_locked_by_default() -> None:
    p = resource("HistoryBucket")["Properties"]
    [rule] = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["HistoryKey", "Arn"]},
    }
    assert set(p["PublicAccessBlockConfiguration"].values()) == {True}
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    [life] = p["LifecycleConfiguration"]["Rules"]
    assert life["ExpirationInDays"] == {"Ref": "HistoryRetentionDays"}
    assert p["ObjectLockEnabled"] == {"Fn::If": ["HistoryObjectLock", True, {"Ref": "AWS::NoValue"}]}
    document = resource("HistoryBucketPolicy")["Properties"]["PolicyDocument"]
    statements = {s["Sid"]: s for s in document["Statement"] if "Sid" in s}  # (and one Fn::If)
    assert statements["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    writes = statements["OnlyTheExportWritesHistory"]
    assert "s3:PutObject" in writes["Action"]
    assert writes["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["ExportHistoryFunctionRole", "Arn"]}}
    }
    deletes = statements["NobodyDeletesHistory"]
    assert "Condition" not in deletes
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"} <= set(
        deletes["Action"]
    )


def test_the_glue_table_projects_its_day_partitions_over_the_export_prefix() -> None:
    table = resource("HistoryTable")["Properties"]["TableInput"]
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.dt.format"] == "yyyy-MM-dd"
    assert params["storage.location.template"] == {"Fn::Sub": "s3://${HistoryBucket}/history/v1/dt=${!dt}/"}
    assert (
        table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        == "org.openx.data.jsonserde.JsonSerDe"
    )
    # Every field of the record format is a column, and nothing else is.
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert columns == SCHEMA["required"]


def test_the_auditor_policy_reads_and_never_writes() -> None:
    statements = resource("HistoryAuditorPolicy")["Properties"]["PolicyDocument"]["Statement"]
    actions = [
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not [a for a in actions if a.startswith("s3:") and not a.startswith(("s3:Get", "s3:List"))]
    assert [a for a in actions if a.startswith("kms:")] == ["kms:Decrypt"]
    assert not [a for a in actions if a.startswith("glue:") and not a.startswith("glue:Get")]


# -- sessiongate audit on S3 (moto) ----------------------------------------------------------------
def _record(**fields: Any) -> dict[str, Any]:
    base = {k: None for k in SCHEMA["required"]}
    base.update(
        schema="sessiongate.history.v1",
        approver_arns=[],
        denials=[],
        sessions=[],
        account="123456789012",
        instance_id="i-0123456789abcdef0",
        principal_arn="arn:aws:iam::123456789012:user/alice",
        principal_name="alice",
        requester_arn="arn:aws:iam::123456789012:user/alice",
        origin="native",
        origin_ref="r1",
        via="stream",
        grant_id="rq-r1",
        request_id="r1",
    )
    return {**base, **fields}


def test_sessiongate_audit_reads_the_day_partitions_from_s3() -> None:
    import io

    import boto3
    from moto import mock_aws

    from sessiongate.history import object_key
    from sessiongate_cli.main import main

    bob = "arn:aws:iam::123456789012:user/bob"
    records = [
        _record(
            record_id="grant/rq-r1/grant", transition="grant", at="2026-01-05T23:50:00Z", approver_arns=[bob]
        ),
        _record(
            record_id="grant/rq-r1/revocation",
            transition="revocation",
            at="2026-01-06T00:20:00Z",
            revoke_reason="expired",
            sessions=[{"session_id": "alice-0a", "started_at": None, "ended_at": None}],
        ),
        # Another day, outside the range asked for.
        _record(
            record_id="grant/rq-r2/grant", transition="grant", at="2026-01-09T10:00:00Z", grant_id="rq-r2"
        ),
    ]
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="history")
        for r in records:
            s3.put_object(
                Bucket="history", Key=object_key(r["record_id"], r["at"]), Body=json.dumps(r) + "\n"
            )
        out, err = io.StringIO(), io.StringIO()
        argv = ["audit", "--bucket", "history", "--since", "2026-01-05", "--until", "2026-01-05"]
        code = main([*argv, "--format", "json", "--region", "us-east-1"], session=session, out=out, err=err)
        assert code == 0, err.getvalue()
        [row] = json.loads(out.getvalue())["access"]
        # The revocation is read from the next day's partition: the grant ended after midnight.
        assert (row["person"], row["minutes"], row["end_reason"], row["sessions"]) == (
            "alice",
            30,
            "expired",
            ["alice-0a"],
        )
        assert row["approved_by"] == [bob]
        out = io.StringIO()
        assert (
            main([*argv, "--person", "bob", "--region", "us-east-1"], session=session, out=out, err=err) == 0
        )
        assert out.getvalue().strip() == "no access in this range"
        # A bucket the caller cannot read: one line, no traceback.
        err = io.StringIO()
        code = main(
            ["audit", "--bucket", "nope", "--since", "2026-01-05", "--region", "us-east-1"],
            session=session,
            out=io.StringIO(),
            err=err,
        )
        assert code == 1
        assert "history_unreadable" in err.getvalue()


def test_the_named_queries_use_the_tables_columns_and_are_the_readmes() -> None:
    import re

    from tests.support.template import template

    table = resource("HistoryTable")["Properties"]["TableInput"]
    columns = {c["Name"] for c in table["StorageDescriptor"]["Columns"]} | {"dt"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    queries = {k: r for k, r in template()["Resources"].items() if r["Type"] == "AWS::Athena::NamedQuery"}
    assert len(queries) == 3
    for logical_id, query in queries.items():
        p = query["Properties"]
        assert p["Database"] == {"Ref": "HistoryDatabase"}
        assert p["WorkGroup"] == {"Ref": "AuditWorkGroup"}
        sql = p["QueryString"]
        assert "FROM history_v1" in sql, logical_id
        qualified = {m.group(2) for m in re.finditer(r'\b[grhsad]\.("?)(\w+)\1', sql)}
        # Unqualified: every snake_case word but the functions, the table and the result's aliases.
        words = set(re.findall(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", sql)) - {
            "date_diff",
            "from_iso8601_timestamp",
            "count_if",
            "history_v1",
            "granted_at",
            "ended_at",
            "minutes_granted",
        }
        assert qualified | words, logical_id
        assert qualified | words <= columns, (logical_id, (qualified | words) - columns)
        assert sql.strip().rstrip(";") in readme, f"README shows {logical_id} as the template has it"


def test_the_history_key_is_retained_with_the_bucket() -> None:
    """A retained bucket whose key is deleted with the stack holds records nobody can decrypt."""
    for logical_id in ("HistoryBucket", "HistoryKey"):
        r = resource(logical_id)
        assert (r.get("DeletionPolicy"), r.get("UpdateReplacePolicy")) == ("Retain", "Retain"), logical_id


def test_nothing_replicates_into_the_history() -> None:
    """A replication rule of another bucket would write, delete-mark or re-own records here: the bucket
    policy, the guard and the SCP sample deny it to everyone (the export role included)."""
    replication = {
        "s3:ReplicateObject",
        "s3:ReplicateDelete",
        "s3:ReplicateTags",
        "s3:ObjectOwnerOverrideToBucketOwner",
    }
    document = resource("HistoryBucketPolicy")["Properties"]["PolicyDocument"]
    [deny] = [s for s in document["Statement"] if "Sid" in s and replication & set(s["Action"])]
    assert set(deny["Action"]) == replication
    assert (deny["Effect"], deny["Principal"], "Condition" in deny) == ("Deny", "*", False)
    assert deny["Resource"] == {"Fn::Sub": "${HistoryBucket.Arn}/*"}
    guard = resource("SessionGateControlPlaneGuard")["Properties"]["PolicyDocument"]["Statement"]
    [rewriting] = [s for s in guard if s.get("Sid") == "DenyRewritingHistory"]
    assert replication <= set(rewriting["Action"])
    scp = json.loads((Path(__file__).resolve().parents[2] / "docs/scp-protect-sessiongate.json").read_text())
    [history] = [s for s in scp["Statement"] if s["Sid"] == "OnlySessionGateWritesItsHistory"]
    assert {"s3:Replicate*", "s3:ObjectOwnerOverrideToBucketOwner"} <= set(history["Action"])


@pytest.mark.parametrize(
    ("alarm", "function"),
    [
        ("ExportHistoryIteratorAgeAlarm", "ExportHistoryFunction"),
        ("PublishEventsIteratorAgeAlarm", "PublishEventsFunction"),
    ],
)
def test_a_stalled_stream_mapping_alarms_well_before_the_stream_drops_records(
    alarm: str, function: str
) -> None:
    p = resource(alarm)["Properties"]
    assert (p["Namespace"], p["MetricName"], p["Statistic"]) == ("AWS/Lambda", "IteratorAge", "Maximum")
    assert p["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    assert p["ComparisonOperator"] == "GreaterThanThreshold"
    # In milliseconds: under the mappings' MaximumRecordAgeInSeconds (and the streams' 24 hours).
    for event in resource(function)["Properties"]["Events"].values():
        assert p["Threshold"] * 4 <= event["Properties"]["MaximumRecordAgeInSeconds"] * 1000
    assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_sessiongate_audit_reads_back_for_grants_and_approvals_before_the_range() -> None:
    """A break-glass grant approved days ahead (a scheduled start), begun at 23:50 the day before the
    range and ended after midnight, is in the range, with its approval kind."""
    import io

    import boto3
    from moto import mock_aws

    from sessiongate.history import object_key
    from sessiongate_cli.main import main

    api_role = "arn:aws:iam::123456789012:role/sessiongate/sg-RequestApiFunctionRole-X"
    records = [
        _record(
            record_id="request/r1/approved",
            transition="approved",
            grant_id=None,
            at="2026-01-01T08:00:00Z",
            approval_kind="break_glass",
            ticket="INC-42",
        ),
        _record(
            record_id="grant/rq-r1/grant",
            transition="grant",
            at="2026-01-04T23:50:00Z",
            approver_arns=[api_role],
        ),
        _record(
            record_id="grant/rq-r1/revocation",
            transition="revocation",
            at="2026-01-05T00:20:00Z",
            revoke_reason="expired",
        ),
    ]
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="history")
        for r in records:
            s3.put_object(
                Bucket="history", Key=object_key(r["record_id"], r["at"]), Body=json.dumps(r) + "\n"
            )
        out, err = io.StringIO(), io.StringIO()
        argv = ["audit", "--bucket", "history", "--since", "2026-01-05", "--until", "2026-01-05"]
        code = main([*argv, "--format", "json", "--region", "us-east-1"], session=session, out=out, err=err)
        assert code == 0, err.getvalue()
        [row] = json.loads(out.getvalue())["access"]
        assert (row["granted_at"], row["minutes"], row["approval_kind"], row["ticket"]) == (
            "2026-01-04T23:50:00Z",
            30,
            "break_glass",
            "INC-42",
        )


def _athena_like(sql: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a named query on SQLite over ``records`` (Athena's two functions it uses defined alike)."""
    import sqlite3
    from datetime import datetime

    from sessiongate.history import day_of

    def minutes(unit: str, start: str, end: str) -> int:
        assert unit == "minute"
        return int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() // 60)

    columns = [*SCHEMA["required"], "dt"]
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.create_function("from_iso8601_timestamp", 1, lambda at: at and at.replace("Z", "+00:00"))
    db.create_function("date_diff", 3, minutes)
    db.execute(f"CREATE TABLE history_v1 ({', '.join(f'{c!r}' for c in columns)})")
    for r in records:
        row = {**r, "dt": day_of(r["at"]).isoformat()}
        values = [json.dumps(row[c]) if isinstance(row[c], list | dict) else row[c] for c in columns]
        db.execute(f"INSERT INTO history_v1 VALUES ({', '.join('?' for _ in columns)})", values)  # noqa: S608 (placeholders only)
    return [dict(row) for row in db.execute(sql)]


def test_who_had_access_joins_the_sessions_and_the_approval_and_leaves_out_denied_grants() -> None:
    """The sessions arrive in their own record after the revocation; the approval kind and the ticket
    are on the request's approved record (a grant record has neither); a grant denied after it was
    active (its binding checks failed) is no access."""
    sql = resource("AuditQueryWhoHadAccess")["Properties"]["QueryString"]
    records = [
        _record(
            record_id="request/r1/approved",
            transition="approved",
            grant_id=None,
            at="2026-01-05T08:55:00Z",
            approval_kind="break_glass",
            ticket="INC-1",
        ),
        _record(record_id="grant/rq-r1/grant", transition="grant", at="2026-01-05T09:00:00Z"),
        _record(record_id="grant/rq-r1/revocation", transition="revocation", at="2026-01-05T09:20:00Z"),
        _record(
            record_id="grant/rq-r1/sessions",
            transition="sessions",
            at="2026-01-05T09:25:00Z",
            sessions=[{"session_id": "alice-0a", "started_at": None, "ended_at": None}],
        ),
        _record(
            record_id="grant/rq-r2/grant",
            transition="grant",
            at="2026-01-05T10:00:00Z",
            grant_id="rq-r2",
            request_id="r2",
        ),
        _record(
            record_id="grant/rq-r2/denial",
            transition="denial",
            at="2026-01-05T10:01:00Z",
            grant_id="rq-r2",
            request_id="r2",
        ),
    ]
    [row] = _athena_like(sql, records)
    assert (row["granted_at"], row["ended_at"], row["minutes"]) == (
        "2026-01-05T09:00:00Z",
        "2026-01-05T09:20:00Z",
        20,
    )
    assert (row["approval_kind"], row["ticket"]) == ("break_glass", "INC-1")
    assert [s["session_id"] for s in json.loads(row["sessions"])] == ["alice-0a"]
