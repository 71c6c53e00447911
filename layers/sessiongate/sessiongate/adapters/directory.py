"""IAM: read principals, set and remove SessionGate's slot tags (and nothing else)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sessiongate.adapters.aws import raises_service_failures
from sessiongate.core.guardrails import PrincipalFacts
from sessiongate.core.identity import PrincipalType
from sessiongate.core.ports import PrincipalGone as PrincipalGone
from sessiongate.core.ports import PrincipalUnmodifiable as PrincipalUnmodifiable
from sessiongate.core.ports import TagLimitExceeded as TagLimitExceeded


@raises_service_failures
class Directory:
    def __init__(self, iam: Any, tagger: Any = None) -> None:
        """``tagger``: the IAM client for ``tag`` (bounded in time: ``aws.TAG_CALL_CONFIG``), else ``iam``."""
        self._iam = iam
        self._tagger = tagger if tagger is not None else iam

    def get_principal(self, kind: PrincipalType, name: str) -> PrincipalFacts | None:
        try:
            if kind is PrincipalType.USER:
                entity = self._iam.get_user(UserName=name)["User"]
            else:
                entity = self._iam.get_role(RoleName=name)["Role"]
        except self._iam.exceptions.NoSuchEntityException:
            return None
        # GetUser/GetRole return the principal's tags (at most 50): no ListTags call needed.
        tags = {t["Key"]: t["Value"] for t in entity.get("Tags", [])}
        return PrincipalFacts(
            arn=entity["Arn"],
            name=entity.get("UserName") or entity.get("RoleName") or name,
            path=entity.get("Path", "/"),
            kind=kind.value,
            tags=tags,
            id=entity.get("UserId") or entity.get("RoleId") or "",
        )

    def all_principals(self) -> list[PrincipalFacts]:
        """Every IAM user and role of the account with its tags: GetAccountAuthorizationDetails pages
        of up to 1,000 entities (IAM API Reference, "GetAccountAuthorizationDetails": MaxItems 1-1000;
        UserDetailList and RoleDetailList carry each principal's Tags)."""
        found: list[PrincipalFacts] = []
        pages = self._iam.get_paginator("get_account_authorization_details").paginate(
            Filter=["User", "Role"], PaginationConfig={"PageSize": 1000}
        )
        for page in pages:
            for kind, entities in (
                (PrincipalType.USER, page.get("UserDetailList", [])),
                (PrincipalType.ROLE, page.get("RoleDetailList", [])),
            ):
                found += [
                    PrincipalFacts(
                        arn=e["Arn"],
                        name=e.get("UserName") or e.get("RoleName") or "",
                        path=e.get("Path", "/"),
                        kind=kind.value,
                        tags={t["Key"]: t["Value"] for t in e.get("Tags", [])},
                        id=e.get("UserId") or e.get("RoleId") or "",
                    )
                    for e in entities
                ]
        return found

    def group_user_names(self, group: str) -> frozenset[str]:
        """Names (lower case) of the IAM users in ``group`` now; none when the group does not exist.

        IAM user names are unique in an account whatever their case (IAM API Reference, CreateUser:
        "User names are not distinguished by case"), so the lower-case name identifies the user.
        """
        names: set[str] = set()
        try:
            for page in self._iam.get_paginator("get_group").paginate(GroupName=group):
                names |= {u["UserName"].lower() for u in page.get("Users", [])}
        except self._iam.exceptions.NoSuchEntityException:
            return frozenset()
        return frozenset(names)

    def tag(self, kind: PrincipalType, name: str, tags: Mapping[str, str]) -> None:
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        iam = self._tagger
        try:
            if kind is PrincipalType.USER:
                iam.tag_user(UserName=name, Tags=tag_list)
            else:
                iam.tag_role(RoleName=name, Tags=tag_list)
        except iam.exceptions.NoSuchEntityException as exc:
            raise PrincipalGone(name) from exc
        except iam.exceptions.LimitExceededException as exc:
            raise TagLimitExceeded(name) from exc
        except iam.exceptions.UnmodifiableEntityException as exc:
            raise PrincipalUnmodifiable(name) from exc

    def untag(self, kind: PrincipalType, name: str, keys: Iterable[str]) -> bool:
        """Remove ``keys``; ``False`` when there is nothing SessionGate could remove.

        That is when the principal no longer exists, or when IAM answers ``UnmodifiableEntity``: IAM
        refuses TagRole on such a role exactly as it refuses UntagRole, so no slot tag can be on it and
        a retry could never succeed (IAM Identity Center User Guide, "IAM roles created by IAM Identity
        Center": those roles change only through their permission set).
        """
        key_list = list(keys)
        try:
            if kind is PrincipalType.USER:
                self._iam.untag_user(UserName=name, TagKeys=key_list)
            else:
                self._iam.untag_role(RoleName=name, TagKeys=key_list)
        except (
            self._iam.exceptions.NoSuchEntityException,
            self._iam.exceptions.UnmodifiableEntityException,
        ):
            return False
        return True
