"""IAM Identity Center's identity store, read through a read-only role in the account that administers it.

Three read calls, nothing else (Identity Store API Reference): ``GetUserId`` (the user by its unique
attribute ``userName``), ``GetGroupId`` (a group by its unique attribute ``DisplayName``) and
``IsMemberInGroups`` (up to 100 group ids for one member). They run with the credentials of the
stack's ``IdentityStoreRoleArn`` (member/identity-store.yaml creates it, allowed exactly these three
actions on one identity store), assumed on first use and again before they expire.

Answers are cached per process for :data:`CACHE` (60 s on the injected clock): a user removed from a
group can still approve for up to a minute. Nothing that failed is cached. Every failure (the role
cannot be assumed, access denied, throttling, a group that does not exist)
raises :class:`GroupLookupFailed`: the caller refuses (fail closed); throttling, 5xx and timeouts are
marked ``transient`` (the grant retries its event instead of denying). A user name the store does not know
(``ResourceNotFoundException`` from GetUserId) is an answer: that person is in no group; so is a group
IsMemberInGroups reports no ``MembershipExists: true`` for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate.access_requests.groups import GroupLookupFailed
from sessiongate.adapters.aws import REFRESH_BEFORE, assumed_credentials, error_code, retryable
from sessiongate.clock import Clock

CACHE = timedelta(seconds=60)
SESSION_NAME = "sessiongate-identity-store"
MAX_GROUP_IDS = 100  # IsMemberInGroups: GroupIds has 1..100 members
NOT_FOUND = "ResourceNotFoundException"

ClientMaker = Callable[[str, dict[str, str] | None], Any]


@dataclass
class _Client:
    client: Any
    expires: datetime


class IdentityStoreGroups:
    """Group membership of Identity Center users (the policy's :class:`~.groups.Membership`)."""

    def __init__(
        self,
        sts: Any,
        make: ClientMaker,
        clock: Clock,
        *,
        identity_store_id: str,
        role_arn: str,
        region: str = "",
    ) -> None:
        self._sts = sts
        self._make = make
        self._clock = clock
        self._store = identity_store_id
        self._role_arn = role_arn
        self._region = region
        self._client: _Client | None = None
        self._users: dict[str, tuple[datetime, str | None]] = {}
        self._groups: dict[str, tuple[datetime, str]] = {}
        self._members: dict[tuple[str, tuple[str, ...]], tuple[datetime, bool]] = {}

    def is_member(self, user_name: str, groups: Sequence[str]) -> bool:
        now = self._clock.now()
        key = (user_name, tuple(sorted(set(groups))))
        cached = self._members.get(key)
        if cached is not None and now - cached[0] < CACHE:
            return cached[1]
        user_id = self._user_id(user_name, now)
        answer = False
        if user_id is not None:
            group_ids = [self._group_id(name, now) for name in key[1]]
            answer = self._in_groups(user_id, group_ids)
        self._members[key] = (now, answer)
        return answer

    # -- the three reads ------------------------------------------------------------------------
    def _user_id(self, user_name: str, now: datetime) -> str | None:
        cached = self._users.get(user_name)
        if cached is not None and now - cached[0] < CACHE:
            return cached[1]
        try:
            answer = self._call(
                "GetUserId",
                now,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": user_name}
                },
            )
            user_id: str | None = str(answer["UserId"])
        except _NotFound:
            user_id = None  # not a user of this identity store: in no group
        self._users[user_name] = (now, user_id)
        return user_id

    def _group_id(self, name: str, now: datetime) -> str:
        cached = self._groups.get(name)
        if cached is not None and now - cached[0] < CACHE:
            return cached[1]
        try:
            answer = self._call(
                "GetGroupId",
                now,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "DisplayName", "AttributeValue": name}
                },
            )
        except _NotFound:
            raise GroupLookupFailed(
                f"the approval policy names group {name!r}, which identity store {self._store} does not have"
            ) from None
        group_id = str(answer["GroupId"])
        self._groups[name] = (now, group_id)
        return group_id

    def _in_groups(self, user_id: str, group_ids: list[str]) -> bool:
        for start in range(0, len(group_ids), MAX_GROUP_IDS):
            chunk = group_ids[start : start + MAX_GROUP_IDS]
            answer = self._call(
                "IsMemberInGroups", self._clock.now(), MemberId={"UserId": user_id}, GroupIds=chunk
            )
            # Only an explicit MembershipExists true for a group asked about admits; a result missing
            # for a group (or naming another one) admits nothing.
            asked = set(chunk)
            results = answer.get("Results", [])
            if any(r.get("GroupId") in asked and r.get("MembershipExists") is True for r in results):
                return True
        return False

    # -- calls, with the read role's credentials ---------------------------------------------------
    def _call(self, operation: str, now: datetime, **kwargs: Any) -> dict[str, Any]:
        client = self._identity_store(now)
        method = {
            "GetUserId": client.get_user_id,
            "GetGroupId": client.get_group_id,
            "IsMemberInGroups": client.is_member_in_groups,
        }[operation]
        try:
            return dict(method(IdentityStoreId=self._store, **kwargs))
        except ClientError as exc:
            if error_code(exc) == NOT_FOUND and operation != "IsMemberInGroups":
                raise _NotFound from None
            raise GroupLookupFailed(
                f"identitystore:{operation} answered {error_code(exc) or 'an error'}",
                transient=retryable(exc),
            ) from None
        except BotoCoreError as exc:
            raise GroupLookupFailed(
                f"identitystore:{operation} failed: {type(exc).__name__}", transient=retryable(exc)
            ) from None

    def _identity_store(self, now: datetime) -> Any:
        if self._client is not None and self._client.expires - REFRESH_BEFORE > now:
            return self._client.client
        try:
            credentials = self._sts.assume_role(RoleArn=self._role_arn, RoleSessionName=SESSION_NAME)[
                "Credentials"
            ]
        except ClientError as exc:
            raise GroupLookupFailed(
                f"cannot assume {self._role_arn}: {error_code(exc) or 'error'}", transient=retryable(exc)
            ) from None
        except BotoCoreError as exc:
            raise GroupLookupFailed(
                f"cannot assume {self._role_arn}: {type(exc).__name__}", transient=retryable(exc)
            ) from None
        creds, expires = assumed_credentials(credentials, now)
        if self._region:
            creds["region_name"] = self._region
        self._client = _Client(self._make("identitystore", creds), expires)
        return self._client.client


class _NotFound(Exception):
    """ResourceNotFoundException from GetUserId or GetGroupId (handled by the caller)."""
