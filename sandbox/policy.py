"""'May principal P start a session on instance I now?' answered by an IAM policy evaluator.

principalmapper's ``local_check_authorization_full`` evaluates policies with conditions and policy
variables such as ``${aws:PrincipalTag/...}`` (moto's evaluator does not). The policies are the ones
attached to the principal in (moto) IAM, as created from template.yaml; the tags are the principal's
tags as IAM holds them at that moment, and the instance's tags as EC2 holds them (``ssm:resourceTag/<key>``
in the request context of StartSession on the instance: instance binding).
"""

from __future__ import annotations

import collections
import collections.abc
import copy
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

# principalmapper 1.1.5 predates Python 3.10's removal of these aliases.
for _name in ("Mapping", "MutableMapping", "Iterable", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

from principalmapper.common import Node, Policy  # noqa: E402
from principalmapper.querying.query_interface import local_check_authorization_full  # noqa: E402

SESSION_DOCUMENT = "SSM-SessionManagerRunShell"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    instance_allowed: bool
    document_allowed: bool
    tags: dict[str, str]


class SessionChecker:
    def __init__(self, iam: Any, region: str, account: str, ec2: Any | None = None) -> None:
        self._iam = iam
        self._region = region
        self._account = account
        self._ec2 = ec2

    def may_start_session(
        self,
        kind: str,
        name: str,
        instance_id: str,
        user_id: str | None = None,
        *,
        document: str = SESSION_DOCUMENT,
    ) -> Decision:
        """``user_id``: the ``aws:userid`` of one role session (``<RoleId>:<session name>``);
        ``document``: the session document (AWS-owned ``AWS-*`` documents have no account in their ARN,
        "Start a session with a document by specifying the session documents in IAM policies")."""
        node = self._node(kind, name, user_id)
        context = {"aws:userid": user_id} if user_id else {}
        instance_arn = f"arn:aws:ec2:{self._region}:{self._account}:instance/{instance_id}"
        owner = "" if document.startswith("AWS-") else self._account
        document_arn = f"arn:aws:ssm:{self._region}:{owner}:document/{document}"
        # StartSession is authorized against the instance and the session document (both must allow);
        # on the instance with its EC2 tags as ssm:resourceTag/<key> ("Additional sample IAM policies for
        # Session Manager", Example 2: restrict access based on tags).
        on_instance = local_check_authorization_full(
            node, "ssm:StartSession", instance_arn, {**context, **self._instance_tags(instance_id)}
        )
        on_document = local_check_authorization_full(
            node, "ssm:StartSession", document_arn, {**context, "ssm:SessionDocumentAccessCheck": "true"}
        )
        return Decision(on_instance and on_document, on_instance, on_document, dict(node.tags))

    def _instance_tags(self, instance_id: str) -> dict[str, str]:
        if self._ec2 is None:
            return {}
        reservations = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        tags = [t for r in reservations for i in r["Instances"] for t in i.get("Tags", [])]
        return {f"ssm:resourceTag/{t['Key']}": t["Value"] for t in tags}

    def authorized(
        self,
        kind: str,
        name: str,
        action: str,
        resource: str,
        context: dict[str, Any] | None = None,
        user_id: str | None = None,
        *,
        resource_policy: dict[str, Any] | None = None,
    ) -> bool:
        """Whether the principal's attached and inline policies (and ``resource_policy``, the resource's
        own policy, e.g. a DynamoDB table's) allow ``action`` on ``resource``.

        ``user_id``: as in :meth:`may_start_session`, the ``aws:userid`` of one role session.
        """
        node = self._node(kind, name, user_id)
        full = {**({"aws:userid": user_id} if user_id else {}), **(context or {})}
        owner = self._account if resource_policy is not None else None
        return bool(
            local_check_authorization_full(
                node, action, resource, full, resource_policy=resource_policy, resource_owner=owner
            )
        )

    def may_act_on_session(
        self,
        kind: str,
        name: str,
        action: str,
        session_id: str,
        session_tags: dict[str, str],
        user_id: str | None = None,
    ) -> bool:
        """``action`` (ssm:TerminateSession, ssm:ResumeSession) on a session, with the session's
        resource tags (``ssm:resourceTag/aws:ssmmessages:session-id`` ...) in the request context, as
        SSM sends them."""
        arn = f"arn:aws:ssm:{self._region}:{self._account}:session/{session_id}"
        context = {f"ssm:resourceTag/{k}": v for k, v in session_tags.items()}
        return self.authorized(kind, name, action, arn, context, user_id)

    def _node(self, kind: str, name: str, user_id: str | None = None) -> Node:
        iam = self._iam
        if kind == "user":
            entity = iam.get_user(UserName=name)["User"]
            attached = iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
            inline = [
                (p, iam.get_user_policy(UserName=name, PolicyName=p)["PolicyDocument"])
                for p in iam.list_user_policies(UserName=name)["PolicyNames"]
            ]
            tags = iam.list_user_tags(UserName=name)["Tags"]
            entity_id, trust = entity["UserId"], None
        else:
            entity = iam.get_role(RoleName=name)["Role"]
            attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            inline = [
                (p, iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
                for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
            ]
            tags = iam.list_role_tags(RoleName=name)["Tags"]
            entity_id, trust = entity["RoleId"], _doc(entity.get("AssumeRolePolicyDocument", {}))
        tag_map = {t["Key"]: t["Value"] for t in tags}
        variables = {f"aws:PrincipalTag/{k}": v for k, v in tag_map.items()}
        variables["aws:userid"] = user_id or entity_id
        documents = [
            (p["PolicyArn"], p["PolicyName"], self._managed_document(p["PolicyArn"])) for p in attached
        ]
        documents += [(entity["Arn"], policy_name, _doc(doc)) for policy_name, doc in inline]
        policies = [
            Policy(arn, pname, _resolve_condition_variables(doc, variables)) for arn, pname, doc in documents
        ]
        return principal_node(entity["Arn"], entity_id, policies, trust=trust, tags=tag_map)

    def _managed_document(self, arn: str) -> dict[str, Any]:
        policy = self._iam.get_policy(PolicyArn=arn)["Policy"]
        version = self._iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
        return _doc(version["PolicyVersion"]["Document"])


_UNRESOLVED = "\x00unresolved-policy-variable"


def principal_node(
    arn: str,
    entity_id: str,
    policies: list[Any],
    *,
    trust: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    is_admin: bool = False,
) -> Any:
    """A principalmapper principal: ``policies`` attached, no groups, keys, boundary or MFA."""
    return Node(
        arn=arn,
        id_value=entity_id,
        attached_policies=policies,
        group_memberships=[],
        trust_policy=trust,
        instance_profile=None,
        num_access_keys=0,
        active_password=False,
        is_admin=is_admin,
        permissions_boundary=None,
        has_mfa=False,
        tags=tags or {},
    )


def _resolve_condition_variables(document: dict[str, Any], variables: dict[str, str]) -> dict[str, Any]:
    """Substitute ``${...}`` policy variables in Condition values, as IAM does at request time.

    principalmapper substitutes variables in resources but not in condition values. A variable with no
    value (a missing tag) resolves to something that matches nothing, as in IAM.
    """

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: variables.get(m.group(1), _UNRESOLVED), value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    out = copy.deepcopy(document)
    statements = out.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        for operator, block in statement.get("Condition", {}).items():
            statement["Condition"][operator] = {key: sub(value) for key, value in block.items()}
    return out


def _doc(document: Any) -> dict[str, Any]:
    if isinstance(document, str):
        return json.loads(urllib.parse.unquote(document))  # type: ignore[no-any-return]
    return document  # type: ignore[no-any-return]
