"""Live sessions: with TerminateSessionsOnExpiry, revocation also ends the sessions the grant allowed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import boto3
import pytest
from botocore.stub import Stubber

from sessiongate.adapters.sessions import Sessions
from sessiongate.core.identity import parse_identity
from tests.support.stack import ACCOUNT, Stack

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


def _grant(stack: Stack) -> tuple[str, str]:
    stack.user("alice")
    instance = stack.instance()
    request = stack.approved(instance_id=instance, principal="alice")
    assert stack.engine().grant(request.to_detail()).result == "granted"
    return request.grant_id, instance


def test_revoke_terminates_the_principals_sessions_on_that_instance_only(stack: Stack) -> None:
    stack.settings = replace(stack.settings, terminate_sessions_on_expiry=True)
    grant_id, instance = _grant(stack)
    other = stack.instance()
    now = stack.clock.now()
    mine = stack.ssm.open_session(owner_arn=ALICE, user_id="AIDAALICE", target=instance, now=now)
    elsewhere = stack.ssm.open_session(owner_arn=ALICE, user_id="AIDAALICE", target=other, now=now)
    someone = stack.ssm.open_session(
        owner_arn=f"arn:aws:iam::{ACCOUNT}:user/bob", user_id="AIDABOB", target=instance, now=now
    )

    assert stack.engine().revoke(grant_id).result == "revoked"

    status = {sid: s["Status"] for sid, s in stack.ssm.sessions.items()}
    assert status == {mine: "Terminated", elsewhere: "Connected", someone: "Connected"}


def test_sessions_are_left_alone_unless_configured(stack: Stack) -> None:
    grant_id, instance = _grant(stack)
    sid = stack.ssm.open_session(owner_arn=ALICE, user_id="AIDAALICE", target=instance, now=stack.clock.now())
    assert stack.engine().revoke(grant_id).result == "revoked"
    assert stack.ssm.sessions[sid]["Status"] == "Connected"
    assert "DescribeSessions" not in stack.ssm.calls


def test_sessions_adapter_pages_and_matches_role_sessions() -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops"
    with Stubber(ssm) as stub:
        stub.add_response(
            "describe_sessions",
            {
                "Sessions": [
                    {"SessionId": "AROA1:dave-1", "Owner": f"{role}/dave", "Target": "i-0123456789abcdef0"},
                    {"SessionId": "AROA1:erin-1", "Owner": f"{role}/erin", "Target": "i-0123456789abcdef0"},
                ],
                "NextToken": "page2",
            },
            {"State": "Active", "Filters": [{"key": "Target", "value": "i-0123456789abcdef0"}]},
        )
        stub.add_response("terminate_session", {"SessionId": "AROA1:dave-1"}, {"SessionId": "AROA1:dave-1"})
        stub.add_response(
            "describe_sessions",
            {"Sessions": [{"SessionId": "x-1", "Owner": f"arn:aws:iam::{ACCOUNT}:user/ops"}]},
            {
                "State": "Active",
                "Filters": [{"key": "Target", "value": "i-0123456789abcdef0"}],
                "NextToken": "page2",
            },
        )
        owner = parse_identity(f"arn:aws:iam::{ACCOUNT}:role/Ops")
        assert owner is not None
        ended = Sessions(ssm).terminate("i-0123456789abcdef0", owner, session_name="dave")
        stub.assert_no_pending_responses()
    assert ended == ["AROA1:dave-1"]


def test_revoke_ends_sessions_of_the_granted_role_only_not_the_same_idc_user_elsewhere() -> None:
    """An IdC user is one person across permission sets, but only the granted role's sessions go."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    ops = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Ops_1234"
    other = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_ReadOnly_5678"
    with Stubber(ssm) as stub:
        stub.add_response(
            "describe_sessions",
            {
                "Sessions": [
                    {"SessionId": "s-ops-dave", "Owner": f"{ops}/dave@example.com"},
                    {"SessionId": "s-ops-erin", "Owner": f"{ops}/erin@example.com"},
                    {"SessionId": "s-ro-dave", "Owner": f"{other}/dave@example.com"},
                ]
            },
            {"State": "Active", "Filters": [{"key": "Target", "value": "i-0123456789abcdef0"}]},
        )
        stub.add_response("terminate_session", {"SessionId": "s-ops-dave"}, {"SessionId": "s-ops-dave"})
        stub.add_response("terminate_session", {"SessionId": "s-ops-erin"}, {"SessionId": "s-ops-erin"})
        owner = parse_identity(
            f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Ops_1234"
        )
        assert owner is not None
        ended = Sessions(ssm).terminate("i-0123456789abcdef0", owner)
        stub.assert_no_pending_responses()
    assert ended == ["s-ops-dave", "s-ops-erin"]


def _extended(stack: Stack, *, elsewhere: bool = False) -> tuple[str, str, str]:
    """alice's grant on an instance and a second grant (the extension: there, or ``elsewhere``)."""
    stack.settings = replace(stack.settings, terminate_sessions_on_expiry=True)
    grant_id, instance = _grant(stack)
    request = stack.approved(
        instance_id=stack.instance() if elsewhere else instance, principal="alice", minutes=20
    )
    assert stack.engine().grant(request.to_detail()).result == "granted"
    return grant_id, request.grant_id, instance


def _connect(stack: Stack, instance: str) -> str:
    return stack.ssm.open_session(
        owner_arn=ALICE, user_id="AIDAALICE", target=instance, now=stack.clock.now()
    )


@pytest.mark.parametrize("reason", ["extended", "expired"])
def test_an_extension_keeps_the_open_session_until_the_extension_ends(stack: Stack, reason: str) -> None:
    """Replaced by the extension, or run out before the request API retired it: the access continues."""
    old, new, instance = _extended(stack)
    session = _connect(stack, instance)
    if reason == "expired":
        stack.clock.advance(timedelta(minutes=10))

    assert stack.engine().revoke(old, reason=reason, by="sessiongate:r-x1").result == "revoked"
    assert stack.ssm.sessions[session]["Status"] == "Connected"  # the access continues

    stack.clock.advance(timedelta(minutes=20))
    assert stack.engine().revoke(new).result == "revoked"
    assert stack.ssm.sessions[session]["Status"] == "Terminated"


def test_done_ends_the_sessions_even_while_another_grant_lives(stack: Stack) -> None:
    old, _, instance = _extended(stack)
    session = _connect(stack, instance)

    assert stack.engine().revoke(old, reason="done", by=ALICE).result == "revoked"

    assert stack.ssm.sessions[session]["Status"] == "Terminated"


@pytest.mark.parametrize("successor", ["revoked", "elsewhere", "expired"])
def test_extended_without_a_live_successor_on_that_instance_still_ends_the_sessions(
    stack: Stack, successor: str
) -> None:
    old, new, instance = _extended(stack, elsewhere=successor == "elsewhere")
    if successor == "revoked":
        assert stack.engine().revoke(new, reason="revoked", by="admin").result == "revoked"
    if successor == "expired":
        stack.clock.advance(timedelta(minutes=21))  # its schedule has not fired yet
    session = _connect(stack, instance)

    assert stack.engine().revoke(old, reason="extended", by="sessiongate:r-x1").result == "revoked"

    assert stack.ssm.sessions[session]["Status"] == "Terminated"
