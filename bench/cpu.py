"""SessionGate's own warm CPU per operation, with every AWS call answered in-process (no network, no moto).

Each operation runs in a fresh process (``python -m bench.cpu --child ...``) with its function's template
environment and the canned AWS answers of ``bench.cold_start`` (botocore ``before-send``: botocore still
builds, signs and parses every request and response as it would against AWS). The handler is invoked once
(the cold start, not counted) and ``--warmup`` more times, then ``--iterations`` times, each measured with
``time.process_time`` (the DynamoDB items the canned answers serve are reset before each run, so every run
takes the same path: the benchmark checks that each run made the same AWS calls with the same result).
Reported: CPU ms per operation (median, p95) and, from a ``cProfile`` run of the same loop, where that CPU
goes: SessionGate's code (``layers/sessiongate``, ``functions/``), botocore + boto3 (serialising, signing,
parsing), Powertools, and the benchmark's own canned-answer harness (which stands in for the network and
is not part of a Lambda's CPU). Standard-library time is charged to the package that called it.

    python -m bench.cpu [--iterations 200] [--warmup 20]

The profile shares come from a profiled run (cProfile slows small calls more than large ones); the
per-operation milliseconds come from the unprofiled runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Operation -> the handler that performs it (bench.cold_start's scenarios: a Change Manager grant, its
# revocation, the adapter turning an approved change request into AccessApproved, the request API's create).
OPERATIONS = {
    "grant": "grant_access",
    "revoke": "revoke_access",
    "change manager adapt": "adapt_change_request",
    "API create": "request_api",
}
CATEGORIES = ("sessiongate", "botocore+boto3", "powertools", "harness", "other")


# -- the child: one handler, N warm invocations --------------------------------------------------
def _category(filename: str) -> str | None:
    """The package a profiled function belongs to; ``None`` for the standard library and builtins."""
    path = filename.replace(os.sep, "/")
    if "/site-packages/" in path or "/dist-packages/" in path:
        if any(f"/{p}/" in path for p in ("botocore", "boto3", "s3transfer", "jmespath")):
            return "botocore+boto3"
        return "powertools" if "/aws_lambda_powertools/" in path else "other"
    root = f"{ROOT.as_posix()}/"
    if path.startswith(root):
        inside = path.removeprefix(root)
        if inside.startswith(("layers/sessiongate/", "functions/")):
            return "sessiongate"
        return "harness" if inside.startswith("bench/") else "other"
    return None  # standard library, builtins (``~``), frozen modules: charged to their callers


def shares(stats: dict[Any, Any]) -> dict[str, float]:
    """Self time per category, standard-library self time charged to its callers' categories.

    ``stats`` is ``pstats.Stats.stats``: ``func -> (cc, nc, tottime, cumtime, callers)``, where
    ``callers`` maps each caller to the time spent in ``func`` under it (``(cc, nc, tt, ct)``).
    """
    memo: dict[Any, dict[str, float]] = {}

    def owner(func: Any, visiting: frozenset[Any]) -> dict[str, float]:
        if func in memo:
            return memo[func]
        own = _category(func[0])
        if own is not None:
            return {own: 1.0}
        weights: dict[str, float] = {}
        callers = stats.get(func, (0, 0, 0.0, 0.0, {}))[4]
        for caller, value in callers.items():
            if caller in visiting:
                continue
            weight = value[2] if isinstance(value, tuple) else 0.0
            for cat, frac in owner(caller, visiting | {func}).items():
                weights[cat] = weights.get(cat, 0.0) + weight * frac
        total = sum(weights.values())
        result = {k: v / total for k, v in weights.items()} if total > 0 else {"other": 1.0}
        if not visiting:
            memo[func] = result
        return result

    out = dict.fromkeys(CATEGORIES, 0.0)
    for func, (_cc, _nc, tottime, _ct, _callers) in stats.items():
        for cat, frac in owner(func, frozenset()).items():
            out[cat] = out.get(cat, 0.0) + tottime * frac
    return out


def child(handler: str, scenario_path: str, iterations: int, warmup: int) -> dict[str, Any]:
    import cProfile
    import importlib
    import pstats

    import botocore.handlers

    from bench import cold_start_child
    from bench.cold_start_child import Canned

    with open(scenario_path) as f:
        scenario = json.load(f)
    os.environ.update(scenario["environment"])
    canned = Canned(scenario["responses"], scenario["items"], scenario["keys"])
    botocore.handlers.BUILTIN_HANDLERS.append(("before-send", canned))
    module = importlib.import_module(f"functions.{handler}.app")
    context = cold_start_child._Context(handler)

    def once() -> tuple[float, list[str], Any]:
        canned.items = dict(scenario["items"])
        canned.seen = {}
        cold_start_child.CALLS.clear()
        started = time.process_time()
        result = module.lambda_handler(json.loads(json.dumps(scenario["event"])), context)
        elapsed = time.process_time() - started
        return elapsed, list(cold_start_child.CALLS), _outcome(result)

    once()  # the cold start (it also makes first-use calls a warm run does not): not counted
    _, calls, outcome = once()  # the warm path every measured run must take
    for _ in range(warmup):
        once()
    samples = []
    for _ in range(iterations):
        elapsed, run_calls, run_outcome = once()
        if run_calls != calls or run_outcome != outcome:
            raise RuntimeError(
                f"bench.cpu: {handler} took another path on a warm run: {run_calls} -> {run_outcome}, "
                f"first run {calls} -> {outcome}"
            )
        samples.append(elapsed)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(max(20, iterations // 4)):
        once()
    profiler.disable()
    by_category = shares(pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    return {"samples": samples, "calls": calls, "outcome": outcome, "profile": by_category}


def _outcome(result: Any) -> Any:
    if isinstance(result, dict) and "statusCode" in result:
        return f"HTTP {result['statusCode']}"
    if isinstance(result, dict) and "result" in result:
        return result["result"]
    return result


# -- the parent: one fresh process per operation -------------------------------------------------
def measure(operation: str, iterations: int, warmup: int) -> dict[str, Any]:
    from bench.cold_start import scenario

    handler = OPERATIONS[operation]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(scenario(ROOT, handler), f)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONGATE_", "POWERTOOLS_", "AWS_"))}
    env["PYTHONPATH"] = f"{ROOT / 'layers' / 'sessiongate'}{os.pathsep}{ROOT}"
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.cpu", "--child", handler, f.name, str(iterations), str(warmup)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(f.name)
    marker = [line for line in out.stdout.splitlines() if line.startswith("BENCH_CPU ")]
    if out.returncode != 0 or not marker:
        raise RuntimeError(f"bench.cpu: {operation} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(marker[-1].removeprefix("BENCH_CPU "))
    samples = sorted(data["samples"])
    total = sum(data["profile"].values()) or 1.0
    return {
        "median_ms": statistics.median(samples) * 1000,
        "p95_ms": samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))] * 1000,
        "calls": len(data["calls"]),
        "outcome": data["outcome"],
        "share": {k: v / total for k, v in data["profile"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--child", nargs=4, metavar=("HANDLER", "SCENARIO", "N", "WARMUP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        handler, path, n, warm = args.child
        result = child(handler, path, int(n), int(warm))
        sys.stdout.write("\nBENCH_CPU " + json.dumps(result, default=str) + "\n")
        return 0
    started = time.perf_counter()
    print(
        f"{'operation':<22}{'CPU ms p50':>11}{'p95':>8}{'calls':>7}  "
        f"{'SessionGate':>11}{'botocore':>9}{'Powertools':>11}{'harness':>8}{'other':>7}  "
        f"{'SessionGate ms':>14}  result"
    )
    rows = {}
    for operation in OPERATIONS:
        m = measure(operation, args.iterations, args.warmup)
        rows[operation] = m
        s = m["share"]
        own_ms = m["median_ms"] * s["sessiongate"]
        print(
            f"{operation:<22}{m['median_ms']:>11.2f}{m['p95_ms']:>8.2f}{m['calls']:>7}  "
            f"{s['sessiongate']:>11.0%}{s['botocore+boto3']:>9.0%}{s['powertools']:>11.0%}"
            f"{s['harness']:>8.0%}{s['other']:>7.0%}  {own_ms:>14.2f}  {m['outcome']}"
        )
    grant, revoke = rows["grant"], rows["revoke"]
    print(
        f"cpu: warm CPU per grant {grant['median_ms']:.2f} ms (p95 {grant['p95_ms']:.2f}), per revoke "
        f"{revoke['median_ms']:.2f} ms (p95 {revoke['p95_ms']:.2f}), of which SessionGate's own code "
        f"{grant['share']['sessiongate']:.0%} / {revoke['share']['sessiongate']:.0%} and botocore "
        f"{grant['share']['botocore+boto3']:.0%} / {revoke['share']['botocore+boto3']:.0%}; AWS answered "
        f"in-process, median of {args.iterations} warm runs each, {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
