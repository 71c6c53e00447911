"""Metrics through Powertools, and the handler entry that passes injected dependencies through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessiongate.observability import lambda_entry, metrics


def test_a_dimensioned_metric_goes_out_alone_with_its_dimensions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    metrics().add("Denials", reason="instance_not_found")
    [line] = capsys.readouterr().out.splitlines()
    blob = json.loads(line)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "reason"]]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "SessionGate"
    assert (blob["service"], blob["reason"], blob["Denials"]) == ("sessiongate", "instance_not_found", [1.0])
    assert "Denials" not in metrics().powertools.metric_set  # the shared blob keeps no dimensioned metric


def test_powertools_switch_turns_dimensioned_metrics_off(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics().add("Denials", reason="instance_not_found")
    assert capsys.readouterr().out == ""


def test_the_entry_passes_injected_dependencies_to_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    seen: list[Any] = []

    @lambda_entry
    def handler(event: dict[str, Any], context: Any, deps: Any = None) -> dict[str, Any]:
        seen.append(deps)
        return {"result": "ok"}

    class Context:
        function_name, memory_limit_in_mb = "f", 128
        invoked_function_arn, aws_request_id = "arn:aws:lambda:us-east-1:123456789012:function:f", "r"

    assert handler({}, Context(), deps="fake engine") == {"result": "ok"}
    assert handler({}, Context()) == {"result": "ok"}
    assert seen == ["fake engine", None]
