"""The identity-store adapter and its fake keep the real service's answers: the same questions through
``adapters.identity_store.IdentityStoreGroups`` against ``tests/unit/fakes/identity_store.FakeIdentityStore``
and against moto's identitystore (GetUserId, GetGroupId, IsMemberInGroups), with STS AssumeRole of the
read role (moto's STS) in front of the moto store, as the wiring builds it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sessiongate import wiring
from sessiongate.access_requests.groups import GroupLookupFailed
from sessiongate.adapters.identity_store import IdentityStoreGroups
from sessiongate.clock import ManualClock
from sessiongate.settings import Settings
from tests.unit.fakes.identity_store import READER_ROLE, STORE_ID, ClientMaker, FakeIdentityStore, FakeSts

REGION = "us-east-1"
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
GROUPS = {"Platform-Leads": ["alice@example.com", "bob@example.com"], "Security": ["sam@example.com"]}
USERS = ["alice@example.com", "bob@example.com", "carol@example.com", "sam@example.com"]


def _moto_store(client: Any) -> None:
    ids = {}
    for user in USERS:
        ids[user] = client.create_user(
            IdentityStoreId=STORE_ID,
            UserName=user,
            DisplayName=user,
            Name={"GivenName": user.split("@")[0], "FamilyName": "Test"},
        )["UserId"]
    for group, members in GROUPS.items():
        group_id = client.create_group(IdentityStoreId=STORE_ID, DisplayName=group)["GroupId"]
        for member in members:
            client.create_group_membership(
                IdentityStoreId=STORE_ID, GroupId=group_id, MemberId={"UserId": ids[member]}
            )


@pytest.fixture(params=["fake", "moto"])
def groups(request: pytest.FixtureRequest) -> Iterator[IdentityStoreGroups]:
    clock = ManualClock(START)
    if request.param == "fake":
        store = FakeIdentityStore()
        for user in USERS:
            store.add_user(user)
        for group, members in GROUPS.items():
            store.add_group(group, members)
        yield IdentityStoreGroups(
            FakeSts(clock), ClientMaker(store), clock, identity_store_id=STORE_ID, role_arn=READER_ROLE
        )
        return
    with mock_aws():
        # The store lives in the account that administers IAM Identity Center: the read role's (moto
        # keeps each account's identity stores apart, and answers assumed credentials from that account).
        credentials = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=READER_ROLE, RoleSessionName="admin"
        )["Credentials"]
        _moto_store(
            boto3.client(
                "identitystore",
                region_name=REGION,
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
        )
        # As wiring builds it: STS of the process, identitystore clients from the assumed credentials.
        settings = Settings(
            account_id="123456789012", identity_store_id=STORE_ID, identity_store_role_arn=READER_ROLE
        )
        built = wiring.identity_store_groups(
            settings, clock, lambda service: boto3.client(service, region_name=REGION)
        )
        assert isinstance(built, IdentityStoreGroups)
        yield built


def test_members_of_a_group_are_members_and_others_are_not(groups: IdentityStoreGroups) -> None:
    assert groups.is_member("alice@example.com", ["Platform-Leads"])
    assert groups.is_member("sam@example.com", ["Platform-Leads", "Security"])
    assert not groups.is_member("carol@example.com", ["Platform-Leads", "Security"])
    assert not groups.is_member("sam@example.com", ["Platform-Leads"])


def test_a_user_the_store_does_not_know_is_in_no_group(groups: IdentityStoreGroups) -> None:
    assert not groups.is_member("mallory@example.com", ["Platform-Leads"])


def test_a_group_the_store_does_not_know_fails_closed(groups: IdentityStoreGroups) -> None:
    with pytest.raises(GroupLookupFailed) as err:
        groups.is_member("alice@example.com", ["Platform-Lead"])
    assert err.value.code == "identity_store_unavailable"
    assert "'Platform-Lead'" in err.value.message


def test_group_names_match_exactly(groups: IdentityStoreGroups) -> None:
    """GetGroupId by DisplayName, as moto answers it (and the fake): another spelling is another, missing,
    group. The API reference does not say how letter case is compared: the README asks for the exact name."""
    with pytest.raises(GroupLookupFailed):
        groups.is_member("alice@example.com", ["platform-leads"])
