"""The signed caller of the request API (API Gateway's IAM authorizer), and who counts as the same caller.

Identities always come from the signature, never from a body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sessiongate.access_requests.errors import NotAllowed, Unauthenticated
from sessiongate.core.identity import Identity, PrincipalType, parse_identity


@dataclass(frozen=True)
class Caller:
    """The signed caller, as API Gateway's IAM authorizer saw it."""

    arn: str
    identity: Identity
    principal_type: PrincipalType
    principal_name: str

    @property
    def account(self) -> str:
        return self.identity.account


def caller_from_context(request_context: object) -> Caller:
    """The caller of a REST API request (Lambda proxy integration): ``requestContext.identity.userArn``.

    IAM users sign as ``arn:...:iam::A:user/path/name``; role sessions as
    ``arn:...:sts::A:assumed-role/Role/session`` (the principal that receives access is the role).
    Anything else (root, federated users, no IAM identity) cannot use the native path.

    With ``AWS_IAM`` authorization API Gateway fills ``requestContext.identity`` with the signer's
    ``accessKey``, ``accountId``, ``caller``, ``user``, ``userArn`` and ``principalOrgId`` (AWS doc
    "Lambda proxy integrations in API Gateway", input format; unsigned calls never reach the function:
    the method requires the signature). The request does not carry ``sts:SourceIdentity``: people are told
    apart by :func:`identity.may_be_same` on the ARN. ``identity`` is the only place the caller is read
    from (``authorizer`` is a Lambda or Cognito authorizer's, never set here).
    """
    signer: Mapping[str, object] = {}
    if isinstance(request_context, Mapping) and isinstance(request_context.get("identity"), Mapping):
        signer = request_context["identity"]
    arn = signer.get("userArn")
    if not isinstance(arn, str) or not arn:
        raise Unauthenticated("unauthenticated", "the request carries no IAM identity (sign it with SigV4)")
    identity = parse_identity(arn)
    if identity is None or identity.kind not in ("user", "role"):
        raise NotAllowed(
            "unsupported_caller",
            "only IAM users and IAM role sessions can use SessionGate requests (not root or federated users)",
        )
    if identity.kind == "role" and identity.session is None:
        raise NotAllowed("unsupported_caller", "a role must call as an assumed-role session")
    account = signer.get("accountId")
    if isinstance(account, str) and account and account != identity.account:
        raise NotAllowed("unsupported_caller", "the caller's account does not match its ARN")
    return Caller(arn, identity, PrincipalType(identity.kind), identity.name)


def same_caller(a: str, b: str) -> bool:
    """Exactly the same principal (and role session): who may act *as* the requester."""
    x, y = parse_identity(a), parse_identity(b)
    if x is None or y is None:
        return False
    return (x.partition, x.account, x.kind, x.name.lower(), x.session) == (
        y.partition,
        y.account,
        y.kind,
        y.name.lower(),
        y.session,
    )
