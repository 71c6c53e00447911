"""The native front door in tests: API Gateway (REST API, IAM auth) events and an in-process gateway.

``api_event`` (from the sandbox) builds the handler's event from events/api_create_request.json.

``Gateway`` stands in for API Gateway between the CLI and the request API handler: it accepts only
routes template.yaml declares, checks the SigV4 ``Authorization`` header (service ``execute-api``) and
re-computes its signature with the secret of the signing access key, evaluates the API's resource
policy for callers of other accounts (``sandbox.apigw.admitted``), then puts the identity that key
belongs to (never anything from the body) into ``requestContext.identity`` as API Gateway does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from sandbox import cfn
from sandbox.apigw import STAGE, admitted, api_event, resource_policy
from sessiongate_cli.client import Response
from tests.support.people import (  # noqa: F401 - re-exported for the integration tests
    ALICE,
    APPROVERS_ROLE,
    BOB,
    CAROL,
    DAVE,
    EVE,
    POLICY,
    SECURITY,
    make_request,
)
from tests.support.stack import ACCOUNT, REGION, Stack
from tests.support.template import resource


@dataclass
class LambdaContext:
    function_name: str = "sessiongate-test-request-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sessiongate-test-request-api"
    aws_request_id: str = "5f0c8a1e-7b61-11e6-9a41-93e812345678"


CONTEXT = LambdaContext()


def declared_routes() -> list[str]:
    events = resource("RequestApiFunction")["Properties"]["Events"].values()
    return [
        f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}" for e in events if e["Type"] == "Api"
    ]


_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass
class Gateway:
    """In-process API Gateway: SigV4 check, identity from the access key, route match, handler call."""

    handler: Any
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # access key -> (secret, caller ARN)
    seen: list[dict[str, Any]] = field(default_factory=list)
    # The API's resource policy as deployed (None: the template's without an organization) and the
    # organization of each account (the caller's aws:PrincipalOrgID).
    policy: dict[str, Any] | None = None
    organizations: dict[str, str] = field(default_factory=dict)

    def credentials(self, arn: str) -> dict[str, str]:
        """Register fake credentials for ``arn``; returns boto3.Session keyword arguments."""
        key = f"AKIATEST{len(self.keys):012d}"
        secret = f"secret-of-{arn}"
        self.keys[key] = (secret, arn)
        return {"aws_access_key_id": key, "aws_secret_access_key": secret, "region_name": REGION}

    def send(self, request: Any) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        match = _AUTH.match(headers.get("authorization", ""))
        if not match or match["service"] != "execute-api" or match["region"] != REGION:
            return Response(403, b'{"message": "Missing Authentication Token"}')
        if match["key"] not in self.keys:
            return Response(403, b'{"message": "The security token included in the request is invalid."}')
        secret, arn = self.keys[match["key"]]
        if not self._signature_ok(request, headers, match, secret):
            return Response(403, b'{"message": "The request signature we calculated does not match"}')
        url = urlsplit(request.url)
        # The execute-api endpoint serves the API under its stage (/v1/...); `sam local start-api` on this
        # machine at the root.
        local = url.hostname in ("localhost", "127.0.0.1")
        route, request_id = self._route(request.method, url.path if local else self._unstaged(url.path))
        if route is None:
            # What a REST API answers for a path or method it does not declare.
            return Response(403, b'{"message": "Missing Authentication Token"}')
        account = arn.split(":")[4]
        org = self.organizations.get(account)
        if not admitted(
            self.policy or deployed_policy(), api_account=ACCOUNT, caller_account=account, org_id=org
        ):
            return Response(
                403,
                b'{"message": "User: %s is not authorized to perform: execute-api:Invoke"}' % arn.encode(),
            )
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        event = api_event(
            route,
            arn,
            request_id=request_id,
            query=dict(parse_qsl(url.query)) or None,
            raw_body=body or None,
            org_id=org,
        )
        event["requestContext"]["identity"]["accessKey"] = match["key"]
        self.seen.append({"route": route, "authorization": headers["authorization"], "body": body})
        result = self.handler(event, CONTEXT)
        return Response(result["statusCode"], result["body"].encode())

    @staticmethod
    def _unstaged(path: str) -> str:
        """``/v1/requests`` -> ``/requests``; a path outside the stage matches no route."""
        return path.removeprefix(f"/{STAGE}") if path.startswith(f"/{STAGE}/") else ""

    @staticmethod
    def _route(method: str, path: str) -> tuple[str | None, str | None]:
        """The declared route of ``path`` (without the stage), with its ``{id}``."""
        for route in declared_routes():
            route_method, template = route.split(" ", 1)
            pattern = "^" + re.escape(template).replace(re.escape("{id}"), "(?P<id>[^/]+)") + "$"
            found = re.match(pattern, path)
            if route_method == method and found:
                return route, found.groupdict().get("id")
        return None, None

    @staticmethod
    def _signature_ok(request: Any, headers: dict[str, str], match: re.Match[str], secret: str) -> bool:
        signed = match["signed"].split(";")
        copy_ = AWSRequest(
            method=request.method,
            url=request.url,
            data=request.body,
            headers={name: headers[name] for name in signed if name in headers},
        )
        copy_.context["timestamp"] = headers["x-amz-date"]
        auth = SigV4Auth(ReadOnlyCredentials(match["key"], secret, None), "execute-api", REGION)
        canonical = auth.canonical_request(copy_)
        return bool(auth.signature(auth.string_to_sign(copy_, canonical), copy_) == match["signature"])


def deployed_policy(**parameters: str) -> dict[str, Any]:
    """The request API's resource policy as a stack with ``parameters`` deploys it."""
    return _deployed_policy(tuple(sorted(parameters.items())))


@functools.cache
def _deployed_policy(parameters: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return resource_policy(cfn.load("sessiongate", ACCOUNT, REGION, dict(parameters)).resources)


MEMBER = "210987654321"


def member_session(stack: Stack, account: str = MEMBER) -> Any:
    """A boto3 session acting in a member account (moto: assumed credentials pick the account)."""
    creds = stack.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="setup"
    )["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )
