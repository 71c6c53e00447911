"""Cold import of each handler module vs ``import boto3``, in fresh processes (median of N runs).

A Lambda cold start pays the import of the handler module. The handlers import the engine lazily:
no boto3 client, no environment read and no X-Ray SDK at import time; boto3 itself is imported when
the first client is built (measured separately below as the floor every Python Lambda pays).

    python -m bench.cold_import --runs 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = ["grant_access", "revoke_access", "adapt_change_request", "reconcile_grants", "request_api"]
GOAL = 1.5


def measure(statement: str, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'sessiongate'}{os.pathsep}{ROOT}"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Warm the bytecode cache once so every measured run compares like with like.
    subprocess.run([sys.executable, "-c", statement], env=env, check=True, cwd=ROOT)
    samples = []
    for _ in range(runs):
        code = "import time; t = time.perf_counter(); " + statement + "; print(time.perf_counter() - t)"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True, cwd=ROOT
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    boto3_ms = measure("import boto3", args.runs) * 1000
    rows = [("import boto3", boto3_ms, 1.0, boto3_ms)]
    for name in HANDLERS:
        ms = measure(f"import functions.{name}.app", args.runs) * 1000
        # What the first invocation adds: boto3, imported when the first client is built.
        total = measure(f"import functions.{name}.app; import boto3", args.runs) * 1000
        rows.append((f"functions.{name}.app", ms, ms / boto3_ms, total))
    worst = max(ratio for _, _, ratio, _ in rows[1:])
    print(f"{'module':<36}{'median ms':>12}{'x boto3':>10}{'+ boto3 ms':>12}")
    for name, ms, ratio, total in rows:
        print(f"{name:<36}{ms:>12.1f}{ratio:>10.2f}{total:>12.1f}")
    verdict = "OK" if worst <= GOAL else "GOAL MISSED"
    print(
        f"cold import: worst handler {worst:.2f}x import boto3 ({boto3_ms:.0f} ms), goal <= {GOAL}x, "
        f"{args.runs} runs each, {time.perf_counter() - started:.0f} s -> {verdict}"
    )
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
