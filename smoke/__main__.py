"""``python -m smoke plan|run|teardown`` (``make smoke-plan``, ``make smoke``, ``make smoke-teardown``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from sessiongate_cli.client import HttpTransport

from . import plan as smoke_plan
from . import state as state_file
from .calls import CallCounter
from .plan import InputError
from .run import Deps, run
from .teardown import teardown


def _call(command: list[str]) -> int:
    # Fixed sam sub-commands; the only variable parts are validated (stack suffix, region, ARN pattern).
    return subprocess.call(command)  # noqa: S603


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smoke", description=__doc__)
    parser.add_argument("--sam", default="sam", help="the SAM CLI to run (make uses .venv-sam/bin/sam)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plan", help="print what a run would create and call (no AWS call)")
    sub.add_parser("run", help="deploy, request, approve, measure, tear down (needs a real account)")
    teardown_parser = sub.add_parser("teardown", help="delete what the state file lists (after a crash)")
    teardown_parser.add_argument(
        "--state", type=Path, help="state file (default: SESSIONGATE_SMOKE_STATE or .smoke/state.json)"
    )
    return parser


def _session(region: str) -> Any:
    import boto3

    return boto3.session.Session(region_name=region)


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    session: Any = None,
    runner: Any = None,
    transport: Any = None,
) -> int:
    """Exit 0: passed; 1: a step, a check or the teardown failed (see the report); 2: an input is
    missing or wrong, or the account is not the one named (nothing was created); 130: interrupted."""
    env = os.environ if env is None else env
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    runner = runner or _call
    try:
        if args.command == "plan":
            inputs = smoke_plan.read_inputs(
                env, region=smoke_plan.default_region(env), sam=args.sam, strict=False
            )
            out.write(json.dumps(smoke_plan.plan(inputs), indent=2) + "\n")
            return 0
        if args.command == "teardown":
            return _teardown(args, env, out, session, runner)
        inputs = smoke_plan.read_inputs(env, region=smoke_plan.default_region(env), sam=args.sam)
        deps = Deps(session or _session(inputs.region), runner, transport or HttpTransport(), out)
        return run(inputs, deps)
    except InputError as exc:
        err.write(f"smoke: {exc}\n")
        return 2
    except (ClientError, BotoCoreError) as exc:
        # Before anything was created (preflight): no credentials, no permission to ask, ...
        err.write(f"smoke: cannot check the account: {exc}\n")
        return 2
    except KeyboardInterrupt:
        # The run's teardown has run by now (try/finally); what it could not delete is in the state file.
        err.write("smoke: interrupted; run `make smoke-teardown` if the state file still lists resources\n")
        return 130


def _teardown(
    args: argparse.Namespace, env: Mapping[str, str], out: TextIO, session: Any, runner: Any
) -> int:
    path = args.state or Path(env.get(smoke_plan.STATE_ENV, "").strip() or smoke_plan.DEFAULT_STATE)
    st = state_file.load(path)
    if st is None or st.empty():
        out.write(f"smoke: nothing to tear down ({path} lists nothing)\n")
        return 0
    counter = CallCounter()
    boto = session or _session(st.region)

    def client(service: str) -> Any:
        return counter.client(boto, service)

    # In another account every delete would answer NoSuchEntity ("already gone") and the state would be
    # dropped with the resources still there: refuse instead.
    account = client("sts").get_caller_identity()["Account"]
    if account != st.account:
        raise InputError(
            f"{path} lists resources in account {st.account}, but the credentials are of {account}"
        )

    command = smoke_plan.delete_command(st.sam, st.stack_name, st.region)
    steps = teardown(st, path, client, runner, delete_command=command)
    out.write(json.dumps({"teardown": steps, "aws_calls": counter.report()}, indent=2) + "\n")
    return 0 if all(s["ok"] for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
