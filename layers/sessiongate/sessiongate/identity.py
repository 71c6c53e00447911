"""IAM identities: validation of names and ARNs, and the "is this the same person?" test.

Separation of duties depends on :func:`may_be_same`, so it is deliberately conservative: when two
identities *could* be the same principal (a role and one of its sessions, an unparseable ARN) it says
yes, and the caller denies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ACCOUNT_RE = re.compile(r"^\d{12}$")
# IAM user and role names: 1-64 characters of [\w+=,.@-] (IAM API reference, CreateUser/CreateRole).
PRINCIPAL_NAME_RE = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
# EC2 instance ids: i- followed by 8 or 17 lowercase hex digits.
INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):(?P<service>iam|sts)::(?P<account>\d{12}):"
    r"(?P<resource>[A-Za-z0-9+=,.@_/:-]{1,1600})$"
)


class PrincipalType(StrEnum):
    USER = "user"
    ROLE = "role"

    @classmethod
    def parse(cls, value: object) -> PrincipalType:
        if not isinstance(value, str) or value.strip().lower() not in {"user", "role"}:
            raise ValueError(f"principal type must be 'user' or 'role', got {value!r}")
        return cls(value.strip().lower())


@dataclass(frozen=True)
class Identity:
    """A parsed IAM/STS identity. ``session`` is set for assumed-role sessions only."""

    partition: str
    account: str
    kind: str  # user | role | root | federated-user | other
    name: str
    session: str | None = None

    @property
    def display(self) -> str:
        base = f"{self.kind}/{self.name}"
        return f"{base}/{self.session}" if self.session else base


def parse_identity(arn: str) -> Identity | None:
    """Parse an IAM user/role ARN or an STS assumed-role/federated ARN; ``None`` when it is neither."""
    match = _ARN_RE.match(arn) if isinstance(arn, str) else None
    if not match:
        return None
    partition, service, account, resource = match.group("partition", "service", "account", "resource")
    if service == "iam":
        if resource == "root":
            return Identity(partition, account, "root", "root")
        kind, _, rest = resource.partition("/")
        if kind not in ("user", "role") or not rest:
            return None
        # The ARN carries the path: the name is the last element.
        return Identity(partition, account, kind, rest.rsplit("/", 1)[-1])
    kind, _, rest = resource.partition("/")
    if kind == "assumed-role":
        role, _, session = rest.partition("/")
        if not role or not session:
            return None
        return Identity(partition, account, "role", role, session)
    if kind == "federated-user" and rest:
        return Identity(partition, account, "federated-user", rest)
    return None


def may_be_same(a: Identity | None, b: Identity | None) -> bool:
    """True unless ``a`` and ``b`` are provably different principals (fail closed)."""
    if a is None or b is None:
        return True
    if a.account != b.account or a.partition != b.partition:
        return False
    if a.kind == "root" or b.kind == "root":
        # The root user can act as anything in its account.
        return True
    if a.kind != b.kind or a.name.lower() != b.name.lower():
        return False
    # Same user, or same role: two *named* sessions of one role are two different people
    # (e.g. IAM Identity Center users sharing a permission-set role); a bare role is all of them.
    if a.session is None or b.session is None:
        return True
    return a.session == b.session


def principal_arn(partition: str, account: str, kind: PrincipalType, name: str, path: str = "/") -> str:
    return f"arn:{partition}:iam::{account}:{kind.value}{path}{name}"
