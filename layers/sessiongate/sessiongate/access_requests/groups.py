"""Approvers (and requesters) named by IAM Identity Center group in the approval policy.

A level's ``approvers`` (and a rule's ``requesters``) may list ``{"identity_center_group": "NAME"}``
next to ARN patterns. A caller belongs to such a group only as an Identity Center session: an
assumed-role session of an ``AWSReservedSSO_*`` role, whose session name IAM Identity Center sets to
the user's name (:data:`sessiongate.core.identity.IDC_ROLE_PREFIX`). The user is then looked up in the
identity store by that name and checked against the groups (:class:`Membership`, the identity-store
adapter); any caller that is not an Identity Center session is no group's member and costs no lookup.

Only in the accounts SessionGate serves (the engine account and ``MemberAccounts``): there the SCP
sample (docs/scp-protect-front-doors.json) keeps anyone but IAM Identity Center from creating an
``AWSReservedSSO_*`` role. Any other account of the organization (the resource policy admits them all),
the management account above all (SCPs never apply to it), may hold a look-alike role whose session
name its creator picks: such a session is no Identity Center person, in no group (review B, H1).

Fail closed: a lookup that cannot answer (no identity store configured, the read role cannot be assumed,
access denied, throttled, a group that does not exist) raises :class:`GroupLookupFailed`, a refusal
(the request API answers 503 with its reason; the grant's verifier denies), never "not a member" and
never "a member". Separation of duties does not depend on groups: a group approver is still refused
on their own request (:func:`sessiongate.access_requests.policy.check_not_involved` on the ARNs).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from sessiongate.access_requests.errors import Unavailable
from sessiongate.core.identity import is_idc_role, parse_identity

if TYPE_CHECKING:
    from sessiongate.access_requests.policy import ApprovalPolicy

GROUP_KEY = "identity_center_group"
# Identity Store group DisplayName: 1-1024 characters (Identity Store API Reference, "Group"); SessionGate
# accepts printable names of up to 128 characters (no control characters).
GROUP_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


class GroupLookupFailed(Unavailable):
    """The identity store did not answer whether a caller is in a group: refuse (fail closed).

    ``transient``: the failure is one a later try can clear (throttling, a 5xx, a timeout:
    :func:`sessiongate.adapters.aws.retryable`); the grant then raises for a retry of its event instead
    of denying (the request API answers 503 either way). Anything else (access denied, no identity store
    configured, a group the store does not have) is a configuration problem a retry would meet again."""

    def __init__(self, problem: str, *, transient: bool = False) -> None:
        super().__init__(
            "identity_store_unavailable",
            f"SessionGate cannot check Identity Center group membership ({problem}): refused; "
            "tell the SessionGate admins",
        )
        self.problem = problem
        self.transient = transient


class Membership(Protocol):
    """The identity store as the policy asks it (the adapter; a fake in the tests)."""

    def is_member(self, user_name: str, groups: Sequence[str]) -> bool:
        """Whether the Identity Center user ``user_name`` is in one of ``groups`` (by display name);
        raises :class:`GroupLookupFailed` when it cannot tell."""
        ...


class NoIdentityStore:
    """No identity store configured: every group question fails closed, with the reason."""

    def is_member(self, user_name: str, groups: Sequence[str]) -> bool:
        raise GroupLookupFailed(
            "no identity store is configured: set the stack's IdentityStoreId and IdentityStoreRoleArn"
        )


def idc_user(arn: str, served: Collection[str]) -> str | None:
    """The Identity Center user name behind ``arn`` (an ``AWSReservedSSO_*`` role session in one of the
    ``served`` accounts), else None."""
    identity = parse_identity(arn)
    if identity is None or identity.kind != "role" or identity.session is None:
        return None
    if identity.account not in served:
        return None  # a look-alike role where no SCP reserves the name (see the module's docstring)
    return identity.session if is_idc_role(identity.name) else None


def in_groups(
    membership: Membership | None, arn: str, groups: Sequence[str], served: Collection[str]
) -> bool:
    """Whether the caller ``arn`` is in one of ``groups`` (False without a lookup when it is not an
    Identity Center session of a ``served`` account, or when no group is named)."""
    if not groups:
        return False
    user = idc_user(arn, served)
    if user is None:
        return False
    return (membership or NoIdentityStore()).is_member(user, groups)


def split_principals(
    value: object, where: str, *, required: bool, max_items: int
) -> tuple[list[object], list[str]]:
    """A principal list of the policy split into its ARN patterns (checked by the caller) and its group
    names; raises ``ValueError`` with the place for an entry that is neither."""
    if value is None and not required:
        return [], []
    if not isinstance(value, list) or not (1 if required else 0) <= len(value) <= max_items:
        raise ValueError(
            f"{where} must be a list of up to {max_items} ARN patterns (starting with 'arn:') or "
            f"{{{GROUP_KEY}: NAME}} entries"
        )
    patterns: list[object] = []
    groups: list[str] = []
    for index, entry in enumerate(value):
        if isinstance(entry, Mapping):
            name = entry.get(GROUP_KEY)
            if set(entry) != {GROUP_KEY} or not isinstance(name, str) or not GROUP_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"{where}[{index}] must be {{{GROUP_KEY}: NAME}} with the group's display name "
                    "(1..128 printable characters) and no other key"
                )
            groups.append(name)
        else:
            patterns.append(entry)
    return patterns, groups


def bind(policy: ApprovalPolicy, membership: Membership | None, served: Collection[str]) -> ApprovalPolicy:
    """``policy`` with ``membership`` answering its group questions (every level and rule), for
    Identity Center sessions of the ``served`` accounts only (the engine's and ``MemberAccounts``)."""
    accounts = frozenset(a for a in served if a)
    rules = tuple(
        replace(
            rule,
            membership=membership,
            served=accounts,
            levels=tuple(replace(level, membership=membership, served=accounts) for level in rule.levels),
        )
        for rule in policy.rules
    )
    return replace(policy, rules=rules)


def group_names(groups: Sequence[str]) -> list[str]:
    """Groups as views and notifications list them next to ARN patterns: ``identity_center_group:NAME``."""
    return [f"{GROUP_KEY}:{g}" for g in groups]
