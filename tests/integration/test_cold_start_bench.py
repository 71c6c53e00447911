"""The cold-start benchmark's scenarios of the chat and history functions: each handler, in a fresh
process as ``python -m bench.cold_start`` runs it, completes its first invocation with every AWS (and
Slack) call answered by the canned responses, and an unanswered call fails the sample."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import cold_start

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("handler", "calls", "result"),
    [
        (
            "chat_interactions",
            ["secrets-manager:GetSecretValue", "dynamodb:PutItem", "dynamodb:PutItem"],
            {"statusCode": 200},
        ),
        (
            "chat_notify",
            [
                "dynamodb:GetItem",
                "dynamodb:GetItem",
                "ec2:DescribeInstances",
                "secrets-manager:GetSecretValue",
                "slack:chat.postMessage",
                "dynamodb:PutItem",
            ],
            {"results": ["posted"]},
        ),
        ("export_history", ["s3:PutObject"], {"batchItemFailures": []}),
    ],
)
def test_the_first_invocation_completes_on_canned_answers(
    handler: str, calls: list[str], result: dict[str, object], tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(cold_start.scenario(ROOT, handler)))
    sample = cold_start.run_child(ROOT, handler, str(scenario))
    assert sample["calls"] == calls
    assert {k: sample["result"].get(k) for k in result} == result
    if handler == "chat_interactions":
        assert "Your one-time code" in json.loads(sample["result"]["body"])["text"]


def test_a_call_without_a_canned_answer_fails_the_sample(tmp_path: Path) -> None:
    spec = cold_start.scenario(ROOT, "chat_notify")
    spec["slack"] = {}  # chat.postMessage unanswered
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(spec))
    with pytest.raises(
        RuntimeError, match=re.escape("no canned Slack response for https://slack.com/api/chat.postMessage")
    ):
        cold_start.run_child(ROOT, "chat_notify", str(scenario))
