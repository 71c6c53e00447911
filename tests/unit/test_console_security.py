"""`sessiongate console`'s own defences, over real HTTP on 127.0.0.1: the one-time launch token and the
session token it is traded for (no cookie), the browser opened without the token in a command line,
the Host check (DNS rebinding), the token header and Origin on API calls (CSRF), the headers (CSP, no
CORS), and that only the request API's routes are forwarded."""

from __future__ import annotations

import http.client
import io
import json
import os
import stat
import webbrowser
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sessiongate_cli.client import CliError
from sessiongate_cli.console import CSP, INSTANCES_TTL, TOKEN_HEADER, ConsoleServer, Guard, route

TOKEN = "t0ken-of-this-launch"


class Recorder:
    """A backend that records the calls the proxy forwards."""

    identity = "arn:aws:iam::123456789012:user/alice"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None, query: Mapping[str, str] | None
    ) -> dict[str, Any]:
        self.calls.append((method, path, body, query))
        if path == "/requests/bad/approve":
            raise CliError("you cannot approve or reject your own request", "self_approval", 403)
        return {"ok": True}

    def now(self) -> datetime:
        return datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[ConsoleServer]:
    console = ConsoleServer(Recorder(), token=TOKEN)
    console.start()
    yield console
    console.shutdown()
    console.server_close()


@pytest.fixture
def backend(server: ConsoleServer) -> Recorder:
    recorder = server.backend
    assert isinstance(recorder, Recorder)
    recorder.calls.clear()
    return recorder


def send(
    server: ConsoleServer,
    method: str,
    path: str,
    *,
    host: str | None = None,
    token: str | None = TOKEN,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    sent = {"Host": host or f"127.0.0.1:{server.port}"}
    if token is not None:
        sent[TOKEN_HEADER] = token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    connection.request(method, path, body=data, headers=sent)
    response = connection.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    connection.close()
    return answer


def launch_token(server: ConsoleServer) -> str:
    prefix = f"http://127.0.0.1:{server.port}/#launch="
    assert server.url.startswith(prefix)  # a fragment: never sent to a server, never in a request line
    return server.url.removeprefix(prefix)


def test_the_launch_token_is_traded_once_for_a_different_session_token() -> None:
    console = ConsoleServer(Recorder(), token=TOKEN)
    console.start()
    try:
        launch = launch_token(console)
        assert len(launch) >= 43  # 32 random bytes
        assert launch != TOKEN  # not the session secret
        own = {"Origin": f"http://127.0.0.1:{console.port}", "Sec-Fetch-Site": "same-origin"}
        # The launch token is not a session token: the API refuses it.
        assert send(console, "GET", "/api/requests", token=launch)[0] == 403
        status, headers, body = send(console, "POST", "/api/session", token=None, body={"launch": "guess"})
        assert (status, json.loads(body)["error"]) == (403, "launch_used")
        cross = {"Origin": "http://127.0.0.1:9999"}  # another local server's page
        assert (
            send(console, "POST", "/api/session", token=None, body={"launch": launch}, headers=cross)[0]
            == 403
        )
        status, headers, body = send(
            console, "POST", "/api/session", token=None, body={"launch": launch}, headers=own
        )
        assert (status, json.loads(body)["data"]) == (200, {"token": TOKEN})
        assert "set-cookie" not in headers
        # Once only: whoever reads the launch URL later (a process list, a shell history) gets nothing.
        status, _, body = send(
            console, "POST", "/api/session", token=None, body={"launch": launch}, headers=own
        )
        assert (status, json.loads(body)["error"]) == (403, "launch_used")
        assert send(console, "GET", "/api/requests", token=TOKEN)[0] == 200
    finally:
        console.shutdown()
        console.server_close()


def test_no_cookie_the_page_holds_no_secret_and_the_api_needs_the_header(
    server: ConsoleServer, backend: Recorder
) -> None:
    """A cookie of 127.0.0.1 would go to every local port (another user's server too): there is none.
    The static files need no sign-in since they hold no secret; the API needs the token header."""
    for path in ("/", "/console.js", "/console.css", "/?token=" + TOKEN):
        status, headers, body = send(server, "GET", path, token=None)
        assert status == 200, path
        assert "set-cookie" not in headers
        assert TOKEN.encode() not in body
    # The old launch URL's cookie signs nothing in.
    cookie = {"Cookie": f"sessiongate_console_{server.port}={TOKEN}"}
    assert send(server, "GET", "/api/requests", token=None, headers=cookie)[0] == 403
    assert backend.calls == []


def test_the_page_has_strict_headers(server: ConsoleServer) -> None:
    status, headers, body = send(server, "GET", "/")
    assert status == 200
    assert headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP
    assert (headers["x-frame-options"], headers["cache-control"]) == ("DENY", "no-store")
    assert not [h for h in headers if h.startswith("access-control-")]
    assert b"http://" not in body  # nothing fetched from elsewhere
    assert b"https://" not in body


def test_the_browser_is_opened_on_a_private_file_never_on_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`xdg-open URL` and the browser's own command line are in `ps` for every local user: the browser
    gets the path of a 0600 file (in a 0700 folder) that redirects to the launch URL."""
    opened: list[str] = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    console = ConsoleServer(Recorder(), token=TOKEN)
    launch = launch_token(console)
    try:
        said = io.StringIO()
        console.open_browser(said)
        assert "open the URL above" in said.getvalue()  # (a snap browser cannot read /tmp)
        [url] = opened
        assert launch not in url
        assert TOKEN not in url
        assert url.startswith("file://")
        path = Path(url.removeprefix("file://"))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert f'content="0;url={console.url}"' in path.read_text()
    finally:
        console.server_close()
    assert not path.parent.exists()  # removed with the console


def test_instances_are_fetched_at_most_every_30_seconds() -> None:
    """GET /instances is EC2 DescribeInstances in the account: clicking between views reuses it."""
    now = [1000.0]
    console = ConsoleServer(Recorder(), token=TOKEN, monotonic=lambda: now[0])
    console.start()
    recorder = console.backend
    assert isinstance(recorder, Recorder)
    try:
        for _ in range(3):
            assert send(console, "GET", "/api/instances")[0] == 200
        assert recorder.calls == [("GET", "/instances", None, None)]
        now[0] += INSTANCES_TTL - 1
        send(console, "GET", "/api/instances")
        assert len(recorder.calls) == 1
        now[0] += 2
        send(console, "GET", "/api/instances")
        assert len(recorder.calls) == 2
    finally:
        console.shutdown()
        console.server_close()


@pytest.mark.parametrize("host", ["attacker.test:{port}", "evil.example:80", "127.0.0.1", "127.0.0.1:1", ""])
def test_another_host_name_is_refused_dns_rebinding(
    server: ConsoleServer, backend: Recorder, host: str
) -> None:
    assert send(server, "GET", "/api/requests", host=host.format(port=server.port) or " ")[0] == 421
    assert backend.calls == []


def test_localhost_is_the_same_console(server: ConsoleServer, backend: Recorder) -> None:
    assert send(server, "GET", "/api/requests", host=f"localhost:{server.port}")[0] == 200
    assert backend.calls == [("GET", "/requests", None, {"limit": "50"})]


def test_api_calls_need_the_token_header_and_a_json_post_of_the_same_origin(
    server: ConsoleServer, backend: Recorder
) -> None:
    approve = "/api/requests/r1/approve"
    assert send(server, "POST", approve, token=None, body={})[0] == 403
    assert send(server, "POST", approve, token="wrong", body={})[0] == 403
    assert send(server, "GET", "/api/requests", token=None)[0] == 403
    cross = {"Origin": "https://evil.example"}
    assert send(server, "POST", approve, body={}, headers=cross)[0] == 403
    assert send(server, "POST", approve, body={}, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert send(server, "POST", approve, body={}, headers=form)[0] == 403
    assert backend.calls == []
    own = {"Origin": f"http://127.0.0.1:{server.port}", "Sec-Fetch-Site": "same-origin"}
    status, _, body = send(server, "POST", approve, body={"comment": "ok"}, headers=own)
    assert (status, json.loads(body)) == (200, {"data": {"ok": True}, "now": "2026-11-30T09:00:00Z"})
    assert backend.calls == [("POST", "/requests/r1/approve", {"comment": "ok"}, None)]


def test_only_the_request_apis_routes_are_forwarded(server: ConsoleServer, backend: Recorder) -> None:
    assert send(server, "GET", "/api/../requests")[0] == 404
    assert send(server, "POST", "/api/requests/r1/delete", body={})[0] == 404
    assert send(server, "POST", "/api/requests/a%2Fb/approve", body={})[0] == 404
    assert send(server, "GET", "/api/requests/r1/approve")[0] == 404  # a state change is a POST
    assert send(server, "POST", "/api/requests", body=["not", "an", "object"])[0] == 400
    for method in ("PUT", "DELETE", "OPTIONS"):
        status, headers, _ = send(server, method, "/api/requests")
        assert status == 405
        assert not [h for h in headers if h.startswith("access-control-")]
    assert backend.calls == []


def test_an_api_refusal_keeps_its_status_and_code(server: ConsoleServer) -> None:
    status, _, body = send(server, "POST", "/api/requests/bad/approve", body={})
    assert status == 403
    assert json.loads(body)["error"] == "self_approval"


def test_the_routes_map_to_the_request_api() -> None:
    assert route("GET", "/api/instances") == "/instances"
    assert route("POST", "/api/requests/abc-1/extend") == "/requests/abc-1/extend"
    assert route("POST", "/api/requests/abc/approve/x") is None
    assert route("GET", "/api/requests/") is None


def test_the_guard_compares_the_whole_token() -> None:
    guard = Guard("abc", 8000)
    assert guard.token_ok("abc")
    assert not guard.token_ok("ab")
    assert not guard.token_ok(None)
    assert not guard.token_ok("")
    assert not Guard("", 8000).token_ok("")


def test_each_call_is_signed_with_the_credentials_of_the_moment() -> None:
    """SSO and role credentials refresh while the console runs: each call asks the session again."""
    from botocore.credentials import Credentials

    from sessiongate_cli.client import Response
    from sessiongate_cli.console import SignedBackend

    class Session:
        def __init__(self) -> None:
            self.n = 0

        def get_credentials(self) -> Credentials:
            self.n += 1
            return Credentials(f"AKIAEXAMPLE{self.n:05d}", "secret", "token")

    class Seen:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def send(self, request: Any) -> Response:
            authorization = request.headers["Authorization"]
            if isinstance(authorization, bytes):
                authorization = authorization.decode()
            self.keys.append(authorization.split("Credential=")[1].split("/")[0])
            return Response(200, b'{"requests": []}')

    seen = Seen()
    backend = SignedBackend(
        "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/v1", "eu-west-1", Session(), seen
    )
    assert backend.call("GET", "/requests", None, None) == {"requests": []}
    backend.call("GET", "/approvals", None, None)
    assert seen.keys == ["AKIAEXAMPLE00001", "AKIAEXAMPLE00002"]


def test_sessiongate_console_serves_the_deployed_api_signed_as_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`sessiongate console`: the endpoint and region of the other commands, the user's session, the
    transport given; the page's calls reach the API signed (here: a recording transport)."""
    import io

    from botocore.credentials import Credentials

    from sessiongate_cli import console
    from sessiongate_cli.client import Response
    from sessiongate_cli.main import main

    class Session:
        region_name = None

        def get_credentials(self) -> Credentials:
            return Credentials("AKIAEXAMPLE00001", "secret")

        def client(self, service: str) -> Any:
            raise RuntimeError("no STS here")

    sent: list[Any] = []

    class Transport:
        def send(self, request: Any) -> Response:
            sent.append(request)
            return Response(200, b'{"requests": [], "count": 0}')

    served: list[ConsoleServer] = []

    def serve(server: ConsoleServer, out: Any = None, *, open_browser: bool) -> None:
        assert open_browser is False
        served.append(server)

    monkeypatch.setattr(console, "serve", serve)
    endpoint = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/v1"
    code = main(
        ["--endpoint", endpoint, "console", "--no-browser"],
        session=Session(),
        transport=Transport(),
        out=io.StringIO(),
        err=io.StringIO(),
    )
    assert code == 0
    [server] = served
    try:
        assert server.server_address[0] == "127.0.0.1"
        backend = server.backend
        assert backend.identity == "your AWS credentials"
        assert backend.call("GET", "/requests", None, {"limit": "50"}) == {"requests": [], "count": 0}
    finally:
        server.server_close()
    assert sent[0].url == f"{endpoint}/requests?limit=50"
    assert "/eu-west-1/execute-api/aws4_request" in str(sent[0].headers["Authorization"])


def test_credentials_that_cannot_be_used_are_one_line_for_the_page() -> None:
    from botocore.exceptions import TokenRetrievalError

    from sessiongate_cli.console import SignedBackend

    class Expired:
        def get_credentials(self) -> Any:
            raise TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed")

    class Nothing:
        def get_credentials(self) -> Any:
            return None

    endpoint = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/v1"
    for session, said in ((Expired(), "Token has expired"), (Nothing(), "no AWS credentials found")):
        with pytest.raises(CliError) as refused:
            SignedBackend(endpoint, "eu-west-1", session).call("GET", "/requests", None, None)
        assert (refused.value.code, refused.value.status) == ("no_credentials", 401)
        assert said in refused.value.message
