"""Guardrails (DESIGN section 4): pure checks over facts the adapters gathered.

Every check fails closed: missing facts deny. The result is the full list of denials so an audit record
says everything that was wrong, not just the first thing.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sessiongate.core.identity import Identity, may_be_same, parse_identity
from sessiongate.core.model import AccessApproved, Denial
from sessiongate.core.slots import BindingMode
from sessiongate.settings import Settings

# Instance states in which a session can be started or soon could be.
USABLE_INSTANCE_STATES = frozenset({"pending", "running"})
# Scheduler fires at() schedules within a minute: tolerate that much early arrival.
CLOCK_TOLERANCE = timedelta(seconds=90)
# The roles IAM Identity Center provisions for permission sets (AWSReservedSSO_*). IAM answers
# UnmodifiableEntity to every write on them, TagRole included: they change only through their permission
# set (IAM Identity Center User Guide, "IAM roles created by IAM Identity Center").
IDENTITY_CENTER_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
# IAM tag values: [\p{L}\p{Z}\p{N}_.:/=+\-@]*, at most 256 characters (IAM API Reference, "Tag";
# botocore's tagValueType). Role session names may also contain "," ([\w+=,.@-]*: STS API Reference,
# "AssumeRole", RoleSessionName), which no tag value can hold.
TAG_VALUE_PUNCTUATION = frozenset("_.:/=+-@")
TAG_VALUE_MAX = 256


@dataclass(frozen=True)
class PrincipalFacts:
    arn: str
    name: str
    path: str
    kind: str  # user | role
    tags: Mapping[str, str] = field(default_factory=dict)
    id: str = ""  # UserId / RoleId (the first part of aws:userid)


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    state: str
    tags: Mapping[str, str] = field(default_factory=dict)
    ssm_managed: bool | None = None  # None: not checked


def check_approval(request: AccessApproved) -> list[Denial]:
    """Separation of duties: nobody approves their own access, and someone must have approved."""
    denials: list[Denial] = []
    if not request.approver_arns:
        denials.append(Denial("no_approvers", "no approver is recorded for this request"))
    requester = parse_identity(request.requester_arn)
    for approver_arn in request.approver_arns:
        approver = parse_identity(approver_arn)
        if approver is None:
            denials.append(
                Denial("approver_unknown", f"approver {approver_arn[:200]!r} is not an IAM/STS ARN")
            )
            continue
        if may_be_same(approver, requester):
            denials.append(Denial("self_approval", f"approver {approver.display} may be the requester"))
        operator = Identity(
            approver.partition, request.account, request.principal_type.value, request.principal_name
        )
        if may_be_same(approver, operator):
            denials.append(
                Denial("approver_is_operator", f"approver {approver.display} would receive the access")
            )
    return denials


def check_timing(request: AccessApproved, settings: Settings, now: datetime) -> list[Denial]:
    denials: list[Denial] = []
    if not 1 <= request.duration_minutes <= settings.max_validity_minutes:
        denials.append(
            Denial(
                "duration_exceeds_max",
                f"duration {request.duration_minutes} min is outside 1..{settings.max_validity_minutes}",
            )
        )
    if request.not_before - now > CLOCK_TOLERANCE:
        denials.append(Denial("not_yet_valid", "the approval starts in the future"))
    window = timedelta(minutes=settings.approval_start_window_minutes)
    if now - request.not_before > window:
        denials.append(
            Denial(
                "approval_stale",
                f"the approval was not used within {settings.approval_start_window_minutes} min",
            )
        )
    return denials


def check_principal(
    request: AccessApproved, principal: PrincipalFacts | None, settings: Settings
) -> list[Denial]:
    if principal is None:
        return [
            Denial(
                "principal_not_found",
                f"IAM {request.principal_type.value} {request.principal_name!r} does not exist",
            )
        ]
    denials: list[Denial] = []
    on_instance = binding_mode(principal, settings) is BindingMode.INSTANCE
    if not on_instance and principal.kind == "role" and principal.path.startswith(IDENTITY_CENTER_ROLE_PATH):
        denials.append(unmodifiable_denial(principal.name))
    if principal.path.startswith(settings.engine_role_path):
        denials.append(Denial("principal_is_engine", "SessionGate never grants access to its own roles"))
    if not any(principal.path.startswith(prefix) for prefix in settings.operator_path_prefixes):
        denials.append(Denial("principal_path_not_allowed", f"path {principal.path!r} is not allowed"))
    for pattern in settings.excluded_principals:
        if fnmatch.fnmatchcase(principal.name.lower(), pattern.lower()):
            denials.append(Denial("principal_excluded", f"{principal.name!r} matches excluded {pattern!r}"))
            break
    if settings.operator_required_tag is not None:
        key, value = settings.operator_required_tag
        if _tag(principal.tags, key) != value:
            denials.append(Denial("principal_not_operator", f"principal lacks tag {key}={value}"))
    if on_instance:
        if not request.bound_user_id:
            denials.append(
                Denial(
                    "instance_binding_unbindable",
                    "access bound to the instance goes to one person: for a role, only the requester's "
                    "own session of that role",
                )
            )
    elif is_shared_role(principal, settings) and not request.bound_user_id:
        if settings.bind_shared_role_sessions:
            denials.append(
                Denial(
                    "shared_role_unbindable", "a shared role is granted only to the requester's own session"
                )
            )
        else:
            denials.append(
                Denial(
                    "shared_role_refused",
                    f"{principal.name!r} looks shared: tagging it opens the instance to all",
                )
            )
    return denials


def unmodifiable_denial(name: str) -> Denial:
    return Denial(
        "principal_unmodifiable",
        f"IAM lets only AWS modify {name!r} (as it does IAM Identity Center's roles): "
        "it cannot carry SessionGate tags",
    )


def check_binding(request: AccessApproved) -> list[Denial]:
    """The session binding becomes an IAM tag value: it must be one IAM accepts, checked before any write."""
    value = request.bound_user_id
    if value is None or valid_tag_value(value):
        return []
    return [
        Denial(
            "session_name_untaggable",
            "the role session name has characters an IAM tag value cannot hold (such as ','): "
            "start the session under a name of letters, digits and _.:/=+-@ only",
        )
    ]


def valid_tag_value(value: str) -> bool:
    """Whether IAM accepts ``value`` as a tag value (letters, separators, numbers, ``_.:/=+-@``)."""
    return len(value) <= TAG_VALUE_MAX and all(
        unicodedata.category(c)[0] in "LZN" or c in TAG_VALUE_PUNCTUATION for c in value
    )


def is_shared_role(principal: PrincipalFacts, settings: Settings) -> bool:
    return principal.kind == "role" and any(
        fnmatch.fnmatchcase(principal.name.lower(), p.lower()) for p in settings.shared_role_patterns
    )


def is_identity_center_role(principal: PrincipalFacts) -> bool:
    return principal.kind == "role" and principal.path.startswith(IDENTITY_CENTER_ROLE_PATH)


def binding_mode(principal: PrincipalFacts | None, settings: Settings) -> BindingMode:
    """Where ``principal``'s slot tag goes under the stack's ``BindingMode``: ``auto`` binds IAM users
    and per-person roles on the principal, IAM Identity Center's roles (AWSReservedSSO_*, under
    /aws-reserved/sso.amazonaws.com/, which IAM refuses to tag) and the SharedRolePatterns roles on the
    instance. Never ``AUTO``."""
    mode = BindingMode(settings.binding_mode)
    if mode is not BindingMode.AUTO:
        return mode
    if principal is not None and (is_identity_center_role(principal) or is_shared_role(principal, settings)):
        return BindingMode.INSTANCE
    return BindingMode.PRINCIPAL


def bind_to_requester(request: AccessApproved, principal: PrincipalFacts, settings: Settings) -> str | None:
    """The ``aws:userid`` the grant is bound to, if any: for a shared role bound on the principal, the
    requester's own session of that role; bound on the instance, the person's ``aws:userid`` (an IAM
    user's UserId, or the requester's own session of the role: ``<RoleId>:<session name>``).

    Always derived from the requester and the principal as IAM reports it, never taken from the
    event: a ``bound_user_id`` in an event would otherwise pick who may use a shared role.
    """
    if binding_mode(principal, settings) is BindingMode.INSTANCE:
        if principal.kind == "user":
            return principal.id or None
        return _requester_session(request, principal)
    if not settings.bind_shared_role_sessions or not is_shared_role(principal, settings):
        return None
    return _requester_session(request, principal)


def _requester_session(request: AccessApproved, principal: PrincipalFacts) -> str | None:
    """``<RoleId>:<session name>`` of the requester's own session of the role ``principal``, if it is one."""
    requester = parse_identity(request.requester_arn)
    if (
        requester is None
        or requester.kind != "role"
        or requester.session is None
        or requester.name.lower() != principal.name.lower()
        or not principal.id
    ):
        return None
    return f"{principal.id}:{requester.session}"


def check_instance(
    request: AccessApproved, instance: InstanceFacts | None, settings: Settings
) -> list[Denial]:
    if instance is None:
        return [Denial("instance_not_found", f"instance {request.instance_id} does not exist")]
    denials: list[Denial] = []
    if instance.state not in USABLE_INSTANCE_STATES:
        denials.append(Denial("instance_not_usable", f"instance is {instance.state}"))
    if settings.instance_required_tag is not None:
        key, value = settings.instance_required_tag
        if _tag(instance.tags, key) != value:
            denials.append(Denial("instance_not_in_scope", f"instance lacks tag {key}={value}"))
    why = excluded_by_tag(instance.tags, settings)
    if why:
        denials.append(Denial("instance_excluded", why))
    # ``None``: not asked (the grant reads the instance once; the front doors ask when a request is made).
    if settings.require_ssm_managed and instance.ssm_managed is False:
        denials.append(Denial("instance_not_managed", "instance is not a managed node of Systems Manager"))
    return denials


def excluded_by_tag(tags: Mapping[str, str], settings: Settings) -> str | None:
    """Why the instance's tags exclude it from SessionGate (InstanceDeniedTag), or ``None``."""
    if settings.instance_denied_tag is not None:
        key, value = settings.instance_denied_tag
        if _tag(tags, key) == value:
            return f"instance carries tag {key}={value}"
    return None


def evaluate(
    request: AccessApproved,
    principal: PrincipalFacts | None,
    instance: InstanceFacts | None,
    settings: Settings,
    now: datetime,
) -> list[Denial]:
    denials = check_approval(request)
    denials += check_timing(request, settings, now)
    denials += check_principal(request, principal, settings)
    denials += check_binding(request)
    denials += check_instance(request, instance, settings)
    return denials


def _tag(tags: Mapping[str, str], key: str) -> str | None:
    lowered = key.lower()
    for k, v in tags.items():
        if k.lower() == lowered:
            return v
    return None
