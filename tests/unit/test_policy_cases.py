"""``sessiongate policy test POLICY.json CASES.yaml``: a policy evaluated offline against cases, exit 1
on a mismatch with readable output (no AWS call: no session is given and none is built)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sessiongate_cli.main import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy"
POLICY = DOCS / "auto-approval.json"
CASES = DOCS / "auto-approval-cases.yaml"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["policy", "test", *argv], out=out, err=err, session=object())
    return code, out.getvalue(), err.getvalue()


def test_the_documented_policy_passes_its_documented_cases() -> None:
    code, out, err = run(str(POLICY), str(CASES))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "5 passed, 0 failed"
    assert all(line.startswith("PASS  ") for line in out.splitlines()[:-1])


def write_cases(tmp_path: Path, *cases: dict[str, Any]) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"cases": list(cases)}))
    return str(path)


ONCALL = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_OnCall_0123456789abcdef/alice@example.com"


def test_a_mismatch_exits_1_and_says_what_differs_and_why(tmp_path: Path) -> None:
    cases = write_cases(
        tmp_path,
        {
            "name": "Saturday on dev",
            "request": {"tags": {"Environment": "dev"}, "requester": ONCALL, "at": "2026-01-10T10:00:00Z"},
            "expect": "auto_approved",
        },
    )
    code, out, _ = run(str(POLICY), cases)
    assert code == 1
    assert out.splitlines() == [
        "FAIL  Saturday on dev: manual (rule 'dev')",
        "        expected expect 'auto_approved', got 'manual'",
        "        why: no permit statement matches",
        "0 passed, 1 failed",
    ]


def test_json_output_and_a_signed_envelope_are_accepted(tmp_path: Path) -> None:
    envelope = tmp_path / "envelope.json"
    document = json.loads(POLICY.read_text())
    envelope.write_text(
        json.dumps(
            {"policy": document, "parameter": "/p", "version": 1, "serial": 1, "mac": "m", "key_id": "k"}
        )
    )
    out, err = io.StringIO(), io.StringIO()
    code = main(["policy", "test", str(envelope), str(CASES), "--output", "json"], out=out, err=err)
    report = json.loads(out.getvalue())["policy_test"]
    assert (code, report["passed"], report["failed"]) == (0, 5, 0)
    assert report["results"][2]["got"]["forbid"] == "never PCI hosts"


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ({"cases": []}, "non-empty list `cases`"),
        ({"cases": [{"request": {"requester": ONCALL}, "expect": "yes"}]}, "expect must be one of"),
        (
            {"cases": [{"request": {"requester": "alice"}, "expect": "manual"}]},
            "requester must be the requester's ARN",
        ),
        (
            {"cases": [{"request": {"requester": ONCALL, "at": "monday"}, "expect": "manual"}]},
            "at must be an ISO 8601",
        ),
        (
            {"cases": [{"request": {"requester": ONCALL, "colour": 1}, "expect": "manual"}]},
            "request must be a mapping",
        ),
    ],
)
def test_malformed_cases_are_a_clear_error(tmp_path: Path, cases: dict[str, Any], message: str) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(cases))
    code, out, err = run(str(POLICY), str(path))
    assert (code, out) == (1, "")
    assert message in err
    assert "(invalid_cases)" in err


def test_an_invalid_policy_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"version": 1, "rules": [], "auto_approval": []}))
    code, _, err = run(str(bad), str(CASES))
    assert code == 1
    assert "the policy is invalid: policy.rules must be a list of 1..100 rules (invalid_policy)" in err


def test_break_glass_and_refusals_are_decisions_too(tmp_path: Path) -> None:
    document = json.loads(POLICY.read_text())
    document["rules"][0]["break_glass"] = {"enabled": True, "max_duration_minutes": 15}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(document))
    bob = "arn:aws:iam::123456789012:user/bob"
    cases = write_cases(
        tmp_path,
        {
            "request": {
                "tags": {"Environment": "prod"},
                "requester": bob,
                "ticket": "OPS-1",
                "break_glass": True,
            },
            "expect": "break_glass",
        },
        {
            "request": {"tags": {"Environment": "test"}, "requester": bob},
            "expect": "refused",
            "error": "no_matching_rule",
        },
        {
            "request": {
                "tags": {"Environment": "prod"},
                "requester": bob,
                "ticket": "OPS-1",
                "minutes": 20,
                "break_glass": True,
            },
            "expect": "refused",
            "error": "break_glass_duration_over_cap",
        },
    )
    code, out, _ = run(str(policy), cases)
    assert code == 0, out
