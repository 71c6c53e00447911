"""Slot keys are written once (sessiongate.core.slots); tools/slot_keys.py writes every copy."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from sandbox import cfn
from sessiongate.core import slots
from tests.support.template import MEMBER_TEMPLATE, TEMPLATE, template
from tools import slot_keys

BLOCK = re.compile(r"(# >>> generated [a-z-]+:[^\n]*)\n.*?\n( *# <<< generated)", re.S)


def test_generated_blocks_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    """What `make test` checks: a hand edit of a generated block, or a key change in core/slots.py
    without `make slot-keys`, fails here with the diff."""
    assert slot_keys.main(["--check"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("path", [TEMPLATE, MEMBER_TEMPLATE], ids=["engine", "member"])
def test_every_generated_block_comes_from_the_generator_alone(path: Path) -> None:
    text = path.read_text()
    emptied, blocks = BLOCK.subn(r"\1\n\2", text)
    assert blocks >= 4
    assert "SecurityAllowSessionUser1" not in emptied
    assert slot_keys.render_yaml(emptied, slot_keys.offered_slots(template(path))) == text


def test_a_hand_edited_block_is_out_of_date() -> None:
    text = TEMPLATE.read_text()
    edited = text.replace("- SecurityAllowSessionInstance5\n", "- SecurityAllowSessionInstance5\n" * 2, 1)
    assert edited != text
    assert slot_keys.render_yaml(edited, 5) == text


def test_the_scp_key_list_comes_from_the_generator(tmp_path: Path) -> None:
    document = json.loads(slot_keys.SCP.read_text())
    [statement] = [s for s in document["Statement"] if s["Sid"] == slot_keys.SCP_SID]
    statement["Condition"]["ForAnyValue:StringEqualsIgnoreCase"]["aws:TagKeys"] = []
    assert slot_keys.render_scp(json.dumps(document)) == slot_keys.SCP.read_text()


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        ("                aws:TagKeys: [SecurityAllowSessionUser7]", True),
        ("                aws:TagKeys: [securityallowsessioninstance3]", True),  # IAM ignores case
        ('          Resource: "${aws:PrincipalTag/SecurityAllowSessionInstance}"', True),
        ("                aws:TagKeys: [SecurityAllowSession*]", False),  # a wildcard, not a key
        ("      Description: named by SecurityAllowSessionInstance* tags", False),
        ('          # "securityallowsessioninstance" is the same tag to IAM', False),  # a comment
    ],
)
def test_a_slot_key_written_by_hand_is_refused(line: str, refused: bool) -> None:
    text = TEMPLATE.read_text().replace("Resources:\n", f"Resources:\n{line}\n", 1)
    assert bool(slot_keys.hand_written_keys(text)) is refused
    assert slot_keys.hand_written_keys(TEMPLATE.read_text()) == []


def test_slot_key_values_block_has_one_value_pattern_per_key() -> None:
    assert slot_keys.KINDS["slot-key-values"](2) == [
        "aws:RequestTag/SecurityAllowSessionInstance: i-*",
        "aws:RequestTag/SecurityAllowSessionInstance2: i-*",
        "aws:RequestTag/SecurityAllowSessionUser1: AROA*:*",
        "aws:RequestTag/SecurityAllowSessionUser2: AROA*:*",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a:\n  # >>> generated slot-keys: x\n  - k\n", "no end marker"),
        ("a:\n  # >>> generated slot-key: x\n  # <<< generated slot-key\n", "unknown generated block"),
        ("a:\n  # >>> generated slot-keys: x\n  # <<< generated slot-keys-any-case\n", "no end marker"),
        ("a:\n  # <<< generated slot-keys\n", "end marker without a begin marker"),
    ],
)
def test_broken_markers_are_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        slot_keys.render_yaml(text, 5)


@pytest.mark.parametrize("allowed", [[1, 2, 4], [*range(1, slots.MAX_SLOTS + 2)]])
def test_offered_slots_are_one_to_n_within_max_slots(allowed: list[int]) -> None:
    with pytest.raises(ValueError, match="AllowedValues"):
        slot_keys.offered_slots({"Parameters": {"SlotCount": {"AllowedValues": allowed}}})


def test_both_templates_offer_the_same_slots() -> None:
    assert (
        slot_keys.offered_slots(template(TEMPLATE)) == slot_keys.offered_slots(template(MEMBER_TEMPLATE)) == 5
    )


def test_hand_written_wildcards_are_the_slot_key_prefix() -> None:
    """The one spelling left by hand: ``SecurityAllowSession*`` and the event patterns' prefix."""
    pairs = zip(slots.INSTANCE_KEY, slots.USER_KEY, strict=False)
    prefix = "".join(a for a, _ in itertools.takewhile(lambda pair: pair[0] == pair[1], pairs))
    assert prefix == "SecurityAllowSession"
    for path in (TEMPLATE, MEMBER_TEMPLATE, slot_keys.SCP):
        text = path.read_text()
        wildcards = re.findall(r"\bsecurityallowsession\w*\*", text, re.I)
        prefixes = re.findall(r"equals-ignore-case: (\w+)", text)
        assert wildcards, path
        assert {*wildcards, *(p + "*" for p in prefixes)} <= {prefix + "*", slots.INSTANCE_KEY + "*"}, path


def test_the_loader_reads_short_form_tags_as_their_long_form() -> None:
    conditions = cfn.read(TEMPLATE)["Conditions"]
    assert conditions["HasSlot3"] == {
        "Fn::And": [{"Condition": "HasSlot2"}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "SlotCount"}, 2]}]}]
    }
    guard = cfn.read(MEMBER_TEMPLATE)["Resources"]["SessionGateTagKeyGuard"]["Properties"]
    assert guard["PolicyDocument"]["Statement"][0]["Condition"]["ArnNotEquals"] == {
        "aws:PrincipalArn": {"Fn::GetAtt": ["SessionGateMemberRole", "Arn"]}
    }


def test_a_key_changed_in_core_slots_makes_the_files_out_of_date(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(slots, "USER_KEY", "SecurityAllowSessionBoundUser")
    assert slot_keys.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "+                    - SecurityAllowSessionBoundUser1" in out
    assert "3 file(s) out of date" in out


def test_the_check_names_a_slot_key_written_by_hand(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = tmp_path / "template.yaml"
    stray.write_text(
        TEMPLATE.read_text().replace(
            "Resources:\n", "Resources:\n  # x\n  X: [SecurityAllowSessionUser2]\n", 1
        )
    )
    monkeypatch.setattr(slot_keys, "TEMPLATES", [stray])
    monkeypatch.setattr(slot_keys, "ROOT", tmp_path)
    assert slot_keys.main(["--check"]) == 1
    assert "X: [SecurityAllowSessionUser2]" in capsys.readouterr().out
