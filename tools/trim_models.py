"""Write the trimmed botocore service models the engine layer ships (cold start: issue 16).

    python -m tools.trim_models          # rewrite layers/sessiongate/sessiongate/data/
    python -m tools.trim_models --check  # exit 1 if a shipped model differs from a fresh one

botocore parses a service's whole model when a client is built. EC2's is the largest (548 kB gzip, ~5 MB
of JSON, 830 operations), and SessionGate calls one EC2 operation; SSM, IAM and DynamoDB follow. Each
trimmed model is the installed botocore's own model (same metadata, same shapes), keeping only the
operations listed in ``OPERATIONS`` (every one the code calls: ``missing_operations``), every modeled
error (``client.exceptions`` is built from all of them) and the shapes they reach, without documentation
strings. The adapters' Session puts the data directory first on
botocore's data path (``sessiongate.adapters.aws``), so only the service models found there are
replaced; every other file (endpoints, rule sets, paginators, waiters, other services) is still
botocore's. ``tests/unit/test_trimmed_models.py`` fails when a model is stale or lacks a called operation.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "layers" / "sessiongate" / "sessiongate" / "data"
# service -> the operations SessionGate calls (checked against the code by ``missing_operations``).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "ec2": ("CreateTags", "DeleteTags", "DescribeInstances"),  # tags: instance binding (issue 15)
    "ssm": (
        "DescribeAutomationExecutions",
        "DescribeInstanceInformation",
        "DescribeSessions",
        "GetAutomationExecution",
        "GetDocument",  # RequireSessionLogging: the Session Manager preferences (issue 17)
        "GetParameter",
        "PutParameter",
        "TerminateSession",
    ),
    "iam": (
        "GetAccountAuthorizationDetails",  # the reconciler's full sweep (branch wip/reconcile)
        "GetGroup",
        "GetRole",
        "GetUser",
        "TagRole",
        "TagUser",
        "UntagRole",
        "UntagUser",
    ),
    "dynamodb": (
        "BatchGetItem",  # the reconciler's batched lock reads (branch wip/reconcile)
        "DeleteItem",
        "GetItem",
        "PutItem",
        "Query",
        "Scan",  # the history backfill reads both tables (issue 17)
        "TransactWriteItems",
        "UpdateItem",
    ),
    "scheduler": ("CreateSchedule", "DeleteSchedule", "GetSchedule"),
    "sns": ("Publish",),
    # Verify, Sign: false matches (``verify``/``sign`` methods of our own), kept
    "kms": ("GenerateMac", "Sign", "Verify", "VerifyMac"),
    "sts": ("AssumeRole",),
    "events": ("PutEvents",),
    # Read through bound methods (``client.get_user_id``...), found as attribute references.
    "identitystore": ("GetGroupId", "GetUserId", "IsMemberInGroups"),
    "s3": ("PutObject",),  # the history export (issue 17)
    "secretsmanager": ("GetSecretValue",),  # the Slack app's secrets (issue 19)
}
# The endpoints data (botocore's endpoints.json) the layer ships: every partition, only these services
# (``sessiongate.adapters.botocore_data``); key order as botocore's (it orders some of its answers).
ENDPOINTS = Path("endpoints-trimmed.json")
_DROPPED = frozenset({"documentation", "documentationUrl", "deprecatedMessage"})


@functools.cache
def _builtin_loader() -> Any:
    """botocore's loader over botocore's own data only (not the shipped data, not AWS_DATA_PATH); it
    caches what it loads, so each full model is parsed once per process."""
    from botocore.loaders import Loader

    return Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _DROPPED}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _referenced(node: Any) -> set[str]:
    """The shape names a model node refers to (``{"shape": name}`` anywhere inside it)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("shape"), str):
            found.add(node["shape"])
        for value in node.values():
            found |= _referenced(value)
    elif isinstance(node, list):
        for value in node:
            found |= _referenced(value)
    return found


def trim(model: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """``model`` with only ``operations``, every modeled error, and the shapes they reach."""
    missing = [op for op in operations if op not in model["operations"]]
    if missing:
        raise SystemExit(f"trim_models: {missing} not in {model['metadata']['serviceId']}'s model")
    kept_ops = {name: model["operations"][name] for name in operations}
    shapes: set[str] = set()
    # Every modeled error is kept, not only those the kept operations declare: botocore builds
    # ``client.exceptions`` from all of them, and the adapters catch some that no kept operation declares
    # (IAM's UnmodifiableEntityException around TagRole/UntagRole, e.g.).
    errors = {name for name, shape in model["shapes"].items() if shape.get("exception")}
    pending = _referenced(kept_ops) | errors
    while pending:
        name = pending.pop()
        if name not in shapes:
            shapes.add(name)
            pending |= _referenced(model["shapes"][name]) - shapes
    trimmed = {k: v for k, v in model.items() if k not in ("operations", "shapes")}
    trimmed["operations"] = kept_ops
    trimmed["shapes"] = {name: model["shapes"][name] for name in sorted(shapes)}
    stripped = dict(_strip(trimmed))
    if "clientContextParams" in model:
        # botocore reads each one's ``documentation`` when it resolves an endpoint (S3's rule set):
        # without it every call fails with KeyError (model.py, ``client_context_parameters``).
        stripped["clientContextParams"] = model["clientContextParams"]
    return stripped


def missing_operations(source: Path = DATA.parent) -> dict[str, set[str]]:
    """Operations of a trimmed service the engine's code may call but its trimmed model lacks.

    Every attribute reference (method calls and bound methods alike) and paginator name in ``source``
    whose name is one of the service's operations (botocore's snake_case names, from its full model)
    counts as a call: a false match only keeps one more operation, a missing one would be an
    ``AttributeError`` in production."""
    import ast

    from botocore import xform_name

    loader = _builtin_loader()
    used: set[str] = set()
    for path in sorted(source.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get_paginator", "can_paginate", "get_waiter")
                and node.args
            ):
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    used.add(first.value)
    missing: dict[str, set[str]] = {}
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        names = loader.load_data(f"{service}/{version}/service-2")["operations"]
        lacking = {op for op in names if xform_name(op) in used and op not in operations}
        if lacking:
            missing[service] = lacking
    return missing


def models() -> dict[Path, str]:
    """Relative path under the data directory -> the trimmed model's text."""
    loader = _builtin_loader()
    out: dict[Path, str] = {}
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_data(f"{service}/{version}/service-2")  # as shipped, before any sdk-extras
        text = json.dumps(trim(model, operations), indent=None, separators=(",", ":"), sort_keys=True)
        out[Path(service) / version / "service-2.json"] = text + "\n"
    return out


def endpoints() -> str:
    """botocore's endpoints data with every partition whole and only the services of ``OPERATIONS``,
    with the list of those services (the resolver answers any other from botocore's whole file)."""
    full = _builtin_loader().load_data("endpoints")
    partitions = [
        {**partition, "services": {k: v for k, v in partition["services"].items() if k in OPERATIONS}}
        for partition in full["partitions"]
    ]
    trimmed = {"services": sorted(OPERATIONS), "endpoints": {**full, "partitions": partitions}}
    return json.dumps(trimmed, indent=None, separators=(",", ":")) + "\n"


def files() -> dict[Path, str]:
    """Every file the data directory ships: the trimmed models and endpoints."""
    return {**models(), ENDPOINTS: endpoints()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in files().items():
        path = DATA / relative
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(str(relative))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    missing = missing_operations()
    if missing:
        print(f"trim_models: add to OPERATIONS (the code calls them): {missing}", file=sys.stderr)
        return 1
    if args.check and stale:
        print(f"trim_models: stale {stale}: run python -m tools.trim_models", file=sys.stderr)
        return 1
    print(f"trim_models: {'rewrote ' + ', '.join(stale) if stale else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
