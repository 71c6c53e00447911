"""IAM identities: validation of names and ARNs, and the "is this the same person?" test.

Separation of duties depends on :func:`may_be_same`, so it is deliberately conservative: when two
identities *could* be the same person (a role and one of its sessions, two sessions of one ordinary
role, same-named principals in two accounts, an unparseable ARN) it says yes, and the caller denies.

One rule for every account: the native API gives a caller in SessionGate's account the access of the
principal of the same type and name in a member account, so SessionGate treats same-named principals
as one person whatever their accounts (an identity outside the stack's accounts gains nothing from
being told apart, so the account is simply not compared).
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


IDC_ROLE_PREFIX = "AWSReservedSSO_"
"""Role names of IAM Identity Center permission sets (``AWSReservedSSO_<PermissionSet>_<hash>``).

A role session name is chosen by whoever calls ``sts:AssumeRole``, so for an ordinary role it says
nothing about who the caller is: one person can assume the role twice under two names. Only for the
roles IAM Identity Center creates for permission sets does IdC itself set the session name, to the
IdC user name, so there (and only there) the session name identifies a person, across permission sets
and accounts. An STS ARN carries no role path, so the name prefix is all :func:`may_be_same` can see:
keep ordinary roles out of this namespace (SCP: deny ``iam:CreateRole`` on ``role/AWSReservedSSO_*``).
"""


def is_idc_role(name: str) -> bool:
    """True for the name of an IAM Identity Center permission-set role (see :data:`IDC_ROLE_PREFIX`)."""
    return name.startswith(IDC_ROLE_PREFIX)


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
    # ``sts:SourceIdentity`` of the session, when the caller's channel reports it (see README "Who is the
    # same person": neither API Gateway's IAM authorizer context nor SSM's approval records carry it).
    source_identity: str | None = None

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


# Who can act as any principal: the root user (anything in its account) and federated users
# (``sts:GetFederationToken`` lets its caller, an IAM user or root, pick any name). Through the same-name
# rule across accounts, "anyone in the account" is "maybe anyone".
ANYONE_KINDS = frozenset({"root", "federated-user"})


def person_names(identity: Identity) -> frozenset[str]:
    """Names that identify the person behind ``identity`` (lower case).

    A user's name; a role session's name (for IAM Identity Center roles IdC sets it to the user name;
    for ordinary roles the assumer picks it, so an equal name *may* be the same person, e.g. a trust
    policy requiring ``sts:RoleSessionName`` = ``${aws:username}``); the ``sts:SourceIdentity`` when
    known (set once, kept through role chaining, cannot be changed by the session).
    """
    names = set()
    if identity.kind == "user":
        names.add(identity.name.lower())
    if identity.kind == "role" and identity.session is not None:
        names.add(identity.session.lower())
    if identity.source_identity:
        names.add(identity.source_identity.lower())
    return frozenset(names)


def may_be_same(a: Identity | None, b: Identity | None) -> bool:
    """True unless ``a`` and ``b`` are provably different people (fail closed). Accounts are not compared.

    - unparseable, or either is a root user or a federated user: may be the same;
    - they share a person name (:func:`person_names`: a user name, a role session name, a source
      identity): may be the same (user ``alice`` and ``assumed-role/Approver/alice``, two IdC
      permission sets of ``alice@example.com``, two sessions with source identity ``alice``);
    - two sessions of IAM Identity Center roles with different session names: different people;
    - two identities of one ordinary role name (bare or sessions, whatever the session names): may be
      the same, since whoever assumes the role picks the session name;
    - one user name (in any account): may be the same;
    - anything else (different users, different roles, a user and a role): different.
    """
    if a is None or b is None:
        return True
    if a.partition != b.partition:
        return False
    if a.kind in ANYONE_KINDS or b.kind in ANYONE_KINDS:
        return True
    if person_names(a) & person_names(b):
        return True
    if (
        a.kind == b.kind == "role"
        and a.session is not None
        and b.session is not None
        and is_idc_role(a.name)
        and is_idc_role(b.name)
    ):
        return False  # IdC set both session names, and they differ
    # Same user, or same role (its sessions may all be one person): maybe the same.
    return a.kind == b.kind and a.name.lower() == b.name.lower()


def same_principal(a: Identity, b: Identity) -> bool:
    """``b`` is the principal ``a`` or one of its sessions (same account): whose sessions a grant opened."""
    return (a.partition, a.account, a.kind, a.name.lower()) == (
        b.partition,
        b.account,
        b.kind,
        b.name.lower(),
    )


def person_key(identity: Identity) -> str:
    """Who is behind ``identity``, as :func:`may_be_same` tells people apart (for per-person quotas).

    The source identity when known; an IAM Identity Center user is one person across permission sets
    and accounts (the session name); every session of an ordinary role counts as the role; a user is
    itself. Accounts are not part of the key (one person across the stack's accounts).
    """
    if identity.source_identity:
        return f"{identity.partition}:person:{identity.source_identity.lower()}"
    if identity.kind == "role" and identity.session is not None and is_idc_role(identity.name):
        return f"{identity.partition}:idc:{identity.session.lower()}"
    return f"{identity.partition}:{identity.kind}:{identity.name.lower()}"


def principal_arn(partition: str, account: str, kind: PrincipalType, name: str, path: str = "/") -> str:
    return f"arn:{partition}:iam::{account}:{kind.value}{path}{name}"
