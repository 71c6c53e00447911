"""One cold start, measured in this fresh process: run by ``bench.cold_start``, not by hand.

    python bench/cold_start_child.py <handler|boto3> <scenario.json>

The clock starts before anything else is imported. For a handler: its module is imported (init) and
invoked once with its event; every AWS call is answered in-process by a botocore ``before-send``
handler with a canned HTTP response in the service's own wire format (JSON or XML), so botocore
serialises, signs and parses as it would against AWS, and no network, moto or stub client is involved.
Prints one JSON line: wall seconds of init alone, wall and CPU seconds of init + first invocation,
peak RSS, the AWS calls made and the handler's result.
"""

import time

T0, C0 = time.perf_counter(), time.process_time()

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

CALLS: list[str] = []


def _compile_from_source(prefixes: list[str]) -> None:
    """Modules under ``prefixes`` are compiled from source at import and no bytecode is written: the
    state of code Lambda runs from a read-only directory that ships no ``.pyc`` (every cold start
    compiles it again). Everything else (boto3 from the runtime) keeps its bytecode cache."""
    from importlib.machinery import (
        BYTECODE_SUFFIXES,
        EXTENSION_SUFFIXES,
        SOURCE_SUFFIXES,
        ExtensionFileLoader,
        FileFinder,
        SourceFileLoader,
        SourcelessFileLoader,
    )

    class Loader(SourceFileLoader):
        def get_code(self, fullname: str) -> Any:
            if not self.path.startswith(tuple(prefixes)):
                return super().get_code(fullname)
            return self.source_to_code(self.get_data(self.path), self.path)

    hook = FileFinder.path_hook(
        (ExtensionFileLoader, EXTENSION_SUFFIXES),
        (Loader, SOURCE_SUFFIXES),
        (SourcelessFileLoader, BYTECODE_SUFFIXES),
    )
    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()


class _Raw:
    """The ``raw`` of a botocore ``AWSResponse``: only ``stream()`` is read for non-streaming bodies."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class Canned:
    """Answers ``before-send`` with the scenario's responses, by ``service:Operation``.

    A response is ``{"status": 200, "json": {...}}`` (JSON protocols), ``{"xml": "..."}`` (query/EC2
    protocols) or a list of those (one per call, the last repeated). DynamoDB items written with
    PutItem are kept and read back by GetItem and BatchGetItem, so a record the handler writes is the
    one it reads.
    """

    def __init__(self, responses: dict[str, Any], items: dict[str, Any], keys: dict[str, list[str]]) -> None:
        self.responses = responses
        self.keys = keys  # table -> its key attribute names (template.yaml's KeySchema)
        self.items = dict(items)  # "table|pk" -> item
        self.seen: dict[str, int] = {}

    def __call__(self, request: Any, event_name: str, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        _before_send, service, operation = event_name.split(".", 2)
        key = f"{service}:{operation}"
        CALLS.append(key)
        answer = self._dynamodb(operation, request) if service == "dynamodb" else None
        if answer is None:
            answer = self.responses.get(key)
            if isinstance(answer, list):
                n = self.seen.get(key, 0)
                self.seen[key] = n + 1
                answer = answer[min(n, len(answer) - 1)]
        if answer is None:
            raise RuntimeError(f"cold_start: no canned response for {key}")
        status = answer.get("status", 200)
        if "xml" in answer:
            body, kind = answer["xml"].encode(), "text/xml"
        else:
            body, kind = json.dumps(answer.get("json", {})).encode(), "application/x-amz-json-1.0"
        headers = {"Content-Type": kind, "x-amzn-RequestId": "cold-start", "Content-Length": str(len(body))}
        return AWSResponse(request.url, status, headers, _Raw(body))

    def _dynamodb(self, operation: str, request: Any) -> dict[str, Any] | None:
        if operation not in ("GetItem", "PutItem", "BatchGetItem"):
            return None
        params = json.loads(request.body or b"{}")
        table = params.get("TableName", "")

        def key(values: dict[str, Any], table: str = table) -> str:
            parts = [str(next(iter(values[k].values()))) for k in self.keys.get(table, ["pk"])]
            return "|".join([table, *parts])

        if operation == "BatchGetItem":  # every key answered (no UnprocessedKeys), missing ones left out
            found = {
                name: [self.items[key(k, name)] for k in spec["Keys"] if key(k, name) in self.items]
                for name, spec in params["RequestItems"].items()
            }
            return {"json": {"Responses": found, "UnprocessedKeys": {}}}

        if operation == "PutItem":
            self.items[key(params["Item"])] = params["Item"]
            return {"json": {}}
        item = self.items.get(key(params["Key"]))
        return {"json": {"Item": item} if item else {}}


class SlackCanned:
    """Answers slack-sdk's HTTPS calls (``WebClient``/``WebhookClient`` call ``urllib.request.urlopen``,
    not botocore) with the scenario's JSON, by Web API method (``chat.postMessage``) or, for a
    ``response_url`` on hooks.slack.com, ``webhook`` (Slack answers a webhook with ``ok`` as text).
    Installed as ``urllib.request.urlopen`` before the handler is imported: slack-sdk binds the name
    when the chat adapter first imports it. Any other URL, or a method without an answer, fails."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def __call__(self, request: Any, *_: Any, **__: Any) -> Any:
        from email.message import Message
        from urllib.parse import urlsplit
        from urllib.response import addinfourl

        url = request.full_url if hasattr(request, "full_url") else str(request)
        parts = urlsplit(url)
        if parts.hostname == "slack.com" and parts.path.startswith("/api/"):
            method = parts.path.removeprefix("/api/")
            body, kind = json.dumps(self.answers.get(method)).encode(), "application/json; charset=utf-8"
            answered = method in self.answers
        elif parts.hostname == "hooks.slack.com":
            method, body, kind, answered = "webhook", b"ok", "text/plain; charset=utf-8", True
        else:
            method, body, kind, answered = url, b"", "text/plain", False
        CALLS.append(f"slack:{method}")
        if not answered:
            raise RuntimeError(f"cold_start: no canned Slack response for {url}")
        headers = Message()
        headers["Content-Type"] = kind
        headers["Content-Length"] = str(len(body))
        import io

        return addinfourl(io.BytesIO(body), headers, url, 200)


def main() -> None:
    what, scenario_path = sys.argv[1], sys.argv[2]
    result: Any = None
    init = 0.0
    uncached = [p for p in os.environ.get("COLD_START_UNCACHED", "").split(os.pathsep) if p]
    if uncached:
        _compile_from_source(uncached)
    if what == "boto3":
        import boto3  # noqa: F401
    else:
        with open(scenario_path) as f:
            scenario = json.load(f)
        os.environ.update(scenario["environment"])
        # Registered on every botocore Session built from now on, like botocore's own handlers.
        import botocore.handlers

        botocore.handlers.BUILTIN_HANDLERS.append(
            ("before-send", Canned(scenario["responses"], scenario["items"], scenario["keys"]))
        )
        # (boto3 imports urllib.request already: patching it adds nothing to the measured imports.)
        import urllib.request

        urllib.request.urlopen = SlackCanned(scenario.get("slack", {}))  # type: ignore[assignment]
        module = importlib.import_module(f"functions.{what}.app")  # init
        init = time.perf_counter() - T0
        result = module.lambda_handler(scenario["event"], _Context(what))  # first invocation
    wall, cpu = time.perf_counter() - T0, time.process_time() - C0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "init": init,
        "wall": wall,
        "cpu": cpu,
        "rss_mib": peak_kib / 1024,
        "calls": CALLS,
        "result": result,
    }
    sys.stdout.write("\nCOLD_START " + json.dumps(out, default=str) + "\n")


class _Context:
    memory_limit_in_mb = 256
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def __init__(self, name: str) -> None:
        self.function_name = f"sessiongate-{name}"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


if __name__ == "__main__":
    main()
