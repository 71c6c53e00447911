"""The history export (issue 17): which changes are which records, their documented format (the JSON
Schema shipped in docs/audit), idempotent object keys, the backfill writing the same records the stream
wrote, the handler's partial batches, and the ``sessiongate audit`` report built from the records."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from functions.export_history import app
from sessiongate.access_requests.policy import Level, Rule
from sessiongate.access_requests.records import (
    AUTO_LEVEL,
    Approval,
    Request,
    RequestStatus,
)
from sessiongate.adapters.ledger import _item
from sessiongate.adapters.request_store import to_item
from sessiongate.clock import parse_iso
from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.errors import InvalidInput
from sessiongate.history import (
    SCHEMA,
    Exporter,
    HistoryRecord,
    backfill_records,
    object_key,
    parse_lines,
    records_of,
)
from sessiongate.outbox import LEDGER, REQUESTS, rule_snapshot
from sessiongate_cli import audit

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "audit" / "history-record.v1.schema.json"
ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/sessiongate/api"
INSTANCE = "i-0123456789abcdef0"
LEDGER_STREAM = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sg-GrantsTable-X/stream/2026-01-01T00:00:00.000"
REQUESTS_STREAM = (
    f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sg-RequestsTable-X/stream/2026-01-01T00:00:00.000"
)
TABLES = {"sg-GrantsTable-X": LEDGER, "sg-RequestsTable-X": REQUESTS}
RULE = Rule("ops", (Level("first", (BOB,), 1), Level("second", (CAROL,), 1)))


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


# -- the records' lives: every write of a request and of its grant, as (old, new) stream pairs ----------
def _at(hhmm: str) -> Any:
    return parse_iso(f"2026-01-05T{hhmm}:00Z")


def _request(**changes: Any) -> Request:
    request = Request(
        request_id="r1",
        status=RequestStatus.PENDING,
        account=ACCOUNT,
        instance_id=INSTANCE,
        principal_type=PrincipalType.USER,
        principal_name="alice",
        principal_arn=ALICE,
        requester_arn=ALICE,
        duration_minutes=30,
        reason="restart nginx",
        created_at="2026-01-05T09:00:00Z",
        pending_expires_at="2026-01-05T10:00:00Z",
        rule="ops",
        history=({"at": "2026-01-05T09:00:00Z", "status": "PENDING", "by": ALICE},),
        notice_rule=rule_snapshot(RULE),
    )
    return replace(request, **changes)


def _approve(r: Request, who: str, hhmm: str, *, final: bool) -> Request:
    approvals = (*r.approvals, Approval(who, len(r.approvals), f"2026-01-05T{hhmm}:00Z", "ok"))
    if not final:
        return replace(r, approvals=approvals, version=r.version + 1)
    return r.transition(
        RequestStatus.APPROVED,
        at=_at(hhmm),
        by=who,
        approvals=approvals,
        approved_at=f"2026-01-05T{hhmm}:00Z",
        version=r.version + 1,
    )


def _grant(request: Request, **changes: Any) -> Grant:
    grant = Grant(
        grant_id=request.grant_id,
        status=GrantStatus.ACTIVE,
        origin="native",
        origin_ref=request.request_id,
        account=ACCOUNT,
        instance_id=INSTANCE,
        principal_type="user",
        principal_name="alice",
        principal_arn=ALICE,
        requester_arn=ALICE,
        approver_arns=[a.approver_arn for a in request.approvals],
        duration_minutes=request.duration_minutes,
        created_at="2026-01-05T09:06:00Z",
        expires_at="2026-01-05T09:36:00Z",
        slot=1,
        activated_at="2026-01-05T09:06:01Z",
        reason=request.reason,
    )
    return replace(grant, **changes)


def _ledger_image(grant: Grant) -> dict[str, Any]:
    return _item(
        {**grant.__dict__, "status": grant.status.value, "pk": f"GRANT#{grant.grant_id}", "kind": "grant"}
    )


Write = tuple[str, Any, Any]  # (stream ARN, old image, new image)


def approved_and_revoked() -> tuple[list[Write], Request, Grant]:
    """Alice asks, Bob then Carol approve (two levels), the grant runs, Alice revokes it early."""
    pending = _request()
    first = _approve(pending, BOB, "09:02", final=False)
    approved = _approve(first, CAROL, "09:05", final=True)
    active = _grant(approved)
    revoked = replace(
        active,
        status=GrantStatus.REVOKED,
        revoked_at="2026-01-05T09:20:00Z",
        revoke_reason="revoked",
        revoked_by=ALICE,
        slot=None,
    )
    writes: list[Write] = [
        (REQUESTS_STREAM, None, to_item(pending)),
        (REQUESTS_STREAM, to_item(pending), to_item(first)),
        (REQUESTS_STREAM, to_item(first), to_item(approved)),
        (LEDGER_STREAM, None, _ledger_image(active)),
        (LEDGER_STREAM, _ledger_image(active), _ledger_image(replace(active, schedule_name="s"))),  # no event
        (LEDGER_STREAM, _ledger_image(active), _ledger_image(revoked)),
    ]
    return writes, approved, revoked


def _stream_records(writes: list[Write]) -> list[HistoryRecord]:
    out: list[HistoryRecord] = []
    for stream, old, new in writes:
        out += records_of(TABLES[stream.split("/")[1]], old, new)
    return out


def test_each_transition_is_one_record_with_who_what_when_and_who_approved() -> None:
    writes, _, _ = approved_and_revoked()
    records = _stream_records(writes)
    assert [r.record["transition"] for r in records] == [
        "request",
        "approval",
        "approved",
        "grant",
        "revocation",
    ]
    assert [r.record["record_id"] for r in records] == [
        "request/r1/request",
        "request/r1/approval/1",
        "request/r1/approved",
        "grant/rq-r1/grant",
        "grant/rq-r1/revocation",
    ]
    approved, grant, revocation = records[2].record, records[3].record, records[4].record
    assert approved["approver_arns"] == [BOB, CAROL]
    assert approved["approval_kind"] == "approvers"
    assert approved["rule"] == "ops"
    assert grant["at"] == "2026-01-05T09:06:01Z"
    assert grant["request_id"] == "r1"  # a native grant names its request
    assert grant["duration_minutes"] == 30
    assert grant["reason"] == "restart nginx"
    assert grant["approver_arns"] == [BOB, CAROL]
    assert revocation["revoke_reason"] == "revoked"
    assert revocation["revoked_by"] == ALICE
    assert revocation["reason"] == "restart nginx"  # the request's reason, not the revocation's
    assert {r.record["event_id"] for r in records} >= {"AccessGranted/rq-r1", "AccessRevoked/rq-r1"}
    assert all(r.record["via"] == "stream" and r.record["schema"] == SCHEMA for r in records)


def test_every_record_matches_the_published_schema_and_the_schema_is_not_vacuous() -> None:
    check = validator()
    writes, approved, _ = approved_and_revoked()
    denied = _grant(
        approved,
        grant_id="g-2",
        status=GrantStatus.DENIED,
        activated_at=None,
        slot=None,
        denials=[{"code": "instance_not_managed", "message": "not an SSM managed instance"}],
        denied_at="2026-01-05T09:07:00Z",
    )
    records = _stream_records(writes) + records_of(LEDGER, None, _ledger_image(denied))
    for r in records:
        check.validate(r.record)
    assert records[-1].record["denials"] == [
        {"code": "instance_not_managed", "message": "not an SSM managed instance"}
    ]
    # The schema refuses what is not a v1 record: a missing field, an unknown one, a wrong type.
    good = records[0].record
    for bad in (
        {k: v for k, v in good.items() if k != "principal_arn"},
        {**good, "surprise": 1},
        {**good, "approver_arns": "bob"},
        {**good, "at": "yesterday"},
        {**good, "transition": "reminder"},
        {**good, "account": "12345"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(bad)


def test_reminders_escalations_slot_locks_and_tombstones_are_no_record() -> None:
    pending = _request()
    reminded = replace(pending, reminders_sent=1, reminded_at="2026-01-05T09:30:00Z", version=1)
    escalated = replace(reminded, escalated_at="2026-01-05T09:45:00Z", version=2)
    assert records_of(REQUESTS, to_item(pending), to_item(reminded)) == []
    assert records_of(REQUESTS, to_item(reminded), to_item(escalated)) == []
    slot = {"pk": {"S": f"SLOT#{ALICE}#1"}, "kind": {"S": "slot"}, "grant_id": {"S": "rq-r1"}}
    tombstone = {"pk": {"S": "GRANT#g-9"}, "revoke_requested": {"S": "2026-01-05T09:00:00Z"}}
    assert records_of(LEDGER, None, slot) == []
    assert records_of(LEDGER, None, tombstone) == []
    with pytest.raises(ValueError, match="unknown history source"):
        records_of("elsewhere", None, slot)


def test_object_keys_are_partitioned_by_the_transitions_utc_day_and_name_the_record() -> None:
    assert (
        object_key("grant/g-1/grant", "2026-01-05T23:59:59Z")
        == "history/v1/dt=2026-01-05/grant.g-1.grant.jsonl"
    )
    assert object_key("grant/g-1/grant", "2026-01-05T23:30:00-02:00") == (
        "history/v1/dt=2026-01-06/grant.g-1.grant.jsonl"
    )
    assert object_key("request/a b+c/approval/2", "2026-01-05T00:00:00Z") == (
        "history/v1/dt=2026-01-05/request.a_b_c.approval.2.jsonl"
    )


class Store:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.fail = fail or set()

    def put(self, key: str, body: bytes) -> None:
        if any(f in key for f in self.fail):
            raise RuntimeError("S3 is down")
        self.puts += 1
        self.objects[key] = body


def _record(seq: int, stream: str, old: Any, new: Any) -> dict[str, Any]:
    change = {"NewImage": new, **({"OldImage": old} if old else {})}
    return {
        "eventID": str(seq),
        "eventName": "MODIFY" if old else "INSERT",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": stream,
        "dynamodb": {**change, "SequenceNumber": str(seq), "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


class Context:
    function_name = "sessiongate-export-history"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:sessiongate-export-history"
    aws_request_id = "test"


def test_a_failed_record_and_those_after_it_are_reported_and_redelivery_duplicates_no_line() -> None:
    """Lambda resumes at the first reported record; the retried batch is cut differently (bisect), and
    records already written are written again: to the same keys, with the same bytes."""
    writes, _, _ = approved_and_revoked()
    event = {"Records": [_record(n, s, old, new) for n, (s, old, new) in enumerate(writes, start=1)]}
    store = Store(fail={"grant.rq-r1.grant"})
    exporter = Exporter(store, TABLES)
    answer = app.lambda_handler(json.loads(json.dumps(event)), Context(), deps=exporter)
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(n)} for n in (4, 5, 6)]}
    assert len(store.objects) == 3
    first = dict(store.objects)
    store.fail.clear()
    # The retry: the whole batch again (a bisected half, then the rest), some records twice.
    for part in (event["Records"][:3], event["Records"][2:], event["Records"][3:]):
        assert app.lambda_handler({"Records": part}, Context(), deps=exporter) == {"batchItemFailures": []}
    assert store.puts > len(store.objects) == 5
    assert all(store.objects[k] == v for k, v in first.items())
    lines = [line for body in store.objects.values() for line in parse_lines(body)]
    assert len(lines) == 5  # one line per object, one object per transition
    assert len({line["record_id"] for line in lines}) == 5


def test_the_backfill_rebuilds_the_same_keys_and_facts_from_the_tables() -> None:
    """What a scan of the tables proves, written to the keys the stream wrote: nothing duplicated, the
    same facts (only ``via`` differs, and a request record's notification id the backfill cannot know)."""
    writes, _, _ = approved_and_revoked()
    # More lives: rejected after one approval, cancelled, break-glass, auto-approved, an extension.
    rejected = _approve(_request(request_id="r2"), BOB, "09:01", final=False)
    rejected_final = rejected.transition(RequestStatus.REJECTED, at=_at("09:03"), by=CAROL, version=2)
    cancelled = _request(request_id="r3")
    cancelled_final = cancelled.transition(RequestStatus.CANCELLED, at=_at("09:04"), by=ALICE, version=1)
    glass = _request(
        request_id="r4",
        status=RequestStatus.APPROVED,
        break_glass=True,
        approvals=(Approval(ALICE, -1, "2026-01-05T09:10:00Z", "glass"),),
        approved_at="2026-01-05T09:10:00Z",
    )
    auto = _request(
        request_id="r5",
        status=RequestStatus.APPROVED,
        approvals=(Approval(API_ROLE, AUTO_LEVEL, "2026-01-05T09:11:00Z", "auto"),),
        approved_at="2026-01-05T09:11:00Z",
        auto_approval="dev in office hours",
    )
    extension = _request(request_id="r6", extends="r1")
    extension_final = _approve(_approve(extension, BOB, "09:12", final=False), CAROL, "09:13", final=True)
    writes += [
        (REQUESTS_STREAM, None, to_item(_request(request_id="r2"))),
        (REQUESTS_STREAM, to_item(_request(request_id="r2")), to_item(rejected)),
        (REQUESTS_STREAM, to_item(rejected), to_item(rejected_final)),
        (REQUESTS_STREAM, None, to_item(cancelled)),
        (REQUESTS_STREAM, to_item(cancelled), to_item(cancelled_final)),
        (REQUESTS_STREAM, None, to_item(glass)),
        (REQUESTS_STREAM, None, to_item(auto)),
        (REQUESTS_STREAM, None, to_item(extension)),
        (REQUESTS_STREAM, to_item(extension), to_item(_approve(extension, BOB, "09:12", final=False))),
        (REQUESTS_STREAM, to_item(_approve(extension, BOB, "09:12", final=False)), to_item(extension_final)),
    ]
    streamed = {r.key: r.record for r in _stream_records(writes)}
    # The tables now: each record's last image.
    last: dict[str, Any] = {}
    for _, _, new in writes:
        last[new["pk"]["S"] if "pk" in new else new["request_id"]["S"]] = new
    grants = [v for k, v in last.items() if str(k).startswith("GRANT#")]
    requests = [v for k, v in last.items() if not str(k).startswith("GRANT#")]
    rebuilt = {
        r.key: r.record for r in backfill_records(grants, requests, date(2026, 1, 5), date(2026, 1, 5))
    }
    assert set(rebuilt) == set(streamed)
    ignore = {"via", "event_id"}
    for key, record in streamed.items():
        assert {k: v for k, v in rebuilt[key].items() if k not in ignore} == {
            k: v for k, v in record.items() if k not in ignore
        }, key
        assert rebuilt[key]["via"] == "backfill"
    kinds = {
        r["record_id"]: (r["transition"], r["approval_kind"], r["approver_arns"]) for r in streamed.values()
    }
    assert kinds["request/r4/approved"] == ("approved", "break_glass", [ALICE])
    assert kinds["request/r5/approved"] == ("approved", "auto", [])  # nobody's approval (issue 18)
    assert kinds["request/r6/extension"] == ("extension", "approvers", [BOB, CAROL])
    # A range holds only its days.
    assert backfill_records(grants, requests, date(2026, 1, 6), date(2026, 1, 9)) == []


def test_the_backfill_event_is_checked_and_reads_only_the_tables() -> None:
    writes, _, _ = approved_and_revoked()
    items = {"sg-GrantsTable-X": [writes[-1][2]], "sg-RequestsTable-X": [writes[2][2]]}
    store = Store()
    exporter = Exporter(store, TABLES, scanner=lambda table: iter(items[table]))
    answer = app.lambda_handler(
        {"backfill": {"since": "2026-01-05", "until": "2026-01-05"}}, Context(), deps=exporter
    )
    assert answer == {
        "backfill": {
            "since": "2026-01-05",
            "until": "2026-01-05",
            "written": 5,
            "failed": 0,
            "failed_items": [],
        }
    }
    assert sorted(store.objects) == sorted(r.key for r in _stream_records(writes))
    for bad in ({}, {"since": "2026-01-06", "until": "2026-01-05"}, {"since": "x", "until": "2026-01-05"}):
        with pytest.raises(InvalidInput):
            app.lambda_handler({"backfill": bad}, Context(), deps=exporter)


# -- sessiongate audit ----------------------------------------------------------------------------------
def _history() -> list[dict[str, Any]]:
    writes, approved, _ = approved_and_revoked()
    other = _grant(
        replace(approved, request_id="r9"),
        instance_id="i-0fedcba9876543210",
        principal_arn=BOB,
        principal_name="bob",
        account="210987654321",
        created_at="2026-01-06T10:00:00Z",
        activated_at="2026-01-06T10:00:00Z",
        expires_at="2026-01-06T10:30:00Z",
    )
    revocation = {
        **records_of(LEDGER, None, _ledger_image(other))[0].record,
        "transition": "revocation",
        "at": "2026-01-06T10:30:00Z",
        "revoke_reason": "expired",
        "sessions": [{"session_id": "bob-0123", "started_at": None, "ended_at": None}],
    }
    records = [r.record for r in _stream_records(writes)]
    return [*records, records_of(LEDGER, None, _ledger_image(other))[0].record, revocation]


def test_audit_rows_say_who_had_access_to_what_when_how_long_approved_by_whom() -> None:
    rows = audit.access_rows(_history(), date(2026, 1, 5), date(2026, 1, 6))
    assert [(r["person"], r["instance_id"], r["minutes"], r["end_reason"]) for r in rows] == [
        ("alice", INSTANCE, 14, "revoked"),
        ("bob", "i-0fedcba9876543210", 30, "expired"),
    ]
    assert rows[0]["approved_by"] == [BOB, CAROL]
    assert rows[0]["request_id"] == "r1"
    assert rows[1]["sessions"] == ["bob-0123"]


@pytest.mark.parametrize(
    ("filters", "people"),
    [
        ({"person": "alice"}, ["alice"]),
        ({"person": BOB}, ["bob"]),
        ({"person": "mallory"}, []),
        ({"instance": INSTANCE}, ["alice"]),
        ({"account": "210987654321"}, ["bob"]),
        ({"account": ACCOUNT, "person": "bob"}, []),
    ],
)
def test_audit_filters_by_person_instance_and_account(filters: dict[str, str], people: list[str]) -> None:
    rows = audit.access_rows(_history(), date(2026, 1, 5), date(2026, 1, 6), **filters)
    assert [r["person"] for r in rows] == people


def test_audit_range_is_the_days_access_was_granted() -> None:
    assert [r["person"] for r in audit.access_rows(_history(), date(2026, 1, 6), date(2026, 1, 6))] == ["bob"]
    assert audit.access_rows(_history(), date(2026, 1, 7), date(2026, 1, 9)) == []


def test_audit_renders_a_table_json_and_csv() -> None:
    rows = audit.access_rows(_history(), date(2026, 1, 5), date(2026, 1, 6))
    table = audit.render(rows, "table").splitlines()
    assert table[0].startswith("GRANTED (UTC)")
    for text in ("alice", "bob,carol", "revoked"):
        assert text in table[1]
    assert json.loads(audit.render(rows, "json"))["access"][1]["sessions"] == ["bob-0123"]
    parsed = list(csv.DictReader(io.StringIO(audit.render(rows, "csv"))))
    assert parsed[0]["approved_by"] == f"{BOB};{CAROL}"
    assert list(parsed[0]) == list(audit.COLUMNS)
    assert audit.render([], "table") == "no access in this range"


class _Lambda:
    """The export function's backfill: answers each chunk with its days (``answer`` overrides)."""

    def __init__(
        self, answer: dict[str, Any] | None = None, error: str | None = None, *, fail_call: int = 1
    ) -> None:
        self.answer, self.error, self.calls, self.fail_call = answer, error, [], fail_call

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        days = json.loads(kwargs["Payload"])["backfill"]
        answer = self.answer or {"backfill": {**days, "written": 3, "failed": 0, "failed_items": []}}
        out: dict[str, Any] = {"Payload": io.BytesIO(json.dumps(answer).encode())}
        if self.error and len(self.calls) == self.fail_call:
            out["FunctionError"] = self.error
            out["Payload"] = io.BytesIO(b'{"errorMessage": "boom"}')
        return out


class _Session:
    def __init__(self, client: _Lambda) -> None:
        self.lambda_client = client

    def client(self, service: str, region_name: str, config: Any) -> _Lambda:
        assert service == "lambda"
        assert config.read_timeout > 300  # the function's timeout
        return self.lambda_client


def test_audit_backfill_invokes_the_export_function_with_the_days_and_reports_failures() -> None:
    ok = _Lambda()
    text = audit.backfill(_Session(ok), "us-east-1", "sg-export-history", date(2026, 1, 1), date(2026, 1, 5))
    assert text.startswith("backfilled 2026-01-01..2026-01-05: 3 records written")
    [call] = ok.calls
    assert call["FunctionName"] == "sg-export-history"
    assert json.loads(call["Payload"]) == {"backfill": {"since": "2026-01-01", "until": "2026-01-05"}}
    failed = _Lambda(error="Unhandled")
    with pytest.raises(audit.CliError, match="the backfill failed"):
        audit.backfill(_Session(failed), "us-east-1", "f", date(2026, 1, 1), date(2026, 1, 1))


def test_audit_backfill_asks_a_week_at_a_time() -> None:
    """One invocation scans both tables within 300 s: a long range is asked for in chunks, in order."""
    ok = _Lambda()
    text = audit.backfill(_Session(ok), "us-east-1", "f", date(2026, 1, 1), date(2026, 1, 31))
    assert [tuple(json.loads(c["Payload"])["backfill"].values()) for c in ok.calls] == [
        ("2026-01-01", "2026-01-07"),
        ("2026-01-08", "2026-01-14"),
        ("2026-01-15", "2026-01-21"),
        ("2026-01-22", "2026-01-28"),
        ("2026-01-29", "2026-01-31"),
    ]
    assert text.splitlines()[-1].startswith("backfilled 2026-01-01..2026-01-31: 15 records written")


def test_audit_backfill_stops_at_the_first_failing_chunk_and_says_where_to_resume() -> None:
    failing = _Lambda(error="Unhandled", fail_call=2)
    with pytest.raises(audit.CliError) as raised:
        audit.backfill(_Session(failing), "us-east-1", "f", date(2026, 1, 1), date(2026, 1, 31))
    assert len(failing.calls) == 2
    message = raised.value.message
    assert "stopped at 2026-01-08..2026-01-14" in message
    assert "2026-01-01..2026-01-07 are done" in message
    assert "--since 2026-01-08" in message


def test_audit_backfill_reports_the_items_the_function_left_out() -> None:
    answer = {
        "backfill": {
            "since": "2026-01-01",
            "until": "2026-01-02",
            "written": 4,
            "failed": 1,
            "failed_items": ["GRANT#g-bad/GRANT"],
        }
    }
    with pytest.raises(audit.CliError) as raised:
        audit.backfill(_Session(_Lambda(answer)), "us-east-1", "f", date(2026, 1, 1), date(2026, 1, 2))
    assert raised.value.code == "backfill_incomplete"
    assert "4 records written" in raised.value.message
    assert "1 table items could not be read" in raised.value.message
    assert "GRANT#g-bad/GRANT" in raised.value.message


def test_one_unreadable_item_does_not_stop_the_backfill() -> None:
    """An item the code cannot read (a broken or foreign record) is left out and named; the others are
    still written."""
    writes, _, _ = approved_and_revoked()
    good_grant, good_request = writes[-1][2], writes[2][2]
    bad = {**good_grant, "pk": {"S": "GRANT#g-bad"}, "status": {"S": "NOT-A-STATUS"}}
    with pytest.raises(ValueError, match="NOT-A-STATUS"):
        backfill_records([bad], [], date(2026, 1, 5), date(2026, 1, 5))
    items = {"sg-GrantsTable-X": [bad, good_grant], "sg-RequestsTable-X": [good_request]}
    store = Store()
    exporter = Exporter(store, TABLES, scanner=lambda table: iter(items[table]))
    answer = app.lambda_handler(
        {"backfill": {"since": "2026-01-05", "until": "2026-01-05"}}, Context(), deps=exporter
    )
    [failed] = answer["backfill"]["failed_items"]
    assert failed.startswith("GRANT#g-bad")
    assert (answer["backfill"]["written"], answer["backfill"]["failed"]) == (5, 1)
    assert sorted(store.objects) == sorted(r.key for r in _stream_records(writes))


def test_sessions_recorded_after_the_revocation_is_a_sessions_record() -> None:
    """The usage part of issue 17 records the sessions after the revocation (``SessionsRecorded``): its
    record carries them, and where the grant's sessions' logs went."""
    from sessiongate.outbox import Lifecycle, grant_payload

    _, _, revoked = approved_and_revoked()
    payload = {
        **grant_payload(revoked, "2026-01-05T09:25:00Z"),
        "sessions": [
            {"session_id": "alice-0a1b", "status": "Terminated", "started_at": "2026-01-05T09:07:00Z"},
            {
                "session_id": "alice-0c2d",
                "started_at": "2026-01-05T09:08:00Z",
                "ended_at": "2026-01-05T09:19:00Z",
            },
        ],
        "log_destination": {"s3_bucket": "session-logs", "log_group": "/ssm/sessions"},
        "event_id": f"SessionsRecorded/{revoked.grant_id}",
    }
    event = Lifecycle("SessionsRecorded", payload, "", f"SessionsRecorded/{revoked.grant_id}")
    from sessiongate.history import to_record

    record = to_record(event, grant=revoked, via="stream")
    assert record is not None
    validator().validate(record.record)
    assert record.record["record_id"] == "grant/rq-r1/sessions"
    assert record.record["sessions"] == [
        {"session_id": "alice-0a1b", "started_at": "2026-01-05T09:07:00Z", "ended_at": None},
        {
            "session_id": "alice-0c2d",
            "started_at": "2026-01-05T09:08:00Z",
            "ended_at": "2026-01-05T09:19:00Z",
        },
    ]
    assert record.record["log_destination"] == {
        "s3_bucket": "session-logs",
        "s3_prefix": None,
        "log_group": "/ssm/sessions",
    }
    rows = audit.access_rows([*_history(), record.record], date(2026, 1, 5), date(2026, 1, 5))
    assert rows[0]["sessions"] == ["alice-0a1b", "alice-0c2d"]


def _shifted(record: dict[str, Any], grant_id: str, at: str, **fields: Any) -> dict[str, Any]:
    return {
        **record,
        "grant_id": grant_id,
        "record_id": f"grant/{grant_id}/{record['transition']}",
        "at": at,
        **fields,
    }


def test_audit_reports_a_grant_in_force_across_the_start_of_the_range() -> None:
    """A grant from 23:50 on Jan 4 to 00:20 on Jan 5 is access on Jan 5; one that ended on Jan 4 is not,
    nor is a denial of Jan 4."""
    grant, revocation = (
        r for r in _history() if r["grant_id"] == "rq-r1" and r["transition"] in ("grant", "revocation")
    )
    records = [
        _shifted(grant, "g-across", "2026-01-04T23:50:00Z"),
        _shifted(revocation, "g-across", "2026-01-05T00:20:00Z"),
        _shifted(grant, "g-before", "2026-01-04T10:00:00Z"),
        _shifted(revocation, "g-before", "2026-01-04T10:30:00Z"),
        _shifted(grant, "g-open", "2026-01-04T22:00:00Z"),  # no end recorded (yet)
        _shifted(grant, "g-stale", "2026-01-02T22:00:00Z"),  # no end recorded, long over
        _shifted(
            grant, "g-denied", "2026-01-04T23:00:00Z", transition="denial", record_id="grant/g-denied/denial"
        ),
    ]
    rows = audit.access_rows(records, date(2026, 1, 5), date(2026, 1, 5))
    assert [(r["grant_id"], r["status"], r["minutes"]) for r in rows] == [
        ("g-open", "ACTIVE", None),
        ("g-across", "REVOKED", 30),
    ]


def test_audit_reads_far_enough_back_for_the_approval_of_a_scheduled_start() -> None:
    """The report reads the partitions LOOKBACK before --since: a grant in force on --since began at most
    a validity before it, its approval at most a scheduled start's lead before that."""
    from sessiongate.access_requests import rule_limits

    max_validity = timedelta(hours=12)  # MaxValidityMinutes' largest value (template.yaml)
    assert max_validity <= audit.STARTED_BEFORE
    assert audit.STARTED_BEFORE + timedelta(minutes=rule_limits.MAX_LEAD_MINUTES) <= audit.LOOKBACK


def test_audit_does_not_call_an_unknown_approval_of_a_native_grant_an_approvers_approval() -> None:
    """A break-glass or auto-approved grant names the request API's role as its approver: without the
    request's approved record its approval kind is unknown, not "approvers"."""
    grant = next(r for r in _history() if r["grant_id"] == "rq-r1" and r["transition"] == "grant")
    orphan = _shifted(grant, "g-orphan", "2026-01-05T10:00:00Z", request_id="r-gone")
    [row] = audit.access_rows([orphan], date(2026, 1, 5), date(2026, 1, 5))
    assert row["approved_by"] == grant["approver_arns"]
    assert row["approval_kind"] is None
    [row] = audit.access_rows([{**orphan, "origin": "change-manager"}], date(2026, 1, 5), date(2026, 1, 5))
    assert row["approval_kind"] == "approvers"
