"""A SigV4-signed client of the SessionGate request API (service ``execute-api``).

The caller's identity is the signature: the CLI signs with the user's normal AWS credentials (profile,
SSO, environment) and never sends an identity in a body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

SERVICE = "execute-api"
# Plain http only to this machine (tests, a local emulator): signed requests never cross a network in clear.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# API Gateway throttling (429) and SessionGate's own "could not finish" (503): retrying later helps.
RETRY_LATER = frozenset({429, 503})
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class CliError(Exception):
    """A problem the user can fix, printed as one line (never a traceback)."""

    def __init__(self, message: str, code: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class Transport(Protocol):
    """Sends one signed, prepared request (``botocore.awsrequest.AWSPreparedRequest``)."""

    def send(self, request: Any) -> Response: ...


class HttpTransport:
    def __init__(self, timeout: float = 30.0) -> None:
        from botocore.httpsession import URLLib3Session

        self._session = URLLib3Session(timeout=timeout)

    def send(self, request: Any) -> Response:
        from botocore.exceptions import HTTPClientError

        try:
            response = self._session.send(request)
        except HTTPClientError as exc:
            raise CliError(f"cannot reach the SessionGate API at {request.url}: {exc}", "network") from None
        return Response(response.status_code, response.content)


def region_of(endpoint: str) -> str | None:
    match = _REGION_IN_HOST.search(urlsplit(endpoint).hostname or "")
    return match.group(1) if match else None


def check_endpoint(endpoint: str) -> None:
    """Refuse anything but an https:// URL (plain http only on this machine), before any signing."""
    parts = urlsplit(endpoint)
    if not parts.hostname or not (
        parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS)
    ):
        raise CliError(
            f"the endpoint {endpoint!r} is not an https:// URL "
            "(plain http is accepted only for localhost and 127.0.0.1)",
            "bad_endpoint",
        )


class ApiClient:
    def __init__(self, endpoint: str, credentials: Any, region: str, transport: Transport) -> None:
        check_endpoint(endpoint)
        self._endpoint = endpoint.rstrip("/")
        self._credentials = credentials
        self._region = region
        self._transport = transport

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = self._endpoint + path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if data is not None else {}
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self._credentials, SERVICE, self._region).add_auth(request)
        response = self._transport.send(request.prepare())
        try:
            payload = json.loads(response.body or b"{}")
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if response.status >= 400:
            if response.status in RETRY_LATER:
                said = str(payload.get("message") or "").strip()
                if "try again" in said.lower():
                    said = said[: said.lower().index("try again")]
                said = said.rstrip(" .,;")
                busy = "too many requests" if response.status == 429 else "SessionGate is unavailable"
                raise CliError(
                    f"{said or busy}; try again shortly",
                    str(payload.get("error") or ("throttled" if response.status == 429 else "unavailable")),
                    response.status,
                )
            if "error" in payload:
                raise CliError(str(payload.get("message", "")), str(payload["error"]), response.status)
            if response.status == 403:
                raise CliError(
                    "the API refused the signature or your IAM policy lacks execute-api:Invoke "
                    "(attach the stack's RequestApiInvokePolicy)",
                    "forbidden",
                    403,
                )
            raise CliError(f"the API answered HTTP {response.status}", "http_error", response.status)
        return payload
