"""``sessiongate console``: a small web page on this machine over the request API, signed as you.

    sessiongate console [--port 8765] [--no-browser] [--profile P] [--endpoint URL]

The page (plain HTML, CSS and JavaScript shipped in ``console_static/``: no build step, nothing fetched
from the internet) calls a local JSON proxy; the proxy calls the same request API as the other commands,
each call SigV4-signed with the user's own AWS credentials (:class:`~sessiongate_cli.client.ApiClient`).
There is no new sign-in: whoever can use the credentials can use the CLI already; the console only must
not let anything *else* on this machine or on the web use them. Hence:

- the server listens on 127.0.0.1 only, on a port chosen at launch;
- no cookie: a cookie is scoped to the host, not the port, so a browser would send it to any other
  local user's server on 127.0.0.1. The launch URL carries a one-time *launch* token in its fragment
  (``/#launch=...``: never sent to a server, never in a request line); the page takes it out of the URL
  (``history.replaceState``) and trades it, with a JSON POST to ``/api/session`` that answers once, for
  the *session* token (another random one), kept in ``sessionStorage`` (scoped to the origin, port
  included, and to the tab). The static files hold no secret, so they need no sign-in;
- the browser is opened on a 0600 file in a 0700 temporary folder that redirects to the launch URL (as
  Jupyter does), never on the URL itself: a command line (``xdg-open``, the browser's) is visible to
  every local user in ``ps``;
- the ``Host`` header must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page has its
  own host name in it);
- every ``/api/`` call carries the session token in the ``X-SessionGate-Token`` header (a cross-site page can
  neither read it nor set a custom header without a CORS preflight, which is never answered), state
  changes are POSTs of ``application/json``, and a present ``Origin`` must be the console's own;
- a strict Content-Security-Policy (scripts, styles and fetches from the console itself only), no
  CORS headers, ``no-store`` caching, no framing, no referrer.

``GET /instances`` (EC2 ``DescribeInstances`` behind it, rate-limited per account) is cached for
``INSTANCES_TTL`` seconds: a user clicking between views does not spend the account's EC2 budget.

The server is the standard library's ``ThreadingHTTPServer``: one user, a few requests a minute, no
dependency worth adding for that.
"""

from __future__ import annotations

import argparse
import hmac
import html
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .client import ApiClient, CliError, HttpTransport, Transport

TOKEN_HEADER = "X-SessionGate-Token"  # noqa: S105 - a header name
MAX_BODY = 16 * 1024
SESSION_PATH = "/api/session"  # the one-time trade: launch token -> session token
INSTANCES_TTL = 30.0  # seconds a GET /instances answer is reused
LOCAL = "127.0.0.1"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
_ID = r"[A-Za-z0-9-]{1,64}"
# The proxy's routes: (method, local path) -> the request API's path. Nothing else is forwarded.
API_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/api/requests"), "/requests"),
    ("GET", re.compile(r"/api/approvals"), "/approvals"),
    ("GET", re.compile(r"/api/instances"), "/instances"),
    ("GET", re.compile(rf"/api/requests/(?P<id>{_ID})"), "/requests/{id}"),
    ("POST", re.compile(r"/api/requests"), "/requests"),
    (
        "POST",
        re.compile(rf"/api/requests/(?P<id>{_ID})/(?P<verb>approve|reject|cancel|revoke|extend)"),
        "/requests/{id}/{verb}",
    ),
)


class Backend(Protocol):
    """Who the console acts as, and the request API signed as them."""

    @property
    def identity(self) -> str: ...

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None, query: Mapping[str, str] | None
    ) -> dict[str, Any]: ...

    def now(self) -> datetime: ...


@dataclass
class SignedBackend:
    """The deployed request API, signed per call with fresh credentials of ``session`` (SSO and role
    credentials refresh while the console runs)."""

    endpoint: str
    region: str
    session: Any
    transport: Transport = field(default_factory=HttpTransport)
    identity: str = ""

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None, query: Mapping[str, str] | None
    ) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError

        try:
            credentials = self.session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials is not None else None
        except BotoCoreError as exc:  # an SSO token that expired, a role that cannot be assumed, ...
            raise CliError(f"your AWS credentials cannot be used now: {exc}", "no_credentials", 401) from None
        if frozen is None:
            raise CliError(
                "no AWS credentials found (sign in again, e.g. aws sso login)", "no_credentials", 401
            )
        return ApiClient(self.endpoint, frozen, self.region, self.transport).call(method, path, body, query)

    def now(self) -> datetime:
        return datetime.now(UTC)


# ------------------------------------------------------------------------------------ local security
@dataclass(frozen=True)
class Guard:
    """The console's own checks, before anything reaches the API (pure: unit-tested one by one).
    ``token``: the session token, the one the page's API calls carry (never the launch token)."""

    token: str
    port: int

    @property
    def origins(self) -> frozenset[str]:
        return frozenset({f"http://{LOCAL}:{self.port}", f"http://localhost:{self.port}"})

    def host_ok(self, host: str | None) -> bool:
        """DNS rebinding: a page of another site resolved to 127.0.0.1 still sends its own host name."""
        return host in (f"{LOCAL}:{self.port}", f"localhost:{self.port}")

    def token_ok(self, presented: str | None) -> bool:
        return _same(presented, self.token)

    def api_call_ok(self, method: str, headers: Mapping[str, str], *, signed_in: bool = True) -> str | None:
        """Why an ``/api/`` call is refused (``None``: it may go on). ``headers``: lower-case names.
        ``signed_in=False``: the launch trade, which has no session token yet (it asks for it)."""
        if signed_in and not self.token_ok(headers.get(TOKEN_HEADER.lower())):
            return "missing or wrong console token header"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return "cross-origin call"
        if headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return "cross-site call"
        if method == "POST" and headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return "a state change is a JSON POST"
        return None


def _same(presented: str | None, secret: str | None) -> bool:
    return bool(presented and secret) and hmac.compare_digest(str(presented).encode(), str(secret).encode())


def route(method: str, path: str) -> str | None:
    """The request API path a local ``/api/`` call maps to (``None``: not one the console forwards)."""
    for route_method, pattern, template in API_ROUTES:
        found = pattern.fullmatch(path)
        if found and route_method == method:
            return template.format(**found.groupdict())
    return None


def static_file(name: str) -> bytes:
    return (resources.files("sessiongate_cli") / "console_static" / name).read_bytes()


# ------------------------------------------------------------------------------------------ server
class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        backend: Backend,
        port: int = 0,
        token: str | None = None,
        demo: str = "",
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__((LOCAL, port), _Handler)
        self.backend = backend
        # Two secrets, both random (32 bytes): the launch token, in the URL, usable once; the session
        # token (``token``: given in tests), handed to the page that presents the launch token first.
        self.guard = Guard(token or secrets.token_urlsafe(32), self.server_address[1])
        self._launch: str | None = secrets.token_urlsafe(32)
        self.url = f"http://{LOCAL}:{self.port}/#launch={self._launch}"
        """The launch URL (its fragment signs one browser tab in, once)."""
        self.demo = demo  # shown on the page: "sandbox demo" (never a deployment)
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._instances: tuple[float, dict[str, Any]] | None = None
        self._redirect: Path | None = None

    def trade(self, launch: str | None) -> str | None:
        """The session token for the launch token, once (``None``: wrong, or already traded)."""
        with self._lock:
            if not _same(launch, self._launch):
                return None
            self._launch = None
            return self.guard.token

    def instances(self) -> dict[str, Any]:
        """``GET /instances``, reused for ``INSTANCES_TTL`` seconds (a failure is not kept)."""
        with self._lock:
            kept = self._instances
        if kept is not None and self._monotonic() - kept[0] < INSTANCES_TTL:
            return kept[1]
        answer = self.backend.call("GET", "/instances", None, None)
        with self._lock:
            self._instances = (self._monotonic(), answer)
        return answer

    def open_browser(self, out: Any) -> None:
        """The user's browser on the launch URL, through a private redirect file (removed on close)."""
        self._redirect = launch_browser(self.url, out)

    def server_close(self) -> None:
        super().server_close()
        if self._redirect is not None:
            shutil.rmtree(self._redirect.parent, ignore_errors=True)
            self._redirect = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closed a connection early (a page left mid-fetch) is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=f"console-{self.port}", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "sessiongate-console"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: one line per request is noise in the terminal that shows the launch URL."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._plain(405, "method not allowed")

    do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_PUT

    # -- answers
    def _send(
        self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, status: int, text: str) -> None:
        self._send(status, text.encode() + b"\n", "text/plain; charset=utf-8")

    def _json(self, status: int, payload: Mapping[str, Any]) -> None:
        now = self.server.backend.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps({**payload, "now": now}, sort_keys=True).encode()
        self._send(status, body, "application/json")

    # -- dispatch
    def _handle(self, method: str) -> None:
        guard = self.server.guard
        if not guard.host_ok(self.headers.get("Host")):
            self._plain(421, "this console answers only as 127.0.0.1 or localhost on its own port")
            return
        url = urlsplit(self.path)
        if url.path.startswith("/api/"):
            self._api(method, url.path)
            return
        if method == "GET" and url.path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")  # none: the browser asks anyway
            return
        if method != "GET" or url.path not in STATIC:
            self._plain(404, "not found")
            return
        name, content_type = STATIC[url.path]
        body = static_file(name)
        if name == "index.html":  # (no secret in it: the page gets its token from the launch URL)
            body = body.replace(b"{{DEMO}}", html.escape(self.server.demo).encode())
        self._send(200, body, content_type)

    def _api(self, method: str, path: str) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if method == "POST" and path == SESSION_PATH:
            self._trade(headers)
            return
        refused = self.server.guard.api_call_ok(method, headers)
        if refused:
            self._json(403, {"error": "console_refused", "message": refused})
            return
        if method == "GET" and path == "/api/whoami":
            self._json(200, {"data": {"identity": self.server.backend.identity, "demo": self.server.demo}})
            return
        upstream = route(method, path)
        if upstream is None:
            self._json(404, {"error": "no_route", "message": f"no console route {method} {path}"})
            return
        body: dict[str, Any] | None = None
        if method == "POST":
            body = self._body()
            if body is None:
                return
        query = {"limit": "50"} if upstream in ("/requests", "/approvals") and method == "GET" else None
        try:
            if method == "GET" and upstream == "/instances":
                answer = self.server.instances()
            else:
                answer = self.server.backend.call(method, upstream, body, query)
        except CliError as exc:
            self._json(exc.status or 502, {"error": exc.code, "message": exc.message})
            return
        except Exception as exc:  # noqa: BLE001 - one line to the page, never a traceback
            self._json(502, {"error": "console_failed", "message": type(exc).__name__})
            return
        self._json(200, {"data": answer})

    def _trade(self, headers: Mapping[str, str]) -> None:
        refused = self.server.guard.api_call_ok("POST", headers, signed_in=False)
        if refused:
            self._json(403, {"error": "console_refused", "message": refused})
            return
        body = self._body()
        if body is None:
            return
        token = self.server.trade(body.get("launch") if isinstance(body.get("launch"), str) else None)
        if token is None:
            message = (
                "this launch URL is wrong or was used already (it works once): use the tab it opened, "
                "or start `sessiongate console` again"
            )
            self._json(403, {"error": "launch_used", "message": message})
            return
        self._json(200, {"data": {"token": token}})

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._json(413, {"error": "invalid_body", "message": f"a body is at most {MAX_BODY} bytes"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(400, {"error": "invalid_body", "message": "the body must be a JSON object"})
            return None
        return body


# ------------------------------------------------------------------------------------------ command
def add_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Registers ``console`` with main.py's ``add`` (the API's options: --endpoint, --profile, ...)."""
    p = add("console", "open a web page on this machine to request, approve and end access", cmd_console)
    p.add_argument("--port", type=int, default=0, help="local port (default: any free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")


def cmd_console(ctx: Any) -> Any:
    ctx.api()  # the endpoint, credentials and region: refused here, once, as by every other command
    endpoint = ctx.args.endpoint or os.environ.get("SESSIONGATE_ENDPOINT", "")
    session = ctx.boto_session()
    backend = SignedBackend(endpoint, str(ctx.region()), session, ctx.transport or HttpTransport())
    backend.identity = _whoami(session)
    server = ConsoleServer(backend, ctx.args.port)
    serve(server, ctx.out, open_browser=not ctx.args.no_browser)
    return {"console": "stopped"}


def _whoami(session: Any) -> str:
    """The caller's ARN, shown on the page (best effort: the API never takes it from the page)."""
    try:
        return str(session.client("sts").get_caller_identity()["Arn"])
    except Exception:  # noqa: BLE001 - only a label
        return "your AWS credentials"


REDIRECT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="0;url={url}">
<meta name="referrer" content="no-referrer">
<title>SessionGate console</title></head>
<body><p><a href="{url}">Open the SessionGate console</a></p></body></html>
"""


def redirect_file(url: str) -> Path:
    """A file that sends the browser on to ``url``, readable by this user only (``mkdtemp``: 0700,
    ``mkstemp``: 0600): its path may be seen in ``ps``, its content (the launch token) may not."""
    folder = tempfile.mkdtemp(prefix="sessiongate-console-")
    handle, name = tempfile.mkstemp(suffix=".html", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(REDIRECT.format(url=html.escape(url, quote=True)))
    return Path(name)


def launch_browser(url: str, out: Any) -> Path | None:
    """The user's browser, when there is a graphical one (without a display Python's ``webbrowser``
    would start a text browser in this terminal, in front of the console), opened on a private redirect
    file, never on ``url`` itself: a command line is public on this machine. Returns the file (the
    caller removes its folder when done), ``None`` when no browser was opened."""
    graphical = sys.platform in ("darwin", "win32") or any(
        os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    )
    if graphical:
        redirect = redirect_file(url)
        if webbrowser.open(redirect.as_uri()):
            # Snap-packaged browsers (Ubuntu's Firefox, Chromium) have a /tmp of their own and cannot
            # read the file (jupyter/notebook#5479): the printed URL still works (it was not used).
            print(
                "(opened in your browser; if it says the file is not found, open the URL above)",
                file=out,
                flush=True,
            )
            return redirect
        shutil.rmtree(redirect.parent, ignore_errors=True)
    print("(no graphical browser here: open the URL above in yours)", file=out, flush=True)
    return None


def serve(server: ConsoleServer, out: Any = None, *, open_browser: bool) -> None:
    out = out or sys.stdout
    print(f"SessionGate console on {server.url}", file=out)
    print(
        "(this URL is secret: it signs one browser tab in, once; keep it to yourself. "
        "Ctrl-C stops the console)",
        file=out,
        flush=True,
    )
    if open_browser:
        server.open_browser(out)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
