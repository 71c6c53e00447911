"""Member accounts (AWS Organizations): act in another account through its SessionGate member role.

The engine runs in one account; each member account runs the member stack (member/template.yaml) whose
role trusts only the engine's roles (path ``/sessiongate/`` of the engine account) and asks for an
external id. Grants, revocations and drift repair use clients built from that role's credentials; the
ledger, schedules and notifications stay central.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from sessiongate.adapters.aws import (
    REFRESH_BEFORE,
    assumed_credentials,
    error_code,
    raises_service_failures,
)
from sessiongate.adapters.directory import Directory
from sessiongate.adapters.inventory import Inventory
from sessiongate.adapters.sessions import Sessions
from sessiongate.core.ports import MemberUnavailable as MemberUnavailable

# Errors that mean "the member role is missing, or does not trust us": a decision, not a retry.
UNAVAILABLE = {
    "AccessDenied",
    "AccessDeniedException",
    "NoSuchEntity",
    "InvalidClientTokenId",
    "RegionDisabledException",
}

# The request API acts in member accounts only to look up (instance tags, the principal) and to revoke
# early. The member role may also *tag*, so the request API narrows its session to reads and untagging:
# effective rights are the role's policy intersected with this session policy.
READ_AND_UNTAG_ONLY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadAndUntagOnly",
            "Effect": "Allow",
            "Action": [
                "iam:GetUser",
                "iam:GetRole",
                "iam:UntagUser",
                "iam:UntagRole",
                "ec2:DescribeInstances",
                # Instance binding: removing a slot tag from an instance (never setting one).
                "ec2:DeleteTags",
                "ssm:DescribeInstanceInformation",
                "ssm:DescribeSessions",
                "ssm:TerminateSession",
            ],
            "Resource": "*",
        }
    ],
}

# The Change Manager adapter only asks whether the change request's instance is a managed node: its
# session in a member account may read instances and nothing else (the member role may also tag).
READ_INSTANCES_ONLY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadInstancesOnly",
            "Effect": "Allow",
            "Action": ["ec2:DescribeInstances", "ssm:DescribeInstanceInformation"],
            "Resource": "*",
        }
    ],
}

ClientMaker = Callable[[str, dict[str, str] | None], Any]


@dataclass
class _Session:
    directory: Directory
    inventory: Inventory
    sessions: Sessions
    expires: datetime


@raises_service_failures
class MemberAccounts:
    def __init__(
        self,
        sts: Any,
        make: ClientMaker,
        *,
        partition: str,
        role_path: str,
        role_name: str,
        external_id: str,
        session_name: str = "sessiongate",
        session_policy: dict[str, Any] | None = None,
        tag_make: ClientMaker | None = None,
    ) -> None:
        self._sts = sts
        self._make = make
        # The member IAM and EC2 clients of the grant's tag calls (``aws.tag_client_with``), else ``make``'s.
        self._tag_make = tag_make
        self._partition = partition
        self._role_path = role_path
        self._role_name = role_name
        self._external_id = external_id
        self._session_name = session_name
        self._session_policy = session_policy
        self._cache: dict[str, _Session] = {}

    def role_arn(self, account: str) -> str:
        return f"arn:{self._partition}:iam::{account}:role{self._role_path}{self._role_name}"

    def adapters(self, account: str, now: datetime) -> tuple[Directory, Inventory, Sessions]:
        cached = self._cache.get(account)
        if cached is None or cached.expires - REFRESH_BEFORE <= now:
            cached = self._assume(account)
            self._cache[account] = cached
        return cached.directory, cached.inventory, cached.sessions

    def _assume(self, account: str) -> _Session:
        kwargs: dict[str, Any] = {"RoleArn": self.role_arn(account), "RoleSessionName": self._session_name}
        if self._external_id:
            kwargs["ExternalId"] = self._external_id
        if self._session_policy is not None:
            kwargs["Policy"] = json.dumps(self._session_policy)
        try:
            credentials = self._sts.assume_role(**kwargs)["Credentials"]
        except ClientError as exc:
            if error_code(exc) in UNAVAILABLE:
                raise MemberUnavailable(f"cannot assume {kwargs['RoleArn']}: {error_code(exc)}") from exc
            raise
        creds, expires = assumed_credentials(credentials, datetime.now(UTC))
        ssm = self._make("ssm", creds)
        return _Session(
            directory=Directory(
                self._make("iam", creds), self._tag_make("iam", creds) if self._tag_make else None
            ),
            inventory=Inventory(
                self._make("ec2", creds), ssm, self._tag_make("ec2", creds) if self._tag_make else None
            ),
            sessions=Sessions(ssm),
            expires=expires,
        )
