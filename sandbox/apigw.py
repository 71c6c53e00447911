"""API Gateway's REST API events (Lambda proxy integration, ``AWS_IAM`` authorization) built from events/.

API Gateway verifies the SigV4 signature and puts the signer's identity in ``requestContext.identity``
(``userArn``, ``accountId``, ``caller``, ``user``, ``principalOrgId``; AWS doc "Lambda proxy integrations in
API Gateway", input format); that is the only identity the request API handler believes. Before that, the
API's resource policy decides whether a caller from another account may call at all (:func:`admitted`).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from typing import Any

from . import cfn

SAMPLE = cfn.ROOT / "events" / "api_create_request.json"
STAGE = "v1"


@functools.cache
def _sample() -> dict[str, Any]:
    sample: dict[str, Any] = json.loads(SAMPLE.read_text())
    return sample


def api_event(
    route: str,
    caller_arn: str | None,
    *,
    request_id: str | None = None,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    org_id: str | None = None,
) -> dict[str, Any]:
    """The event for ``route`` (e.g. ``POST /requests/{id}/approve``) signed by ``caller_arn``.

    ``caller_arn=None`` leaves the identity empty (a request API Gateway did not authorize).
    """
    event = copy.deepcopy(_sample())
    method, resource = route.split(" ", 1)
    path = resource.replace("{id}", request_id or "")
    context = event["requestContext"]
    event["resource"] = context["resourcePath"] = resource
    event["httpMethod"] = context["httpMethod"] = method
    event["path"] = path
    context["path"] = f"/{STAGE}{path}"
    context["stage"] = STAGE
    event["pathParameters"] = {"id": request_id} if request_id is not None else None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["body"] = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    identity = context["identity"]
    if caller_arn is None:
        for key in ("accountId", "caller", "accessKey", "userArn", "user", "principalOrgId"):
            identity[key] = None
    else:
        identity["userArn"] = caller_arn
        identity["accountId"] = caller_arn.split(":")[4] if caller_arn.count(":") >= 5 else ""
        identity["principalOrgId"] = org_id
    return event


def resource_policy(stack_resources: Mapping[str, Any]) -> dict[str, Any]:
    """The request API's resource policy as the stack deployed it (SAM writes it into the OpenAPI body)."""
    body = stack_resources["RequestApi"].properties["Body"]
    policy: dict[str, Any] = body["x-amazon-apigateway-policy"]
    return policy


def organization_of(stack: Any, account: str) -> str | None:
    """The sandbox's organization: the stack's ``OrganizationId`` holds its own account and its member
    accounts; any other account is outside it (no ``aws:PrincipalOrgID``)."""
    org = stack.parameters.get("OrganizationId") or None
    members = stack.parameters.get("MemberAccounts") or []
    members = members.split(",") if isinstance(members, str) else members
    return org if account in (stack.account, *members) else None


def admitted(policy: Mapping[str, Any], *, api_account: str, caller_account: str, org_id: str | None) -> bool:
    """Whether the resource policy lets a caller of ``caller_account`` (in organization ``org_id``) invoke.

    IAM authorization and a resource policy: a caller of the API's own account needs an Allow in either
    its IAM policies or the resource policy, one of another account in both; an explicit Deny in the
    resource policy refuses anyone (AWS doc "How API Gateway resource policies affect authorization
    workflow"). The caller's own IAM policies are not modelled here (the sandbox's callers have them):
    this answers the resource policy's part. Conditions: ``StringEquals`` / ``StringNotEquals`` on
    ``aws:PrincipalOrgID`` and ``aws:PrincipalAccount`` (the keys the template uses); any other key is
    treated as not matching (an Allow does not apply, a Deny does: fail closed).
    """
    context = {"aws:principalorgid": org_id, "aws:principalaccount": caller_account}
    allowed = False
    for statement in policy.get("Statement", []):
        if statement.get("Principal") != "*" or statement.get("Action") != "execute-api:Invoke":
            continue
        deny = statement.get("Effect") == "Deny"
        if not _conditions_hold(statement.get("Condition", {}), context, unknown=deny):
            continue
        if deny:
            return False
        allowed = True
    return allowed or caller_account == api_account


def _conditions_hold(
    condition: Mapping[str, Any], context: Mapping[str, str | None], *, unknown: bool
) -> bool:
    for operator, keys in condition.items():
        for key, expected in keys.items():
            values = expected if isinstance(expected, list) else [expected]
            if key.lower() not in context or operator not in ("StringEquals", "StringNotEquals"):
                if not unknown:
                    return False
                continue
            actual = context[key.lower()]
            # A missing key: StringEquals does not match, StringNotEquals does.
            matched = actual is not None and actual in values
            if matched != (operator == "StringEquals"):
                return False
    return True
