"""``sandbox`` command: play scenarios offline (no AWS account, no Docker)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = ROOT / "scenarios" / "walkthrough.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sandbox",
        description="Run SessionGate's real handlers on an in-process AWS (moto) with a virtual clock.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="play a scenario file and check its expectations")
    run.add_argument("scenario", type=Path, help="scenario YAML (see scenarios/ and the README)")
    run.add_argument("--json", action="store_true", help="print the machine-readable report")
    demo = sub.add_parser("demo", help="play the walkthrough (scenarios/walkthrough.yaml) as a timeline")
    demo.add_argument("--json", action="store_true", help="print the machine-readable report")
    console = sub.add_parser(
        "console", help="the web console (sessiongate console) on a sandbox world, one per person"
    )
    console.add_argument("--as", dest="people", action="append", metavar="NAME", help="person (repeatable)")
    console.add_argument("--port", type=int, default=0, help="first local port (default: free ones)")
    console.add_argument("--no-browser", action="store_true", help="print the URLs, open no browser")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    if args.command == "console":
        from .console import serve

        return serve(args.people or [], args.port, open_browser=not args.no_browser)
    from .scenario import ScenarioError, run_file

    path = WALKTHROUGH if args.command == "demo" else args.scenario
    try:
        report = run_file(path)
    except ScenarioError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print_timeline(report)
    return 0 if report.passed else 1


def print_timeline(report: object) -> None:
    from .scenario import Report

    assert isinstance(report, Report)
    print(f"== {report.scenario}: {report.description}")
    for line in report.timeline:
        print(f"{line['at'][11:19]}  {line['actor']:<12} {line['text']}")
    for failure in report.failed_invocations:
        print(f"FAILED INVOCATION {failure['function']} ({failure['trigger']}): {failure['error']}")
    passed = sum(c.passed for c in report.checks)
    verdict = "PASSED" if report.passed else "FAILED"
    print(f"== {verdict}: {passed}/{len(report.checks)} checks passed, {len(report.events)} lifecycle events")
