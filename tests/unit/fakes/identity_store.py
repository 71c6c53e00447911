"""IAM Identity Center's identity store (the three reads SessionGate makes) and STS AssumeRole, in memory.

:class:`FakeIdentityStore` stands in for a boto3 ``identitystore`` client: ``get_user_id`` (unique
attribute ``userName``), ``get_group_id`` (unique attribute ``DisplayName``) and ``is_member_in_groups``.
Every request is validated against botocore's identitystore model (``validate_parameters``: required
members, lengths, patterns are not checked by botocore, so the store id and group ids are checked
against the patterns of the Identity Store API Reference here), every answer is checked against the
operation's output shape, and errors are botocore ``ClientError``s with the codes the model declares:
``ResourceNotFoundException`` for an unknown user or group, ``AccessDeniedException``,
``ThrottlingException`` (``fail``). ``tests/integration/test_identity_store_contract.py`` runs the
same questions against moto's identitystore and the adapter.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from sessiongate.clock import Clock

STORE_ID = "d-1234567890"
READER_ROLE = "arn:aws:iam::210987654321:role/sessiongate/SessionGateIdentityStoreReader"
# Identity Store API Reference: IdentityStoreId and the ids of users and groups.
STORE_ID_RE = re.compile(r"^d-[0-9a-f]{10}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RESOURCE_ID_RE = re.compile(
    r"^([0-9a-f]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$"
)


@functools.cache
def _model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("identitystore")


def _error(code: str, operation: str, message: str) -> ClientError:
    """The error as botocore raises it, with the HTTP status the Identity Store API Reference gives each
    (e.g. "GetUserId", Errors: InternalServerException 500, every other one 400)."""
    declared = {s.name for s in _model().operation_model(operation).error_shapes}
    assert code in declared, f"{operation} does not declare {code}"
    status = 500 if code == "InternalServerException" else 400
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def _check_request(operation: str, params: dict[str, Any]) -> None:
    from botocore.validate import validate_parameters

    validate_parameters(params, _model().operation_model(operation).input_shape)
    assert STORE_ID_RE.match(params["IdentityStoreId"]), params["IdentityStoreId"]
    for group_id in params.get("GroupIds", []):
        assert RESOURCE_ID_RE.match(group_id), group_id
    assert len(params.get("GroupIds", [None])) <= 100  # IsMemberInGroups: 1..100 GroupIds


def _check_answer(operation: str, answer: dict[str, Any]) -> dict[str, Any]:
    shape = _model().operation_model(operation).output_shape
    _fits(answer, shape, operation)
    return answer


def _fits(value: Any, shape: Any, path: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        for key, sub in value.items():
            assert key in shape.members, f"{path}.{key} is not in the model"
            _fits(sub, shape.members[key], f"{path}.{key}")
    elif kind == "list":
        assert isinstance(value, list), path
        for index, item in enumerate(value):
            _fits(item, shape.member, f"{path}[{index}]")
    elif kind == "string":
        assert isinstance(value, str), path
        pattern = shape.metadata.get("pattern")
        assert pattern is None or re.match(pattern, value), f"{path}: {value!r} !~ {pattern}"
    elif kind == "boolean":
        assert isinstance(value, bool), path


class FakeIdentityStore:
    """One identity store's users, groups and memberships, read as the identitystore client reads them."""

    def __init__(self, store_id: str = STORE_ID) -> None:
        self.store_id = store_id
        self.users: dict[str, str] = {}  # user name -> UserId
        self.groups: dict[str, str] = {}  # display name -> GroupId
        self.memberships: set[tuple[str, str]] = set()  # (UserId, GroupId)
        self.calls: list[str] = []
        self.fail: dict[str, str] = {}  # operation -> error code it answers (every time)

    def add_user(self, name: str) -> str:
        return self.users.setdefault(name, str(uuid.uuid4()))

    def add_group(self, name: str, members: Iterable[str] = ()) -> str:
        group_id = self.groups.setdefault(name, f"{uuid.uuid4().hex[:10]}-{uuid.uuid4()}")
        for member in members:
            self.memberships.add((self.add_user(member), group_id))
        return group_id

    def remove_member(self, user: str, group: str) -> None:
        self.memberships.discard((self.users[user], self.groups[group]))

    def _enter(self, operation: str, params: dict[str, Any]) -> None:
        _check_request(operation, params)
        self.calls.append(operation)
        if operation in self.fail:
            raise _error(self.fail[operation], operation, f"{operation} failed (injected)")
        if params["IdentityStoreId"] != self.store_id:
            raise _error("ResourceNotFoundException", operation, "IDENTITY_STORE not found.")

    def get_user_id(self, **params: Any) -> dict[str, Any]:
        self._enter("GetUserId", params)
        attribute = params["AlternateIdentifier"]["UniqueAttribute"]
        assert attribute["AttributePath"] == "userName"
        user_id = self.users.get(attribute["AttributeValue"])
        if user_id is None:
            raise _error("ResourceNotFoundException", "GetUserId", "USER not found.")
        return _check_answer("GetUserId", {"UserId": user_id, "IdentityStoreId": self.store_id})

    def get_group_id(self, **params: Any) -> dict[str, Any]:
        self._enter("GetGroupId", params)
        attribute = params["AlternateIdentifier"]["UniqueAttribute"]
        assert attribute["AttributePath"] == "DisplayName"
        group_id = self.groups.get(attribute["AttributeValue"])
        if group_id is None:
            raise _error("ResourceNotFoundException", "GetGroupId", "GROUP not found.")
        return _check_answer("GetGroupId", {"GroupId": group_id, "IdentityStoreId": self.store_id})

    def is_member_in_groups(self, **params: Any) -> dict[str, Any]:
        self._enter("IsMemberInGroups", params)
        user_id = params["MemberId"]["UserId"]
        results = [
            {
                "GroupId": g,
                "MemberId": {"UserId": user_id},
                "MembershipExists": (user_id, g) in self.memberships,
            }
            for g in params["GroupIds"]
        ]
        return _check_answer("IsMemberInGroups", {"Results": results})


class FakeSts:
    """STS AssumeRole of the identity-store read role: temporary credentials valid one hour."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.assumed: list[dict[str, Any]] = []
        self.denied = False

    def assume_role(self, **params: Any) -> dict[str, Any]:
        import botocore.session
        from botocore.validate import validate_parameters

        model = botocore.session.get_session().get_service_model("sts")
        validate_parameters(params, model.operation_model("AssumeRole").input_shape)
        self.assumed.append(params)
        if self.denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "AssumeRole")
        n = len(self.assumed)
        return {
            "Credentials": {
                "AccessKeyId": f"ASIA{n:016d}",
                "SecretAccessKey": "secret",
                "SessionToken": f"token-{n}",
                "Expiration": self.clock.now() + timedelta(hours=1),
            }
        }


class ClientMaker:
    """``make(service, credentials)``: the fake identity store, remembering the credentials it got."""

    def __init__(self, store: FakeIdentityStore) -> None:
        self.store = store
        self.credentials: list[dict[str, str] | None] = []

    def __call__(self, service: str, credentials: dict[str, str] | None) -> Any:
        assert service == "identitystore"
        self.credentials.append(credentials)
        return self.store
