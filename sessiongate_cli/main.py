"""``sessiongate`` command line: the native request path (and Change Manager requests) from a terminal.

    sessiongate request --instance i-0123456789abcdef0 --minutes 30 --reason "restart nginx" [--account ID]
    sessiongate list [--approvals]
    sessiongate approve|reject|cancel|revoke|status ID
    sessiongate extend ID --minutes 15 --reason "still debugging"
    sessiongate connect ID          # waits for the grant, then runs `aws ssm start-session`
    sessiongate change-request ...  # accounts that use Change Manager
    sessiongate doctor [--stack-name sessiongate]   # is the deployment protected? (read-only)
    sessiongate console [--port N] [--no-browser]   # a web page on this machine, signed as you
    sessiongate policy sign POLICY.json --key-id KEY_ARN --put PARAMETER    # deployers only
    sessiongate policy test POLICY.json CASES.yaml    # offline: exit 1 when a case's decision differs
    sessiongate audit --since 2026-11-01 [--person alice] [--format csv]   # auditors (history export)

Credentials are the user's normal AWS credentials (``--profile``, environment, SSO); the endpoint comes
from ``--endpoint`` or ``SESSIONGATE_ENDPOINT`` (the stack output ``RequestApiEndpoint``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError

from .client import ApiClient, CliError, HttpTransport, Transport, check_endpoint, region_of

CHANGE_TEMPLATE = "AllowSsmSessionStartTemplate"
CHANGE_RUNBOOK = "AllowSsmSessionStartRunbook"
TERMINAL = {"REVOKED", "EXPIRED", "REJECTED", "CANCELLED", "DENIED"}
MAX_LIMIT = 50  # the API's page size cap
NO_REGION = "no AWS region: pass --region, set AWS_REGION or give your profile a region"

Runner = Callable[[list[str]], int]


def _run(command: list[str]) -> int:
    # The command is built from a validated instance id and the user's own profile/region options.
    return subprocess.call(command)  # noqa: S603


@dataclass
class Context:
    """What the commands need; tests replace the transport, the session, the runner and the sleep."""

    args: argparse.Namespace
    out: TextIO
    transport: Transport | None = None
    session: Any = None
    runner: Runner = _run
    sleep: Callable[[float], None] = time.sleep
    _api: ApiClient | None = field(default=None, init=False)

    def boto_session(self) -> Any:
        if self.session is None:
            import boto3
            from botocore.exceptions import ProfileNotFound

            try:
                self.session = boto3.Session(profile_name=self.args.profile, region_name=self.args.region)
            except ProfileNotFound as exc:
                raise CliError(str(exc), "profile_not_found") from None
        return self.session

    def api(self) -> ApiClient:
        if self._api is None:
            endpoint = self.args.endpoint or os.environ.get("SESSIONGATE_ENDPOINT", "")
            if not endpoint:
                raise CliError(
                    "no API endpoint: pass --endpoint or set SESSIONGATE_ENDPOINT "
                    "(the stack output RequestApiEndpoint)",
                    "no_endpoint",
                )
            check_endpoint(endpoint)  # a mistyped URL is reported as such, whatever the credentials
            session = self.boto_session()
            credentials = session.get_credentials()
            if credentials is None:
                raise CliError(
                    "no AWS credentials found: configure a profile (--profile) or sign in (aws sso login)",
                    "no_credentials",
                )
            region = self.args.region or region_of(endpoint) or session.region_name
            if not region:
                raise CliError(NO_REGION, "no_region")
            self._api = ApiClient(
                endpoint, credentials.get_frozen_credentials(), region, self.transport or HttpTransport()
            )
        return self._api

    def region(self) -> str | None:
        endpoint = self.args.endpoint or os.environ.get("SESSIONGATE_ENDPOINT", "")
        return self.args.region or region_of(endpoint) or self.boto_session().region_name

    def aws_region(self) -> str:
        """The region for direct AWS calls (--region, else the profile's or AWS_REGION): never guessed."""
        region = self.args.region or self.boto_session().region_name
        if not region:
            raise CliError(NO_REGION, "no_region")
        return str(region)


# ------------------------------------------------------------------------------------------ commands
def cmd_request(ctx: Context) -> Any:
    a = ctx.args
    body: dict[str, Any] = {"instance_id": a.instance, "reason": a.reason}
    if a.minutes is not None:
        body["duration_minutes"] = a.minutes
    if a.ticket:
        body["ticket"] = a.ticket
    if a.break_glass:
        body["break_glass"] = True
    if a.account:
        body["account"] = a.account
    if a.start_at:
        body["start_at"] = a.start_at
    if a.document:
        body["documents"] = a.document
    return ctx.api().call("POST", "/requests", body)


def cmd_list(ctx: Context) -> Any:
    path = "/approvals" if ctx.args.approvals else "/requests"
    return ctx.api().call("GET", path, query={"limit": str(ctx.args.limit)})


def cmd_status(ctx: Context) -> Any:
    return ctx.api().call("GET", f"/requests/{_id(ctx.args.id)}")


def _decision(verb: str, field_name: str) -> Callable[[Context], Any]:
    def run(ctx: Context) -> Any:
        value = getattr(ctx.args, field_name, None)
        body = {field_name: value} if value else {}
        return ctx.api().call("POST", f"/requests/{_id(ctx.args.id)}/{verb}", body)

    return run


def cmd_extend(ctx: Context) -> Any:
    body: dict[str, Any] = {"reason": ctx.args.reason}
    if ctx.args.minutes is not None:
        body["duration_minutes"] = ctx.args.minutes
    return ctx.api().call("POST", f"/requests/{_id(ctx.args.id)}/extend", body)


def cmd_connect(ctx: Context) -> Any:
    """Wait until the request's grant is ACTIVE, then start the session (the tag may take seconds)."""
    request_id = _id(ctx.args.id)
    waited = 0.0
    while True:
        request = ctx.api().call("GET", f"/requests/{request_id}")["request"]
        status = request["status"]
        if status == "ACTIVE":
            break
        if status in TERMINAL or (status == "PENDING" and not ctx.args.wait_for_approval):
            hint = " (use --wait-for-approval to wait for approvers)" if status == "PENDING" else ""
            raise CliError(f"request {request_id} is {status}: no session to start{hint}", "not_active")
        if waited >= ctx.args.timeout:
            raise CliError(f"request {request_id} is still {status} after {ctx.args.timeout:g} s", "timeout")
        if ctx.args.output == "text":
            print(f"waiting: request {request_id} is {status} ...", file=sys.stderr)
        ctx.sleep(ctx.args.interval)
        waited += ctx.args.interval
    aws = shutil.which("aws")
    if aws is None:
        raise CliError(
            "the AWS CLI (aws) is not on PATH; install it and its Session Manager plugin", "no_aws"
        )
    command = [aws, "ssm", "start-session", "--target", request["instance_id"]]
    region = ctx.region()
    if region:
        command += ["--region", region]
    if ctx.args.profile:
        command += ["--profile", ctx.args.profile]
    code = ctx.runner(command)
    if code:
        raise CliError(f"aws ssm start-session exited with {code}", "session_failed")
    return {"request": request, "session": "ended"}


def cmd_change_request(ctx: Context) -> Any:
    """A Change Manager change request (template AllowSsmSessionStartTemplate) for accounts that use it."""
    from botocore.exceptions import BotoCoreError, ClientError

    a = ctx.args
    ssm = ctx.boto_session().client("ssm", region_name=ctx.aws_region())
    try:
        response = ssm.start_change_request_execution(
            DocumentName=CHANGE_TEMPLATE,
            ChangeRequestName=a.reason[:1024],
            Runbooks=[
                {
                    "DocumentName": CHANGE_RUNBOOK,
                    "DocumentVersion": "$DEFAULT",
                    "Parameters": {
                        "InstanceId": [a.instance],
                        "PrincipalType": [a.principal_type.capitalize()],
                        "PrincipalName": [a.principal_name],
                        "ValidityMinutes": [str(a.minutes)],
                    },
                }
            ],
        )
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"Change Manager refused the request: {exc}", "change_manager") from None
    return {"change_request": {"automation_execution_id": response["AutomationExecutionId"]}}


def cmd_doctor(ctx: Context) -> Any:
    """Check a deployment (read-only, with the caller's credentials); see :mod:`sessiongate_cli.doctor`."""
    from botocore.exceptions import ClientError

    from . import doctor

    session = ctx.boto_session()
    if session.get_credentials() is None:
        raise CliError(
            "no AWS credentials found: configure a profile (--profile) or sign in (aws sso login)",
            "no_credentials",
        )
    region = ctx.aws_region()
    try:
        checks = doctor.run(session, ctx.args.stack_name, region)
    except doctor.StackNotFound as exc:
        raise CliError(str(exc), "stack_not_found", status=2) from None
    except ClientError as exc:
        raise CliError(f"cannot read stack {ctx.args.stack_name!r}: {exc}", "cannot_read_stack") from None
    result = doctor.as_json(ctx.args.stack_name, checks)
    result["doctor"]["text"] = doctor.as_text(checks)
    result["doctor"]["exit_code"] = doctor.exit_code(checks)
    return result


def cmd_outbox(ctx: Context) -> Any:
    """Operators: publish again what PublishFailuresQueue points at (:mod:`sessiongate_cli.outbox`)."""
    from botocore.exceptions import ClientError

    from . import outbox

    try:
        return outbox.command(ctx.boto_session(), ctx.aws_region(), ctx.args.stack_name)
    except ClientError as exc:
        raise CliError(f"cannot redrive for stack {ctx.args.stack_name!r}: {exc}", "redrive_failed") from None


def cmd_policy(ctx: Context) -> Any:
    """Deployers: validate an approval policy with the API's own parser, sign it with the stack's
    ApprovalPolicyKey (only DeployerArns may GenerateMac with it) and optionally write the parameter."""
    from botocore.exceptions import ClientError

    from sessiongate.access_requests.policy import PolicyError, policy_digest
    from sessiongate.adapters.kms import Macs, MacUnavailable
    from sessiongate.adapters.policy_source import next_version, put_signed, sign_policy

    a = ctx.args
    try:
        with open(a.file, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the policy {a.file}: {exc}", "invalid_policy") from None
    if a.action == "test":
        return _policy_test(document, a.cases)
    if not a.key_id:
        raise CliError("sign needs --key-id (the stack output ApprovalPolicyKeyArn)", "no_key")
    session = ctx.boto_session()
    region = ctx.aws_region()
    ssm = session.client("ssm", region_name=region)
    # The signature binds the parameter and the version this write will get (so a replay, which is a
    # later version, does not verify): without --put, --parameter and --version say which. It also
    # binds a serial, this machine's clock in milliseconds: the API refuses any envelope signed before
    # the newest one it accepted (a replay at a deleted and re-created parameter), so signing again is
    # all a deployer does after re-creating the parameter.
    parameter = a.put or a.parameter
    if not parameter:
        raise CliError("name the policy parameter: --put PARAMETER (or --parameter)", "no_parameter")
    try:
        version = a.version or next_version(ssm, parameter)
        signed = sign_policy(
            document,
            Macs(session.client("kms", region_name=region)),
            a.key_id,
            parameter=parameter,
            version=version,
        )
    except PolicyError as exc:
        raise CliError(f"the policy is invalid: {exc}", "invalid_policy") from None
    except (MacUnavailable, ClientError) as exc:
        raise CliError(f"KMS did not sign the policy (are you a deployer?): {exc}", "sign_failed") from None
    if not a.put:
        return json.loads(signed.dumps())
    try:
        put_signed(ssm, signed)
    except ClientError as exc:
        raise CliError(f"cannot write parameter {a.put}: {exc}", "put_failed") from None
    except PolicyError as exc:
        raise CliError(str(exc), "put_raced") from None
    return {
        "policy": {
            "parameter": a.put,
            "version": version,
            "serial": signed.serial,
            "digest": policy_digest(document),
        }
    }


def _policy_test(document: Any, cases_file: str | None) -> Any:
    """Offline: evaluate the policy (a document, or a signed envelope's) against the cases; no AWS call."""
    from datetime import UTC, datetime

    from sessiongate.access_requests.policy import ENVELOPE_KEYS, ApprovalPolicy, PolicyError
    from sessiongate.access_requests.policy_cases import CaseError, run_cases

    if not cases_file:
        raise CliError("name the cases file: sessiongate policy test POLICY.json CASES.yaml", "no_cases")
    if isinstance(document, dict) and set(document) == ENVELOPE_KEYS:
        document = document["policy"]
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency of the package
        raise CliError("policy test needs PyYAML (pip install PyYAML)", "no_yaml") from None
    try:
        with open(cases_file, encoding="utf-8") as handle:
            cases = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"cannot read the cases {cases_file}: {exc}", "invalid_cases") from None
    try:
        policy = ApprovalPolicy.parse(document)
        results = run_cases(policy, cases, datetime.now(UTC))
    except PolicyError as exc:
        raise CliError(f"the policy is invalid: {exc}", "invalid_policy") from None
    except CaseError as exc:
        raise CliError(f"the cases are invalid: {exc}", "invalid_cases") from None
    failed = [r for r in results if not r.passed]
    summary = f"{len(results) - len(failed)} passed, {len(failed)} failed"
    return {
        "policy_test": {
            "results": [r.as_dict() for r in results],
            "passed": len(results) - len(failed),
            "failed": len(failed),
            "text": "\n".join([*(r.line() for r in results), summary]),
            "exit_code": 1 if failed else 0,
        }
    }


# ------------------------------------------------------------------------------------------ output
def render(result: Any, fmt: str) -> str:
    if "audit" in result:  # rendered by the command in its own --format
        return str(result["audit"])
    if "policy_test" in result:
        report = dict(result["policy_test"])
        text = report.pop("text")
        report.pop("exit_code")
        return json.dumps({"policy_test": report}, indent=2, sort_keys=True) if fmt == "json" else text
    if "outbox_redrive" in result:
        report = dict(result["outbox_redrive"])
        text = report.pop("text")
        report.pop("exit_code")
        return json.dumps({"outbox_redrive": report}, indent=2, sort_keys=True) if fmt == "json" else text
    if "doctor" in result:
        report = dict(result["doctor"])
        text = report.pop("text")
        report.pop("exit_code")
        return json.dumps({"doctor": report}, indent=2, sort_keys=True) if fmt == "json" else text
    if "chat" in result:  # sessiongate chat (issue 19)
        from . import chat

        return chat.render(result["chat"], fmt)
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=True)
    if "requests" in result:
        rows = result["requests"]
        if not rows:
            return "no requests"
        lines = [f"{'REQUEST':<38} {'STATUS':<10} {'INSTANCE':<20} {'MIN':>4}  REQUESTER"]
        for r in rows:
            lines.append(
                f"{r['request_id']:<38} {r['status']:<10} {r['instance_id']:<20} {r['duration_minutes']:>4}"
                f"  {r['requester_arn']}"
            )
        return "\n".join(lines)
    if "request" in result:
        r = result["request"]
        lines = [
            f"request    {r['request_id']}",
            f"status     {r['status']}" + ("  [BREAK-GLASS]" if r.get("break_glass") else ""),
            f"account    {r['account']}",
            f"instance   {r['instance_id']}",
            f"principal  {r['principal_arn']}",
            f"requester  {r['requester_arn']}",
            f"duration   {r['duration_minutes']} min",
            f"reason     {r['reason']}",
        ]
        for level in r.get("approval_progress", []):
            count = f"{level['approved']}/{level['required']}"
            lines.append(f"level {level['level']}    {level['name']}: {count}")
        lines += [f"approved   by {a['approver_arn']} at {a['at']}" for a in r.get("approvals", [])]
        grant = r.get("grant") or {}
        if grant.get("expires_at"):
            lines.append(f"expires    {grant['expires_at']}")
        if r.get("comment"):
            lines.append(f"comment    {r['comment']}")
        if r.get("extends"):
            lines.append(f"extends    {r['extends']}")
        if r["status"] == "ACTIVE":
            lines.append(f"connect    sessiongate connect {r['request_id']}")
        return "\n".join(lines)
    if "policy" in result and "parameter" in result["policy"]:
        p = result["policy"]
        return (
            f"policy written to {p['parameter']} (version {p['version']}, serial {p['serial']}, "
            f"sha256 {p['digest']})"
        )
    if "change_request" in result:
        return f"change request started: {result['change_request']['automation_execution_id']}"
    return json.dumps(result, sort_keys=True)


# ------------------------------------------------------------------------------------------ parser
def _id(value: str) -> str:
    value = value.strip()
    if not value or not all(c.isalnum() or c == "-" for c in value) or len(value) > 64:
        raise CliError(f"{value[:64]!r} is not a request id", "bad_id")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _limit(text: str) -> int:
    value = _positive(text)
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LIMIT}")
    return value


def _account(text: str) -> str:
    value = text.strip()
    if len(value) != 12 or not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a 12-digit AWS account id")
    return value


def build_parser() -> argparse.ArgumentParser:
    # Options of every command; the API's commands also take --endpoint (change-request calls SSM).
    aws = argparse.ArgumentParser(add_help=False)
    aws.add_argument("--profile", default=argparse.SUPPRESS, help="AWS profile to sign with")
    aws.add_argument("--region", default=argparse.SUPPRESS, help="AWS region of the API")
    aws.add_argument(
        "--output", choices=["text", "json"], default=argparse.SUPPRESS, help="output format (default: text)"
    )
    common = argparse.ArgumentParser(add_help=False, parents=[aws])
    common.add_argument("--endpoint", default=argparse.SUPPRESS, help="API URL (or SESSIONGATE_ENDPOINT)")
    parser = argparse.ArgumentParser(
        prog="sessiongate",
        description="Request, approve and use time-boxed SSM Session Manager access (SessionGate).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, help_text: str, fn: Callable[[Context], Any], *, api: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common if api else aws])
        p.set_defaults(fn=fn)
        return p

    p = add("request", "ask for a shell on an instance", cmd_request)
    p.add_argument("--instance", required=True, help="EC2 instance id (i-...)")
    p.add_argument("--minutes", type=_positive, help="how long the access lasts once granted")
    p.add_argument("--reason", required=True, help="why you need it (shown to approvers)")
    p.add_argument("--ticket", help="ticket reference, e.g. INC-1234")
    p.add_argument(
        "--account",
        type=_account,
        help="the instance's AWS account: only your own (the account you sign in); to use an instance in "
        "another account, sign in there",
    )
    p.add_argument(
        "--document",
        action="append",
        metavar="NAME",
        help="a Session Manager document you need besides the shell, e.g. AWS-StartPortForwardingSession "
        "(repeatable; the rule must allow it)",
    )
    p.add_argument(
        "--start-at",
        metavar="TIME",
        help="scheduled start, ISO 8601 with zone (2026-01-05T22:00:00Z), within the rule's max_lead_minutes",
    )
    p.add_argument(
        "--break-glass",
        action="store_true",
        help="emergency: approve your own request (only where the policy allows; capped, flagged, notified)",
    )
    p = add("list", "list your requests, or those waiting for your approval", cmd_list)
    p.add_argument("--approvals", action="store_true", help="requests you may approve now")
    p.add_argument("--limit", type=_limit, default=25, help=f"at most this many (1-{MAX_LIMIT})")
    p = add("status", "show one request", cmd_status)
    p.add_argument("id", help="request id")
    p = add("approve", "approve a request of someone else", _decision("approve", "comment"))
    p.add_argument("id", help="request id")
    p.add_argument("--comment", help="optional comment")
    p = add("reject", "reject a request", _decision("reject", "comment"))
    p.add_argument("id", help="request id")
    p.add_argument("--comment", required=True, help="why (shown to the requester)")
    p = add("cancel", "withdraw your pending request", _decision("cancel", "reason"))
    p.add_argument("id", help="request id")
    p.add_argument("--reason", help="optional reason")
    p = add("revoke", 'end access now ("I\'m done", or as an approver)', _decision("revoke", "reason"))
    p.add_argument("id", help="request id")
    p.add_argument("--reason", help="optional reason")
    p = add("extend", "ask for more time on active access (needs a new approval)", cmd_extend)
    p.add_argument("id", help="request id of the active access")
    p.add_argument("--minutes", type=_positive, help="length of the extension from its grant")
    p.add_argument("--reason", required=True, help="why you need more time")
    p = add("connect", "wait for the grant, then run `aws ssm start-session`", cmd_connect)
    p.add_argument("id", help="request id")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the grant (default 120)")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between checks (default 3)")
    p.add_argument("--wait-for-approval", action="store_true", help="also wait while the request is PENDING")
    from . import chat

    chat.register(add)
    p = add(
        "change-request",
        f"create a Change Manager request ({CHANGE_TEMPLATE}) instead of a native one",
        cmd_change_request,
        api=False,
    )
    p.add_argument("--instance", required=True, help="EC2 instance id (i-...)")
    p.add_argument("--principal-type", choices=["user", "role"], required=True, help="who receives access")
    p.add_argument("--principal-name", required=True, help="IAM user or role name that receives access")
    p.add_argument("--minutes", type=_positive, required=True, help="validity in minutes")
    p.add_argument("--reason", required=True, help="change request name / reason")
    p = add(
        "doctor",
        "check a deployment: guard or SCP in place, session-tag trust, table policies, alarm subscribers "
        "(read-only; exit 0 all OK, 1 something missing or not checkable, 2 usage error)",
        cmd_doctor,
    )
    p.add_argument("--stack-name", default="sessiongate", help="SessionGate's stack (default: sessiongate)")
    p = add(
        "outbox",
        "operators: publish again the lifecycle notifications PublishFailuresQueue points at, from the "
        "streams (exit 1 when a message is left in the queue)",
        cmd_outbox,
        api=False,
    )
    p.add_argument("action", choices=["redrive"], help="redrive: republish, then delete each message")
    p.add_argument("--stack-name", default="sessiongate", help="SessionGate's stack (default: sessiongate)")
    p = add(
        "policy",
        "deployers: sign the approval policy (and write its parameter), or test it offline against cases "
        "(exit 1 when a case's decision differs)",
        cmd_policy,
    )
    p.add_argument(
        "action",
        choices=["sign", "test"],
        help="sign: validate, then sign with ApprovalPolicyKey; test: evaluate offline against CASES",
    )
    p.add_argument("file", help="the policy document (JSON; for test also a signed envelope)")
    p.add_argument("cases", nargs="?", help="test: the cases file (YAML: request facts -> expected decision)")
    p.add_argument("--key-id", help="sign: the stack output ApprovalPolicyKeyArn")
    p.add_argument("--put", metavar="PARAMETER", help="write the signed envelope to this SSM parameter")
    p.add_argument("--parameter", help="without --put: the parameter the envelope is for")
    p.add_argument("--version", type=_positive, help="without --put: the parameter version it is for")
    from . import audit  # sessiongate audit (issue 17): its own module

    audit.add_parser(add)
    from . import console  # the local web page (sessiongate_cli/console.py)

    console.add_command(add)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: Transport | None = None,
    session: Any = None,
    runner: Runner | None = None,
    sleep: Callable[[float], None] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    for name, default in (("endpoint", None), ("profile", None), ("region", None), ("output", "text")):
        if not hasattr(args, name):
            setattr(args, name, default)
    ctx = Context(args, out, transport, session)
    if runner is not None:
        ctx.runner = runner
    if sleep is not None:
        ctx.sleep = sleep
    try:
        result = args.fn(ctx)
    except CliError as exc:
        if args.output == "json":
            print(json.dumps({"error": exc.code, "message": exc.message, "status": exc.status}), file=err)
        else:
            print(f"sessiongate: error: {exc.message} ({exc.code})", file=err)
        return 2 if args.command == "doctor" and exc.status == 2 else 1
    except KeyboardInterrupt:
        print("sessiongate: interrupted", file=err)
        return 130
    except BotoCoreError as exc:  # credentials expired, SSO token missing, ...: one line, no traceback
        print(f"sessiongate: error: {exc}", file=err)
        return 1
    print(render(result, args.output), file=out)
    if isinstance(result, dict) and "doctor" in result:
        return int(result["doctor"]["exit_code"])
    if isinstance(result, dict) and "outbox_redrive" in result:
        return int(result["outbox_redrive"]["exit_code"])
    if isinstance(result, dict) and "policy_test" in result:
        return int(result["policy_test"]["exit_code"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
