"""Issue 17 on the real adapters: the ledger's usage states on moto (and the unit fake, same assertions),
and Session Manager's preferences and session history through ``adapters/sessions.py`` on the SSM
fake (validated against botocore's model) and on moto's GetDocument."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from sandbox.fake_ssm import FakeSsm
from sessiongate.adapters.ledger import Ledger
from sessiongate.adapters.sessions import Sessions
from sessiongate.clock import ManualClock
from sessiongate.core.identity import Identity
from sessiongate.core.model import Grant, GrantStatus
from sessiongate.core.ports import ServiceFailure
from sessiongate.core.session_logging import PreferencesUnreadable
from tests.support.template import create_table
from tests.unit.fakes.core import FakeLedger

ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
REGION = "us-east-1"
TABLE = "usage-grants"
INSTANCE = "i-0123456789abcdef0"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _active(grant_id: str, expires_at: str = "2026-11-24T09:10:00Z") -> Grant:
    return Grant(
        grant_id=grant_id,
        status=GrantStatus.ACTIVE,
        origin="native",
        origin_ref="r-1",
        account=ACCOUNT,
        instance_id=INSTANCE,
        principal_type="user",
        principal_name="alice",
        principal_arn=ALICE,
        requester_arn=ALICE,
        approver_arns=[f"arn:aws:iam::{ACCOUNT}:user/approver"],
        duration_minutes=10,
        created_at="2026-11-24T09:00:00Z",
        slot=1,
        expires_at=expires_at,
        activated_at="2026-11-24T09:00:00Z",
        log_destination={"s3_bucket": "logs", "s3_prefix": "sessions/", "cloudwatch_streaming": True},
    )


@pytest.fixture(params=["fake", "moto"])
def ledger(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeLedger()
        return
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        create_table(db, "GrantsTable", TABLE)
        yield Ledger(db, TABLE)


def _revoke(ledger: Any, grant: Grant, at: str) -> None:
    assert ledger.open(grant).created
    assert ledger.complete_revoke(grant, at=at, reason="expired", by="scheduler", release_slot=True)


def test_a_revoked_grant_is_pending_until_its_sessions_are_recorded(ledger: Any) -> None:
    grant = _active("g1")
    _revoke(ledger, grant, "2026-11-24T09:10:00Z")
    pending = ledger.usage_pending(limit=10)
    assert [g.grant_id for g in pending] == ["g1"]
    assert pending[0].log_destination == grant.log_destination  # kept as written (a map, a boolean)

    sessions = [{"session_id": "alice-0123", "status": "Terminated", "started_at": "2026-11-24T09:01:00Z"}]
    assert ledger.record_usage(pending[0], sessions=sessions, at="2026-11-24T09:12:00Z")
    assert not ledger.record_usage(pending[0], sessions=[], at="2026-11-24T09:13:00Z")  # once
    assert ledger.usage_pending(limit=10) == []
    stored = ledger.get_grant("g1")
    assert (stored.sessions, stored.usage_recorded_at) == (sessions, "2026-11-24T09:12:00Z")
    assert stored.status is GrantStatus.REVOKED


def test_usage_unknown_is_recorded_without_sessions(ledger: Any) -> None:
    grant = _active("g1")
    _revoke(ledger, grant, "2026-11-24T09:10:00Z")
    assert ledger.record_usage(grant, sessions=None, at="2026-11-24T09:12:00Z", unknown="account gone")
    stored = ledger.get_grant("g1")
    assert (stored.sessions, stored.usage_unknown) == (None, "account gone")


def test_grants_ended_in_a_range_are_read_by_day(ledger: Any) -> None:
    days = ["2026-11-20T23:59:59Z", "2026-11-21T00:00:00Z", "2026-11-24T09:10:00Z", "2026-11-28T12:00:00Z"]
    for n, at in enumerate(days):
        grant = _active(f"g{n}", expires_at=at)
        _revoke(ledger, grant, at)
        if n != 2:  # g2 stays pending: still in the report
            assert ledger.record_usage(grant, sessions=[], at=at)
    found = ledger.ended_between("2026-11-21T00:00:00Z", "2026-11-28T12:00:00Z")
    assert [g.grant_id for g in found] == ["g1", "g2"]
    assert ledger.ended_between("2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z")[0].grant_id == "g3"
    # A live grant is in no range.
    assert ledger.open(replace(_active("live"), slot=2))
    assert "live" not in [
        g.grant_id for g in ledger.ended_between("2026-11-20T00:00:00Z", "2026-12-01T00:00:00Z")
    ]


def test_the_moto_ledger_reads_days_with_queries_not_a_scan() -> None:
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        create_table(db, "GrantsTable", TABLE)
        ledger = Ledger(db, TABLE)
        _revoke(ledger, _active("g1"), "2026-11-24T09:10:00Z")
        operations: list[str] = []
        db.meta.events.register("before-call.dynamodb.*", lambda model, **_: operations.append(model.name))
        ledger.ended_between("2026-11-17T09:00:00Z", "2026-11-24T09:30:00Z")
        # The pending partition and 8 days (17th..24th), 16 shards each, then the records in one batch.
        assert operations == ["Query"] * 9 * 16 + ["BatchGetItem"]


# -- Session Manager ------------------------------------------------------------------------------
@pytest.fixture
def ssm() -> Iterator[FakeSsm]:
    with mock_aws():
        yield FakeSsm(boto3.client("ssm", region_name=REGION), clock=ManualClock(NOW))


PREFS = {"s3BucketName": "logs", "s3KeyPrefix": "sessions/", "s3EncryptionEnabled": True}


def test_preferences_are_read_at_latest(ssm: FakeSsm) -> None:
    ssm.set_preferences({})
    ssm.set_preferences(PREFS)
    preferences = Sessions(ssm).preferences()
    assert preferences.destination() == {"s3_bucket": "logs", "s3_prefix": "sessions/"}
    assert ssm.calls == ["GetDocument"]


def test_preferences_from_moto_get_document() -> None:
    """The adapter against moto's own GetDocument: a Session document created with CreateDocument."""
    with mock_aws():
        client = boto3.client("ssm", region_name=REGION)
        with pytest.raises(PreferencesUnreadable, match="InvalidDocument"):
            Sessions(client).preferences()
        content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": PREFS}
        client.create_document(
            Name="SSM-SessionManagerRunShell",
            DocumentType="Session",
            DocumentFormat="JSON",
            Content=json.dumps(content),
        )
        assert Sessions(client).preferences().s3_bucket == "logs"


@pytest.mark.parametrize(
    ("code", "unreadable"),
    [
        ("AccessDeniedException", True),
        ("InvalidDocument", True),
        ("ThrottlingException", False),
        ("InternalServerError", False),
    ],
)
def test_an_answer_is_a_decision_and_a_failure_is_not(code: str, unreadable: bool) -> None:
    client = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("get_document", service_error_code=code, http_status_code=400)
        expected: type[Exception] = PreferencesUnreadable if unreadable else ServiceFailure
        with pytest.raises(expected):
            Sessions(client).preferences()


def test_a_preferences_document_of_another_type_is_unreadable() -> None:
    client = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response(
            "get_document",
            {
                "Name": "SSM-SessionManagerRunShell",
                "DocumentType": "Command",
                "Content": "{}",
                "DocumentFormat": "JSON",
            },
        )
        with pytest.raises(PreferencesUnreadable, match="Command"):
            Sessions(client).preferences()


def test_sessions_opened_by_the_owner_in_the_window(ssm: FakeSsm) -> None:
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops"
    mine = ssm.open_session(
        owner_arn=ALICE, user_id="AIDAALICE", target=INSTANCE, now=NOW + timedelta(minutes=1)
    )
    still_open = ssm.open_session(
        owner_arn=ALICE, user_id="AIDAALICE", target=INSTANCE, now=NOW + timedelta(minutes=8)
    )
    ssm.open_session(owner_arn=ALICE, user_id="AIDAALICE", target=INSTANCE, now=NOW - timedelta(minutes=1))
    ssm.open_session(owner_arn=ALICE, user_id="AIDAALICE", target=INSTANCE, now=NOW + timedelta(minutes=10))
    ssm.open_session(owner_arn=ALICE, user_id="AIDAALICE", target="i-0fedcba9876543210", now=NOW)
    ssm.open_session(owner_arn=f"{role}/bob", user_id="AROAOPS:bob", target=INSTANCE, now=NOW)
    ops_alice = ssm.open_session(owner_arn=f"{role}/alice", user_id="AROAOPS:alice", target=INSTANCE, now=NOW)
    ssm.close_session(mine, now=NOW + timedelta(minutes=3))
    # Many sessions of others on the instance: the pages join up.
    for _ in range(205):
        ssm.open_session(owner_arn=f"{role}/carol", user_id="AROAOPS:carol", target=INSTANCE, now=NOW)

    sessions = Sessions(ssm)
    window = (NOW, NOW + timedelta(minutes=10))
    used = sessions.opened(INSTANCE, Identity("aws", ACCOUNT, "user", "alice"), None, *window)
    assert [u["session_id"] for u in used] == [mine, still_open]
    assert used[0] == {
        "session_id": mine,
        "status": "Terminated",
        "started_at": "2026-11-24T09:01:00Z",
        "ended_at": "2026-11-24T09:03:00Z",
        "document": "SSM-SessionManagerRunShell",
        "owner": ALICE,
    }
    assert used[1]["status"] == "Connected"
    assert "ended_at" not in used[1]
    # A role's grant bound to one role session counts only that session.
    ops = Identity("aws", ACCOUNT, "role", "Ops")
    assert [u["session_id"] for u in sessions.opened(INSTANCE, ops, "alice", *window)] == [ops_alice]
    assert len(sessions.opened(INSTANCE, ops, None, *window)) == 207
    assert set(ssm.calls) == {"DescribeSessions"}


def test_describe_sessions_refuses_what_the_model_refuses(ssm: FakeSsm) -> None:
    with pytest.raises(ClientError):
        ssm.describe_sessions(State="Active", Filters=[{"key": "Colour", "value": "x"}])


def test_revoked_grants_spread_over_the_index_shards() -> None:
    """Every revocation writes its ``USAGE#<n>`` index value: one value for all would be the hot key
    the live shards avoid (README "Reconciler scale and the live-grants index")."""
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        create_table(db, "GrantsTable", TABLE)
        ledger = Ledger(db, TABLE)
        for n in range(48):
            _revoke(
                ledger, replace(_active(f"g{n}"), slot=1, principal_arn=f"{ALICE}{n}"), "2026-11-24T09:10:00Z"
            )
        values = {item["live"]["S"] for item in db.scan(TableName=TABLE)["Items"] if "live" in item}
        assert all(v.startswith("USAGE#") for v in values)
        assert len(values) >= 12
        assert len(ledger.usage_pending(limit=100)) == 48
        assert len(ledger.usage_pending(limit=5)) == 5


def test_the_session_count_of_a_capped_record_round_trips(ledger: Any) -> None:
    grant = _active("g1")
    _revoke(ledger, grant, "2026-11-24T09:10:00Z")
    sessions = [{"session_id": f"s-{n}", "status": "Terminated"} for n in range(3)]
    assert ledger.record_usage(grant, sessions=sessions, at="2026-11-24T09:12:00Z", session_count=150)
    stored = ledger.get_grant("g1")
    assert (len(stored.sessions), stored.session_count) == (3, 150)


def test_one_rotation_reads_one_usage_shard(ledger: Any) -> None:
    from sessiongate.adapters.ledger import LIVE_SHARDS, usage_partition

    for n in range(8):
        _revoke(ledger, _active(f"g{n}"), "2026-11-24T09:10:00Z")
    found: set[str] = set()
    for rotation in range(LIVE_SHARDS):
        pending = ledger.usage_pending(limit=10, rotation=rotation)
        assert {usage_partition(g.grant_id) for g in pending} <= {f"USAGE#{rotation}"}
        found |= {g.grant_id for g in pending}
    assert found == {f"g{n}" for n in range(8)}
