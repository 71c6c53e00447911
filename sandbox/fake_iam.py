"""IAM rules moto does not enforce, added to moto's IAM backend for the sandbox and the test stack alike.

``install()`` wraps moto's ``IAMBackend`` methods, so every client of the process (the sandbox's, the
test stack's, member-account clients built from assumed credentials) gets the same answers. The
errors are moto service exceptions: moto serializes them as IAM's XML error responses, with the HTTP
status botocore's IAM model declares for the code, and botocore parses them into its modeled
exception classes (``client.exceptions.UnmodifiableEntityException``) like a real answer.

1. Roles of IAM Identity Center (path ``/aws-reserved/sso.amazonaws.com/``, names ``AWSReservedSSO_*``)
   are modifiable only by AWS: IAM answers ``UnmodifiableEntity`` ("Cannot perform the operation on the
   protected role '<name>' - this role is only modifiable by AWS", HTTP 400) to writes on them (IAM
   Identity Center User Guide, "IAM roles created by IAM Identity Center"; AWS re:Post Knowledge Center,
   "How do I resolve the IAM error 'Cannot perform the operation on the protected role AWSReservedSSO'?").
   botocore's model does not list the error for TagRole/UntagRole, but it is a service-wide error shape
   (``UnmodifiableEntityException``) that botocore maps for any operation; tags are changed only through
   the permission set, so IAM refuses TagRole and UntagRole on these roles like any other write. Every
   other write to such a role is refused the same way (policies attached or inline, trust policy,
   boundary, description, deletion): only IAM Identity Center changes it, which the sandbox plays inside
   :func:`as_identity_center` (a permission set's policies provisioned into the account).
2. Tag values must match ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`` (botocore's ``tagValueType``; IAM API
   Reference, "Tag"). moto checks keys only; IAM answers ``ValidationError`` (HTTP 400) for a value
   outside the pattern, in the message format moto already uses for keys.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from moto.iam.exceptions import IAMException, ValidationError
from moto.iam.models import IAMBackend

RESERVED_SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
TAG_VALUE_PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
_TAG_VALUE_PUNCTUATION = frozenset("_.:/=+-@")
# IAMBackend writes to a role (each takes ``role_name``) besides TagRole/UntagRole, refused on protected
# roles like them.
ROLE_WRITES = (
    "attach_role_policy",
    "detach_role_policy",
    "put_role_policy",
    "delete_role_policy",
    "update_role",
    "update_role_description",
    "update_assume_role_policy",
    "put_role_permissions_boundary",
    "delete_role_permissions_boundary",
    "delete_role",
)
_identity_center = False  # True while the sandbox plays IAM Identity Center provisioning a role


@contextlib.contextmanager
def as_identity_center() -> Iterator[None]:
    """Write to protected roles as IAM Identity Center itself does (sandbox setup only)."""
    global _identity_center
    saved, _identity_center = _identity_center, True
    try:
        yield
    finally:
        _identity_center = saved


class UnmodifiableEntity(IAMException):
    code = "UnmodifiableEntity"

    def __init__(self, role_name: str) -> None:
        super().__init__(
            f"Cannot perform the operation on the protected role '{role_name}' "
            "- this role is only modifiable by AWS"
        )


def is_protected_role(path: str) -> bool:
    """Roles IAM lets only AWS modify: those IAM Identity Center provisions."""
    return path.startswith(RESERVED_SSO_PATH)


def valid_tag_value(value: str) -> bool:
    """Whether ``value`` matches IAM's ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`` (letters, separators,
    numbers and ``_ . : / = + - @``)."""
    return (
        all(unicodedata.category(c)[0] in "LZN" or c in _TAG_VALUE_PUNCTUATION for c in value)
        and len(value) <= 256
    )


def _check_values(tags: list[dict[str, str]]) -> None:
    for index, tag in enumerate(tags, start=1):
        if not valid_tag_value(tag["Value"]):
            raise ValidationError(
                f"1 validation error detected: Value '{tag['Value']}' at 'tags.{index}.member.value' "
                f"failed to satisfy constraint: Member must satisfy regular expression pattern: "
                f"{TAG_VALUE_PATTERN}"
            )


def install() -> None:
    """Wrap moto's IAM backend once per process (idempotent)."""
    if getattr(IAMBackend, "_sessiongate_rules", False):
        return
    tag_role, untag_role, tag_user = IAMBackend.tag_role, IAMBackend.untag_role, IAMBackend.tag_user

    @functools.wraps(tag_role)
    def guarded_tag_role(self: IAMBackend, role_name: str, tags: list[dict[str, str]]) -> None:
        _refuse_protected(self, role_name)
        _check_values(tags)
        tag_role(self, role_name, tags)

    @functools.wraps(untag_role)
    def guarded_untag_role(self: IAMBackend, role_name: str, tag_keys: list[str]) -> None:
        _refuse_protected(self, role_name)
        untag_role(self, role_name, tag_keys)

    @functools.wraps(tag_user)
    def guarded_tag_user(self: IAMBackend, name: str, tags: list[dict[str, str]]) -> None:
        _check_values(tags)
        tag_user(self, name, tags)

    for name in ROLE_WRITES:
        setattr(IAMBackend, name, _guarded_write(getattr(IAMBackend, name)))
    IAMBackend.tag_role = guarded_tag_role  # type: ignore[method-assign]
    IAMBackend.untag_role = guarded_untag_role  # type: ignore[method-assign]
    IAMBackend.tag_user = guarded_tag_user  # type: ignore[method-assign]
    IAMBackend._sessiongate_rules = True  # type: ignore[attr-defined]


def _guarded_write(write: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(write)

    @functools.wraps(write)
    def guarded(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        _refuse_protected(self, signature.bind(self, *args, **kwargs).arguments["role_name"])
        return write(self, *args, **kwargs)

    return guarded


def _refuse_protected(backend: Any, role_name: str) -> None:
    role = backend.get_role(role_name)  # NoSuchEntity first, as IAM answers for a missing role
    if is_protected_role(role.path) and not _identity_center:
        raise UnmodifiableEntity(role.name)
