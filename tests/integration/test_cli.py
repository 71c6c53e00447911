"""The ``sessiongate`` CLI against the real request API handler (in-process gateway, SigV4 checked)."""

from __future__ import annotations

import io
import json
import shutil
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sessiongate_cli.client import Response
from sessiongate_cli.main import build_parser, main
from tests.integration.test_native_api import (  # noqa: F401 - the fixtures
    MEMBER_ALICE,
    deployed,
    handler,
    member,
    member_instance,
)
from tests.support.native import ALICE, BOB, CONTEXT, EVE, MEMBER, Gateway, deployed_policy
from tests.support.stack import Stack

ENDPOINT = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/v1"  # the stage is part of it


@pytest.fixture
def gateway(deployed: Stack) -> Gateway:  # noqa: F811
    return Gateway(handler("request_api"))


class Cli:
    def __init__(self, gateway: Gateway, arn: str) -> None:
        self.gateway = gateway
        self.session = boto3.Session(**gateway.credentials(arn))
        self.commands: list[list[str]] = []

    def run(self, *argv: str, sleep: Any = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["--endpoint", ENDPOINT, *argv],
            transport=self.gateway,
            session=self.session,
            runner=lambda command: self.commands.append(command) or 0,
            sleep=sleep or (lambda _s: None),
            out=out,
            err=err,
        )
        assert "Traceback" not in out.getvalue() + err.getvalue()
        return code, out.getvalue(), err.getvalue()

    def json(self, *argv: str, **kwargs: Any) -> dict[str, Any]:
        code, out, err = self.run(*argv, "--output", "json", **kwargs)
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]


def test_request_approve_grant_connect_revoke_through_the_cli(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = deployed
    alice, bob = Cli(gateway, ALICE), Cli(gateway, BOB)
    instance = stack.instance()
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")

    created = alice.json("request", "--instance", instance, "--minutes", "20", "--reason", "rotate logs")
    request_id = created["request"]["request_id"]
    assert created["request"]["requester_arn"] == ALICE
    # The identity came from the signature: the body carried none, and the header was SigV4 for execute-api.
    seen = gateway.seen[0]
    assert json.loads(seen["body"]) == {
        "instance_id": instance,
        "duration_minutes": 20,
        "reason": "rotate logs",
    }
    assert seen["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIATEST")
    assert "/us-east-1/execute-api/aws4_request" in seen["authorization"]

    code, out, _ = bob.run("list", "--approvals")
    assert code == 0
    assert request_id in out
    code, out, _ = bob.run("approve", request_id, "--comment", "go")
    assert code == 0
    assert "status     APPROVED" in out

    # connect waits for the grant: the engine runs the bus event while the CLI sleeps.
    def grant_meanwhile(_seconds: float) -> None:
        for event in stack.bus_events():
            assert handler("grant_access")(event, CONTEXT)["result"] == "granted"

    code, _, err = alice.run("--region", "us-east-1", "connect", request_id, sleep=grant_meanwhile)
    assert code == 0, err
    assert alice.commands == [
        ["/usr/bin/aws", "ssm", "start-session", "--target", instance, "--region", "us-east-1"]
    ]
    status = alice.json("status", request_id)["request"]
    assert status["status"] == "ACTIVE"
    assert status["grant"]["expires_at"] == "2026-11-24T09:20:00Z"
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": instance}

    code, out, _ = alice.run("revoke", request_id, "--reason", "done")
    assert code == 0
    assert "status     REVOKED" in out
    assert stack.tags("user", "alice") == {}
    assert [r["status"] for r in alice.json("list")["requests"]] == ["REVOKED"]


def test_identity_is_the_signers_not_a_claim(deployed: Stack, gateway: Gateway) -> None:  # noqa: F811
    alice = Cli(gateway, ALICE)
    request_id = alice.json("request", "--instance", deployed.instance(), "--reason", "x")["request"][
        "request_id"
    ]
    code, _, err = alice.run("approve", request_id)
    assert code == 1
    assert err == "sessiongate: error: you cannot approve or reject your own request (self_approval)\n"
    code, _, err = Cli(gateway, EVE).run("--output", "json", "revoke", request_id)
    assert code == 1
    assert json.loads(err)["error"] == "not_allowed"


def test_a_bad_signature_is_refused_by_the_gateway(deployed: Stack, gateway: Gateway) -> None:  # noqa: F811
    cli = Cli(gateway, ALICE)
    key = cli.session.get_credentials().access_key
    gateway.keys[key] = ("another secret", ALICE)
    code, _, err = cli.run("list")
    assert code == 1
    assert "refused the signature" in err


def test_extend_and_cancel(deployed: Stack, gateway: Gateway) -> None:  # noqa: F811
    alice, bob = Cli(gateway, ALICE), Cli(gateway, BOB)
    first = alice.json("request", "--instance", deployed.instance(), "--reason", "x")["request"]["request_id"]
    assert alice.json("cancel", first)["request"]["status"] == "CANCELLED"
    second = alice.json("request", "--instance", deployed.instance(), "--reason", "y")["request"][
        "request_id"
    ]
    bob.json("approve", second)
    for event in deployed.bus_events():
        handler("grant_access")(event, CONTEXT)
    extension = alice.json("extend", second, "--minutes", "5", "--reason", "more")["request"]
    assert extension["request_id"] == f"{second}-x1"
    assert extension["status"] == "PENDING"


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["request"],
        ["list"],
        ["status"],
        ["approve"],
        ["reject"],
        ["cancel"],
        ["revoke"],
        ["extend"],
        ["connect"],
        ["change-request"],
        ["doctor"],
        ["chat"],
    ],
)
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: sessiongate" in capsys.readouterr().out


def test_every_api_route_has_a_command() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {
        "request",
        "list",
        "status",
        "approve",
        "reject",
        "cancel",
        "revoke",
        "extend",
        "connect",
    } <= commands


def test_usage_mistakes_are_readable(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = Cli(gateway, ALICE)
    code, _, err = cli.run("request", "--instance", "i-nope", "--reason", "x")
    assert code == 1
    assert "instance_id must be an EC2 instance id" in err
    code, _, err = cli.run("status", "0123456789abcdef0123456789abcdef")
    assert (code, err) == (1, "sessiongate: error: no request 0123456789abcdef0123456789abcdef (not_found)\n")
    code, _, err = cli.run("connect", "0123456789abcdef0123456789abcdef")
    assert code == 1
    with pytest.raises(SystemExit) as exit_:
        main(["request", "--instance", "i-0123456789abcdef0", "--reason", "x", "--minutes", "ten"])
    assert exit_.value.code == 2
    assert "'ten' is not a whole number" in capsys.readouterr().err

    monkeypatch.delenv("SESSIONGATE_ENDPOINT", raising=False)
    err_io = io.StringIO()
    assert main(["list"], session=cli.session, err=err_io) == 1
    assert "no API endpoint" in err_io.getvalue()
    err_io = io.StringIO()
    no_credentials = boto3.Session(region_name="us-east-1")
    monkeypatch.setattr(no_credentials, "get_credentials", lambda: None)
    assert main(["--endpoint", ENDPOINT, "list"], session=no_credentials, err=err_io) == 1
    assert "no AWS credentials found" in err_io.getvalue()


def test_connect_refuses_a_pending_request_unless_told_to_wait(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
) -> None:
    alice = Cli(gateway, ALICE)
    request_id = alice.json("request", "--instance", deployed.instance(), "--reason", "x")["request"][
        "request_id"
    ]
    code, _, err = alice.run("connect", request_id)
    assert code == 1
    assert "is PENDING" in err
    assert "--wait-for-approval" in err
    code, _, err = alice.run(
        "connect", request_id, "--wait-for-approval", "--timeout", "6", "--interval", "3"
    )
    assert code == 1
    assert "still PENDING after 6 s (timeout)" in err
    assert alice.commands == []


def test_change_manager_request(capsys: pytest.CaptureFixture[str]) -> None:
    session = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
    ssm = session.client("ssm")
    stubber = Stubber(ssm)
    stubber.add_response(
        "start_change_request_execution",
        {"AutomationExecutionId": "d0585556-80f6-4522-8dad-dada6d45b67d"},
        {
            "DocumentName": "AllowSsmSessionStartTemplate",
            "ChangeRequestName": "debug the payment worker",
            "Runbooks": [
                {
                    "DocumentName": "AllowSsmSessionStartRunbook",
                    "DocumentVersion": "$DEFAULT",
                    "Parameters": {
                        "InstanceId": ["i-0a1b2c3d4e5f60718"],
                        "PrincipalType": ["Role"],
                        "PrincipalName": ["ops-oncall"],
                        "ValidityMinutes": ["30"],
                    },
                }
            ],
        },
    )
    stubber.add_client_error("start_change_request_execution", "AccessDeniedException", "not allowed")
    session.client = lambda *_a, **_k: ssm  # type: ignore[method-assign]
    argv = [
        "change-request",
        "--instance",
        "i-0a1b2c3d4e5f60718",
        "--principal-type",
        "role",
        "--principal-name",
        "ops-oncall",
        "--minutes",
        "30",
        "--reason",
        "debug the payment worker",
    ]
    with stubber:
        assert main(argv, session=session) == 0
        assert "change request started: d0585556-80f6-4522-8dad-dada6d45b67d" in capsys.readouterr().out
        assert main(argv, session=session) == 1
        err = capsys.readouterr().err
        assert err.startswith("sessiongate: error: Change Manager refused the request")
        assert "Traceback" not in err


def test_change_request_needs_a_region_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    session = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b")
    argv = ["change-request", "--instance", "i-0a1b2c3d4e5f60718", "--principal-type", "user"]
    argv += ["--principal-name", "alice", "--minutes", "30", "--reason", "debug"]
    assert main(argv, session=session) == 1
    err = capsys.readouterr().err
    assert err == (
        "sessiongate: error: no AWS region: pass --region, set AWS_REGION or give your profile a region"
        " (no_region)\n"
    )


def test_change_request_help_offers_no_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    """change-request talks to SSM directly: the API endpoint option would only mislead."""
    for command, has_endpoint in (("change-request", False), ("request", True)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert ("--endpoint" in shown) is has_endpoint, command
        assert "--region" in shown
    with pytest.raises(SystemExit) as exit_:
        main(["change-request", "--endpoint", ENDPOINT, "--instance", "i-0a1b2c3d4e5f60718"])
    assert exit_.value.code == 2


def test_a_malformed_endpoint_is_reported_before_credentials_are_looked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_credentials = boto3.Session(region_name="us-east-1")
    looked: list[bool] = []
    monkeypatch.setattr(no_credentials, "get_credentials", lambda: looked.append(True))
    err = io.StringIO()
    assert (
        main(
            ["--endpoint", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "list"],
            session=no_credentials,
            err=err,
        )
        == 1
    )
    assert "is not an https:// URL" in err.getvalue()
    assert "(bad_endpoint)" in err.getvalue()
    assert looked == []


@pytest.mark.parametrize(("limit", "problem"), [("0", "must be at least 1"), ("51", "must be at most 50")])
def test_limit_is_checked_before_calling_the_api(
    limit: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--endpoint", ENDPOINT, "list", "--limit", limit])
    assert exit_.value.code == 2
    assert problem in capsys.readouterr().err


def test_account_option_is_sent_and_validated(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = Cli(gateway, ALICE)
    instance = deployed.instance()
    code, _, err = alice.run("request", "--instance", instance, "--reason", "x", "--account", "555555555555")
    assert code == 1
    assert "(cross_account)" in err  # alice signs in the SessionGate account: her instances are there
    assert json.loads(gateway.seen[-1]["body"])["account"] == "555555555555"
    with pytest.raises(SystemExit) as exit_:
        main(["request", "--instance", instance, "--reason", "x", "--account", "12345"])
    assert exit_.value.code == 2
    assert "'12345' is not a 12-digit AWS account id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("http://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", False),
        ("ftp://example.com", False),
        ("https://", False),
        ("http://localhost:3000", True),
        ("http://127.0.0.1:3000", True),
    ],
)
def test_only_https_endpoints_except_on_this_machine(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
    endpoint: str,
    ok: bool,
) -> None:
    cli = Cli(gateway, ALICE)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--endpoint", endpoint, "--region", "us-east-1", "list"],
        transport=gateway,
        session=cli.session,
        out=out,
        err=err,
    )
    if ok:
        assert (code, out.getvalue().strip()) == (0, "no requests"), err.getvalue()
    else:
        assert code == 1
        assert "is not an https:// URL" in err.getvalue()
        assert "(bad_endpoint)" in err.getvalue()
        assert gateway.seen == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b'{"message":"Too Many Requests"}', "Too Many Requests; try again shortly (throttled)"),
        (429, b"", "too many requests; try again shortly (throttled)"),
        (
            503,
            b'{"error": "temporarily_unavailable", "message": "SessionGate could not finish; try again"}',
            "SessionGate could not finish; try again shortly (temporarily_unavailable)",
        ),
        (503, b"<html>", "SessionGate is unavailable; try again shortly (unavailable)"),
    ],
)
def test_busy_answers_say_try_again_shortly(status: int, body: bytes, expected: str) -> None:
    class Busy:
        def send(self, request: Any) -> Response:
            return Response(status, body)

    session = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
    err = io.StringIO()
    assert main(["--endpoint", ENDPOINT, "list"], transport=Busy(), session=session, err=err) == 1
    assert err.getvalue() == f"sessiongate: error: {expected}\n"


def test_policy_sign_validates_signs_and_puts_a_policy_the_api_accepts(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
    tmp_path: Any,
) -> None:
    from sessiongate.adapters.policy_source import POLICY_CACHE
    from tests.support.native import POLICY
    from tests.support.stack import POLICY_KEY

    stack = deployed
    deployer = Cli(gateway, BOB)  # moto does not check who may GenerateMac: the key policy tests do
    name = stack.settings.approval_policy_parameter
    changed = json.loads(json.dumps(POLICY))
    changed["rules"][1]["max_duration_minutes"] = 5
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(changed))

    before = json.loads(stack.ssm_parameter())["serial"]
    code, out, err = deployer.run("policy", "sign", str(path), "--key-id", POLICY_KEY, "--put", name)
    assert (code, err) == (0, "")
    serial = json.loads(stack.ssm_parameter())["serial"]
    assert serial > before  # signed later: the API refuses envelopes older than one it accepted
    assert out.startswith(f"policy written to {name} (version 2, serial {serial}, sha256 ")
    stack.clock.advance(POLICY_CACHE)
    code, _, err = Cli(gateway, ALICE).run(
        "request", "--instance", stack.instance(), "--minutes", "10", "--reason", "r"
    )
    assert (code, err) == (
        1,
        "sessiongate: error: rule 'default' allows at most 5 minutes (invalid_duration)\n",
    )

    # The API's own parser refuses an invalid policy before anything is signed or written.
    path.write_text(json.dumps({"version": 1, "rules": [{"name": "x", "levels": []}]}))
    code, _, err = deployer.run("policy", "sign", str(path), "--key-id", POLICY_KEY, "--put", name)
    assert code == 1
    assert "(invalid_policy)" in err
    assert json.loads(stack.ssm_parameter())["version"] == 2
    # Without --put: the envelope for a named parameter and version, on stdout.
    path.write_text(json.dumps(changed))
    envelope = deployer.json("policy", "sign", str(path), "--key-id", POLICY_KEY, "--parameter", name)
    assert (envelope["parameter"], envelope["version"], envelope["policy"]) == (name, 3, changed)


ORG = "o-exampleorg1"


def test_a_person_in_a_member_account_calls_with_her_own_identity(
    deployed: Stack,  # noqa: F811
    member: Any,  # noqa: F811
) -> None:
    """The endpoint is the engine's; the credentials are alice's in the member account (e.g. her Identity
    Center session there). The resource policy admits the organization; the request is for her, there."""
    gateway = Gateway(
        handler("request_api"),
        policy=deployed_policy(OrganizationId=ORG),
        organizations={deployed.settings.account_id: ORG, MEMBER: ORG, "999999999999": "o-otherorg111"},
    )
    instance = member_instance(deployed, member)
    created = Cli(gateway, MEMBER_ALICE).json("request", "--instance", instance, "--reason", "replication")
    assert (created["request"]["account"], created["request"]["principal_arn"]) == (MEMBER, MEMBER_ALICE)
    # Someone of another organization is refused by API Gateway: the function never sees the call.
    seen = len(gateway.seen)
    code, _, err = Cli(gateway, "arn:aws:iam::999999999999:user/mallory").run("list")
    assert code == 1
    assert "(forbidden)" in err
    assert len(gateway.seen) == seen


def test_without_an_organization_only_the_engine_account_may_call(
    deployed: Stack,  # noqa: F811
    member: Any,  # noqa: F811
) -> None:
    gateway = Gateway(handler("request_api"), organizations={MEMBER: ORG})
    code, _, err = Cli(gateway, MEMBER_ALICE).run("list")
    assert code == 1
    assert "(forbidden)" in err
    assert gateway.seen == []
    assert Cli(gateway, ALICE).run("list")[0] == 0


def test_request_sends_documents_and_a_scheduled_start_and_shows_the_apis_refusal(
    deployed: Stack,  # noqa: F811
    gateway: Gateway,
) -> None:
    """Issue 18 through the CLI: --document and --start-at reach the API; the default policy's rule
    lists no documents and no lead time, so the API refuses each, one readable line, exit 1."""
    alice = Cli(gateway, ALICE)
    instance = deployed.instance()
    argv = ["request", "--instance", instance, "--reason", "x"]
    code, _, err = alice.run(*argv, "--document", "AWS-StartPortForwardingSession")
    assert code == 1
    assert "(document_not_allowed)" in err
    assert json.loads(gateway.seen[-1]["body"])["documents"] == ["AWS-StartPortForwardingSession"]
    code, _, err = alice.run(*argv, "--start-at", "2026-11-24T10:00:00Z")
    assert code == 1
    assert "does not allow a scheduled start (no max_lead_minutes) (start_at_not_allowed)" in err
    assert json.loads(gateway.seen[-1]["body"])["start_at"] == "2026-11-24T10:00:00Z"
