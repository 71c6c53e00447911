"""``sessiongate console`` on the sandbox (``make console-demo``, ``python -m sandbox console``).

A world played from ``console_demo.yaml`` (people, instances, a policy, a few requests) is kept running;
each person gets a console of their own (one local port each), whose calls are SigV4-signed as that
person by the same client the CLI uses and checked here as API Gateway checks them (the signature, the
declared route, the API's resource policy: :mod:`sandbox.apigw`) before the real request API handler
runs. The world's virtual clock follows the wall clock, so a grant counts down and expires for real.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

from sessiongate.access_requests.http import ROUTES
from sessiongate_cli.client import Response
from sessiongate_cli.console import ConsoleServer, SignedBackend

from .apigw import STAGE, admitted, api_event, organization_of, resource_policy
from .world import REGION, World

DEMO = Path(__file__).with_name("console_demo.yaml")
ENDPOINT = f"https://sandbox.execute-api.{REGION}.amazonaws.com/{STAGE}"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
# A grant expires at most this late in the demo (and its countdown is this much behind, at most).
SYNC_EVERY = timedelta(seconds=3)
_FORBIDDEN = b'{"message": "Missing Authentication Token"}'


class Demo:
    """The running world and its people. Calls are serialized (one world, one clock)."""

    def __init__(self, path: Path = DEMO) -> None:
        from .policy import SessionChecker
        from .scenario.play import Play
        from .scenario.report import Report
        from .scenario.runner import STEPS
        from .scenario.schema import load, parse_duration, validate
        from .scenario.setup import setup

        scenario = load(path)
        validate(scenario, require_checks=False)
        # The steps' time ends now: the world starts as long ago as the scenario's advance steps last.
        lasted = sum(
            (parse_duration(str(step["advance"])) for step in scenario["steps"] if "advance" in step),
            timedelta(),
        )
        start = datetime.now(UTC).replace(microsecond=0) - lasted
        parameters = dict(scenario.get("parameters") or {})
        parameters.setdefault("ApprovalPolicyParameterName", "/sandbox/approval-policy")
        self.lock = threading.RLock()
        self.world = World(parameters=parameters, start=start)
        try:
            self.play = Play(
                self.world,
                Report(scenario["name"], ""),
                SessionChecker(
                    self.world.client("iam"), REGION, self.world.stack.account, self.world.client("ec2")
                ),
            )
            setup(self.play, scenario)
            for index, step in enumerate(scenario["steps"], start=1):
                ((kind, spec),) = step.items()
                STEPS[kind](self.play, index, spec)
            failed = [c.as_dict() for c in self.play.report.checks if not c.passed]
            if failed:
                raise RuntimeError(f"the demo world did not come out as {path.name} says: {failed}")
        except BaseException:
            self.world.close()
            raise
        # Building took a while: the clock catches up with the wall clock, then follows it.
        behind = datetime.now(UTC) - self.world.clock.now()
        if behind > timedelta():
            self.world.advance(behind)
        self._virtual0 = self.world.clock.now()
        self._wall0 = time.monotonic()
        self.gateway = SandboxGateway(self)

    @property
    def people(self) -> list[str]:
        return [n for n, p in self.play.principals.items() if p["type"] in ("user", "session")]

    def arn(self, name: str) -> str:
        return str(self.play.principals[name]["arn"])

    def sync(self) -> None:
        """The virtual clock catches up with the wall clock (schedules due meanwhile fire); at most every
        ``SYNC_EVERY`` (a clock step reads every queue, stream and schedule of the world)."""
        target = self._virtual0 + timedelta(seconds=time.monotonic() - self._wall0)
        if target - self.world.clock.now() >= SYNC_EVERY:
            self.world.advance(target - self.world.clock.now())

    def now(self) -> datetime:
        with self.lock:
            return self.world.clock.now()

    def backend(self, name: str) -> SandboxBackend:
        key, secret = self.gateway.credentials(self.arn(name))
        return SandboxBackend(
            ENDPOINT,
            REGION,
            _Session(key, secret),
            self.gateway,
            identity=f"{name} ({self.arn(name)})",
            demo=self,
        )

    def close(self) -> None:
        self.world.close()


@dataclass
class _Session:
    """What :class:`SignedBackend` asks of a boto3 session: credentials (here the demo person's)."""

    key: str
    secret: str

    def get_credentials(self) -> Any:
        from botocore.credentials import Credentials

        return Credentials(self.key, self.secret)


@dataclass
class SandboxBackend(SignedBackend):
    demo: Demo | None = None

    def now(self) -> datetime:
        assert self.demo is not None
        return self.demo.now()


@dataclass
class SandboxGateway:
    """API Gateway in front of the sandbox's request API: SigV4 verified against the person's secret,
    the route declared, the resource policy admits the caller; then the handler, synchronously."""

    demo: Demo
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # access key -> (secret, ARN)

    def credentials(self, arn: str) -> tuple[str, str]:
        key = f"AKIASANDBOX{len(self.keys):09d}"
        secret = secrets.token_urlsafe(30)
        self.keys[key] = (secret, arn)
        return key, secret

    def send(self, request: Any) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        match = _AUTH.match(headers.get("authorization", ""))
        if not match or match["service"] != "execute-api" or match["region"] != REGION:
            return Response(403, _FORBIDDEN)
        if match["key"] not in self.keys:
            return Response(403, b'{"message": "The security token included in the request is invalid."}')
        secret, arn = self.keys[match["key"]]
        if not _signature_ok(request, headers, match, secret):
            return Response(403, b'{"message": "The request signature we calculated does not match"}')
        url = urlsplit(request.url)
        path = url.path.removeprefix(f"/{STAGE}") if url.path.startswith(f"/{STAGE}/") else ""
        route, request_id = _route(request.method, path)
        if route is None:
            return Response(403, _FORBIDDEN)
        with self.demo.lock:
            world = self.demo.world
            self.demo.sync()
            account = arn.split(":")[4]
            org = organization_of(world.stack, account)
            policy = resource_policy(world.stack.resources)
            if not admitted(policy, api_account=world.stack.account, caller_account=account, org_id=org):
                message = f'{{"message": "User: {arn} is not authorized to perform: execute-api:Invoke"}}'
                return Response(403, message.encode())
            body = request.body.decode() if isinstance(request.body, bytes) else request.body
            event = api_event(
                route,
                arn,
                request_id=request_id,
                query=dict(parse_qsl(url.query)) or None,
                raw_body=body or None,
                org_id=org,
            )
            invocation = world.invoke(
                world.function_arn("RequestApiFunction"), event, trigger=f"api {route}", sync=True
            )
            world.settle()  # AccessApproved on the bus -> the grant, as EventBridge delivers it
        if invocation.error:
            return Response(502, b'{"message": "Internal server error"}')
        return Response(invocation.result["statusCode"], invocation.result["body"].encode())


def _route(method: str, path: str) -> tuple[str | None, str | None]:
    for route in ROUTES:
        route_method, template = route.split(" ", 1)
        pattern = "^" + re.escape(template).replace(re.escape("{id}"), "(?P<id>[^/]+)") + "$"
        found = re.match(pattern, path)
        if route_method == method and found:
            return route, found.groupdict().get("id")
    return None, None


def _signature_ok(request: Any, headers: dict[str, str], match: re.Match[str], secret: str) -> bool:
    """SigV4 computed again over the signed headers, with the person's secret (as API Gateway does)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    signed = match["signed"].split(";")
    copy = AWSRequest(
        method=request.method,
        url=request.url,
        data=request.body,
        headers={name: headers[name] for name in signed if name in headers},
    )
    copy.context["timestamp"] = headers.get("x-amz-date", "")
    auth = SigV4Auth(ReadOnlyCredentials(match["key"], secret, None), "execute-api", REGION)
    expected = auth.signature(auth.string_to_sign(copy, auth.canonical_request(copy)), copy)
    return secrets.compare_digest(expected, match["signature"])


def serve(
    names: list[str], port: int = 0, *, open_browser: bool, out: TextIO | None = None, path: Path = DEMO
) -> int:
    """One console per person (ports ``port``, ``port + 1``, ... or free ones), until Ctrl-C."""
    out = out or sys.stdout
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # (its feature-toggle chatter)
    print("building the sandbox world (moto, the real handlers) ...", file=out, flush=True)
    demo = Demo(path)
    unknown = [n for n in names if n not in demo.people]
    if unknown:
        demo.close()
        print(
            f"sandbox: unknown person {unknown[0]!r} (the demo has {', '.join(demo.people)})", file=sys.stderr
        )
        return 2
    servers = []
    try:
        for offset, name in enumerate(names or demo.people):
            server = ConsoleServer(
                demo.backend(name), port + offset if port else 0, demo=f"sandbox demo: {name}"
            )
            server.start()
            servers.append((name, server))
        print(
            "SessionGate console on the sandbox (Ctrl-C stops it). One URL per person "
            "(each signs one browser tab in, once):",
            file=out,
        )
        for name, server in servers:
            print(f"  {name:<8} {server.url}", file=out)
        print(
            "Open two of them (e.g. in two browser windows) to request as one and approve as another.",
            file=out,
        )
        out.flush()
        if open_browser:
            servers[0][1].open_browser(out)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()
        demo.close()
