"""RequireSessionLogging (issue 17): the decision on every combination of the preferences' logging
inputs, fail-closed reads, the per-account cache, and where the grant records its logs go."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.core.model import GrantStatus, Result
from sessiongate.core.ports import ServiceFailure
from sessiongate.core.session_logging import Preferences, PreferencesUnreadable
from sessiongate.errors import TransientError
from sessiongate.outbox import grant_events
from tests.unit.fakes.core import MEMBER, CoreWorld

S3 = {"s3BucketName": "logs-bucket", "s3KeyPrefix": "sessions/"}
CW = {"cloudWatchLogGroupName": "/sessiongate/sessions", "cloudWatchStreamingEnabled": True}


@pytest.fixture
def world() -> CoreWorld:
    return CoreWorld(require_session_logging=True)


def _codes(world: CoreWorld, grant_id: str) -> list[str]:
    grant = world.ledger.get_grant(grant_id)
    assert grant is not None
    return [d["code"] for d in grant.denials]


# Every combination of: S3 bucket (absent / unencrypted / encrypted) x log group (same three).
S3_CASES: dict[str, dict[str, Any]] = {
    "no bucket": {},
    "bucket unencrypted": {**S3, "s3EncryptionEnabled": False},
    "bucket encrypted": {**S3, "s3EncryptionEnabled": True},
}
CW_CASES: dict[str, dict[str, Any]] = {
    "no group": {},
    "group unencrypted": {**CW, "cloudWatchEncryptionEnabled": False},
    "group encrypted": {**CW, "cloudWatchEncryptionEnabled": True},
}


@pytest.mark.parametrize("s3", list(S3_CASES))
@pytest.mark.parametrize("cw", list(CW_CASES))
def test_granted_only_when_logs_go_somewhere_encrypted(world: CoreWorld, s3: str, cw: str) -> None:
    world.sessions.set_logging(**S3_CASES[s3], **CW_CASES[cw])
    request = world.approved()
    outcome = world.grant(request)

    to_s3, to_cw = s3 == "bucket encrypted", cw == "group encrypted"
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    if not (to_s3 or to_cw):
        assert outcome.result is Result.DENIED
        assert _codes(world, request.grant_id) == ["session_logging_off"]
        assert world.directory.tags_of("user", "alice") == {}
        assert grant.log_destination is None
        return
    assert outcome.result is Result.GRANTED
    expected: dict[str, Any] = {}
    if to_s3:
        expected.update(s3_bucket="logs-bucket", s3_prefix="sessions/")
    if to_cw:
        expected.update(log_group="/sessiongate/sessions", cloudwatch_streaming=True)
    assert grant.log_destination == expected


def test_the_denial_says_why(world: CoreWorld) -> None:
    world.sessions.set_logging(**S3, s3EncryptionEnabled=False)
    request = world.approved()
    world.grant(request)
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert "logs-bucket without s3EncryptionEnabled" in grant.denials[0]["message"]


@pytest.mark.parametrize("how", ["absent", "unreadable", "not json", "no inputs"])
def test_fails_closed_when_the_preferences_cannot_be_read(world: CoreWorld, how: str) -> None:
    if how == "unreadable":
        world.sessions.unreadable = True
    elif how == "not json":
        world.sessions.preferences_content = "schemaVersion: '1.0'"
    elif how == "no inputs":
        world.sessions.preferences_content = json.dumps({"schemaVersion": "1.0"})
    request = world.approved()

    assert world.grant(request).result is Result.DENIED
    assert _codes(world, request.grant_id) == ["session_logging_off"]
    assert world.ledger.get_grant(request.grant_id).status is GrantStatus.DENIED  # type: ignore[union-attr]
    assert world.notifier.types() == ["AccessDenied"]


def test_throttling_is_transient_not_a_denial(world: CoreWorld) -> None:
    world.sessions.failure = ServiceFailure("Rate exceeded", code="ThrottlingException")
    request = world.approved()

    with pytest.raises(ServiceFailure):
        world.grant(request)
    assert world.ledger.get_grant(request.grant_id) is None  # nothing recorded: the retry decides


def test_option_off_reads_nothing_and_records_no_destination() -> None:
    world = CoreWorld()
    request = world.approved()
    assert world.grant(request).result is Result.GRANTED
    assert world.sessions.preference_reads == 0
    assert world.ledger.get_grant(request.grant_id).log_destination is None  # type: ignore[union-attr]


def test_preferences_are_cached_per_account_for_a_minute(world: CoreWorld) -> None:
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True)
    world.inventory.add("i-0fedcba9876543210")
    world.grant(world.approved())
    world.grant(world.approved(instance="i-0fedcba9876543210"))
    assert world.sessions.preference_reads == 1  # the warm grant pays no call

    # Logging turned off: grants keep being granted until the cached answer is a minute old.
    world.sessions.set_logging()
    world.clock.advance(timedelta(seconds=61))
    request = world.approved(minutes=5)
    assert world.grant(request).result is Result.DENIED
    assert world.sessions.preference_reads == 2


def test_an_unreadable_answer_is_not_cached(world: CoreWorld) -> None:
    world.sessions.unreadable = True
    assert world.grant(world.approved()).result is Result.DENIED
    world.sessions.unreadable = False
    world.sessions.set_logging(**CW, cloudWatchEncryptionEnabled=True)
    assert world.grant(world.approved()).result is Result.GRANTED
    assert world.sessions.preference_reads == 2


def test_a_member_account_is_judged_by_its_own_preferences() -> None:
    world = CoreWorld(require_session_logging=True, member_accounts=(MEMBER,))
    directory, inventory, sessions = world.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add("i-0123456789abcdef0")
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True)  # the engine account's: not the target

    request = world.approved(account=MEMBER)
    assert world.grant(request).result is Result.DENIED
    assert sessions.preference_reads == 1
    assert world.sessions.preference_reads == 0

    sessions.set_logging(**CW, cloudWatchEncryptionEnabled=True)
    assert world.grant(world.approved(account=MEMBER)).result is Result.GRANTED


def test_access_revoked_links_the_log_destination(world: CoreWorld) -> None:
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True, kmsKeyId="alias/session-key")
    request = world.approved()
    world.grant(request)
    world.clock.advance(timedelta(minutes=11))
    world.engine.revoke(request.grant_id)

    revoked = [p for t, p, _ in world.notifier.published if t == "AccessRevoked"]
    assert revoked[0]["log_destination"] == {
        "s3_bucket": "logs-bucket",
        "s3_prefix": "sessions/",
        "session_kms_key_id": "alias/session-key",
    }
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.log_destination == revoked[0]["log_destination"]
    # A record without a destination keeps the AccessRevoked payload as it was (no new key).
    plain = CoreWorld()
    other = plain.approved()
    plain.grant(other)
    plain.clock.advance(timedelta(minutes=11))
    plain.engine.revoke(other.grant_id)
    assert "log_destination" not in next(p for t, p, _ in plain.notifier.published if t == "AccessRevoked")
    assert grant_events(None, None) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), ("TRUE", True), (False, False), ("no", False), (1, False)],
)
def test_booleans_may_be_json_booleans_or_strings(value: object, expected: bool) -> None:
    content = json.dumps({"inputs": {"s3BucketName": "b", "s3EncryptionEnabled": value}})
    assert (Preferences.from_content(content).destination() is not None) is expected


@pytest.mark.parametrize(
    "inputs",
    [
        {"s3BucketName": "{{ bucket }}", "s3EncryptionEnabled": True},
        {"s3BucketName": "logs-bucket", "s3EncryptionEnabled": "{{ encrypt }}"},
        {"cloudWatchLogGroupName": "{{ssm:/logging/group}}", "cloudWatchEncryptionEnabled": True},
        {"s3BucketName": "logs-bucket", "s3KeyPrefix": "{{prefix}}", "s3EncryptionEnabled": True},
    ],
)
def test_a_logging_input_taken_from_a_parameter_is_denied(world: CoreWorld, inputs: dict[str, Any]) -> None:
    """Review M1: a parameterized preferences document lets the session's starter choose its logging
    (start-session --parameters s3BucketName=""): fail closed."""
    content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": inputs}
    content["parameters"] = {
        name: {"type": "String", "default": "x"} for name in ("bucket", "encrypt", "prefix")
    }
    world.sessions.preferences_content = json.dumps(content)
    request = world.approved()
    assert world.grant(request).result is Result.DENIED
    assert _codes(world, request.grant_id) == ["session_logging_off"]


def test_content_that_is_no_object_is_unreadable() -> None:
    with pytest.raises(PreferencesUnreadable):
        Preferences.from_content("[]")


# -- the reconciler re-checks: logging turned off after the grant ends the account's grants ---------
def test_turning_logging_off_revokes_the_active_grants_at_the_next_run(world: CoreWorld) -> None:
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True)
    request = world.approved(minutes=30)
    world.grant(request)
    world.clock.advance(timedelta(minutes=1))
    assert world.engine.reconcile().detail["revoked_logging_off"] == []
    assert world.status(request.grant_id) is GrantStatus.ACTIVE

    world.sessions.set_logging()  # an administrator turns logging off
    world.clock.advance(timedelta(minutes=1))
    outcome = world.engine.reconcile()

    assert outcome.detail["revoked_logging_off"] == [request.grant_id]
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by) == (
        GrantStatus.REVOKED,
        "session_logging_off",
        "reconciler",
    )
    assert world.directory.tags_of("user", "alice") == {}
    revoked = [p for t, p, _ in world.notifier.published if t == "AccessRevoked"]
    assert revoked[0]["reason"] == "session_logging_off"


def test_deleting_the_preferences_document_revokes_too(world: CoreWorld) -> None:
    world.sessions.set_logging(**CW, cloudWatchEncryptionEnabled=True)
    request = world.approved(minutes=30)
    world.grant(request)
    world.sessions.preferences_content = None
    world.clock.advance(timedelta(minutes=1))
    assert world.engine.reconcile().detail["revoked_logging_off"] == [request.grant_id]


def test_the_recheck_reads_fresh_preferences_even_within_the_cache_minute(world: CoreWorld) -> None:
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True)
    request = world.approved(minutes=30)
    world.grant(request)
    world.sessions.set_logging()
    world.clock.advance(timedelta(seconds=20))  # the grant's cached answer is still young
    assert world.engine.reconcile().detail["revoked_logging_off"] == [request.grant_id]


def test_a_failed_recheck_revokes_nothing_and_fails_the_run(world: CoreWorld) -> None:
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True)
    request = world.approved(minutes=30)
    world.grant(request)
    world.sessions.failure = ServiceFailure("Rate exceeded", code="ThrottlingException")
    world.clock.advance(timedelta(minutes=1))
    with pytest.raises(TransientError):
        world.engine.reconcile()
    assert world.status(request.grant_id) is GrantStatus.ACTIVE


def test_with_the_option_off_the_reconciler_reads_no_preferences() -> None:
    world = CoreWorld()
    world.grant(world.approved(minutes=30))
    world.clock.advance(timedelta(minutes=1))
    assert "revoked_logging_off" not in world.engine.reconcile().detail
    assert world.sessions.preference_reads == 0


def test_the_recheck_reads_no_live_grant_while_every_account_logs() -> None:
    """Review M2: the steady run's cost must not grow with the live grants: one GetDocument per
    configured account; the live grants are read only for an account whose logging is off."""
    world = CoreWorld(require_session_logging=True, member_accounts=(MEMBER,))
    directory, inventory, member_sessions = world.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add("i-0123456789abcdef0")
    world.sessions.set_logging(**S3, s3EncryptionEnabled=True)
    member_sessions.set_logging(**CW, cloudWatchEncryptionEnabled=True)
    granted = [world.approved(minutes=30), world.approved(minutes=30, account=MEMBER)]
    for request in granted:
        assert world.grant(request).result is Result.GRANTED
    world.clock.advance(timedelta(minutes=1))
    reads, member_reads = world.sessions.preference_reads, member_sessions.preference_reads

    world.ledger.live_reads = 0
    assert world.engine.reconcile().detail["revoked_logging_off"] == []
    assert world.ledger.live_reads == 1  # the overdue query only
    assert (world.sessions.preference_reads, member_sessions.preference_reads) == (
        reads + 1,
        member_reads + 1,
    )

    member_sessions.set_logging()  # the member account stops logging: only its grant ends
    world.clock.advance(timedelta(minutes=1))
    assert world.engine.reconcile().detail["revoked_logging_off"] == [granted[1].grant_id]
    assert world.status(granted[0].grant_id) is GrantStatus.ACTIVE
