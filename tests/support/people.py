"""The people and the approval policy of the native-API tests, and a request record (no moto, no boto3)."""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.core.identity import PrincipalType
from tests.support.values import ACCOUNT

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
# An IAM Identity Center permission-set role: its session names are IdC user names, so Bob and Carol
# are two people (two session names of an ordinary role could be one person, see identity.may_be_same).
APPROVERS_ROLE = "AWSReservedSSO_Approvers_0123456789abcdef"
BOB = f"arn:aws:sts::{ACCOUNT}:assumed-role/{APPROVERS_ROLE}/bob@example.com"
CAROL = f"arn:aws:sts::{ACCOUNT}:assumed-role/{APPROVERS_ROLE}/carol@example.com"
DAVE = f"arn:aws:iam::{ACCOUNT}:user/dave"
SECURITY = f"arn:aws:sts::{ACCOUNT}:assumed-role/Security/sam@example.com"
EVE = f"arn:aws:iam::{ACCOUNT}:user/eve"

# Level 1 of "prod" needs two approvers: IdC users of the Approvers permission set (or dave);
# level 2 one Security session.
POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {
            "name": "prod",
            "instances": {"tags": {"Environment": "prod"}},
            "levels": [
                {
                    "name": "leads",
                    "approvers": [f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}", DAVE],
                    "min_approvals": 2,
                },
                {"name": "security", "approvers": [f"arn:aws:iam::{ACCOUNT}:role/Security"]},
            ],
            "max_duration_minutes": 30,
            "break_glass": {"enabled": True, "max_duration_minutes": 15, "min_reason_length": 20},
        },
        {
            "name": "default",
            "levels": [{"name": "ops", "approvers": [f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS_ROLE}", DAVE]}],
        },
    ],
}


def make_request(**changes: Any) -> Request:
    """A request record for pure tests: alice's PENDING 10-minute request under rule "prod"."""
    base = Request(
        request_id="0123456789abcdef0123456789abcdef",
        status=RequestStatus.PENDING,
        account=ACCOUNT,
        instance_id="i-0a1b2c3d4e5f60718",
        principal_type=PrincipalType.USER,
        principal_name="alice",
        principal_arn=ALICE,
        requester_arn=ALICE,
        duration_minutes=10,
        reason="x",
        created_at="2026-11-24T09:00:00Z",
        pending_expires_at="2026-11-24T10:00:00Z",
        rule="prod",
    )
    return Request(**{**base.__dict__, **changes})
