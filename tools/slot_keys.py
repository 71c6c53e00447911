"""Write every slot tag key into the templates and the SCP sample from ``sessiongate.core.slots``.

    python -m tools.slot_keys          # rewrite the generated blocks (`make slot-keys`)
    python -m tools.slot_keys --check  # exit 1 with a diff when a file is out of date (a test runs it)

A slot key is written by hand once, in ``sessiongate.core.slots``. In template.yaml and
member/template.yaml each generated block sits between two comment lines::

    # >>> generated slot-keys-any-case: `make slot-keys` (tools/slot_keys.py) writes this, do not edit
    # <<< generated slot-keys-any-case

and the block is indented like its first marker. JSON has no comments: in the SCP sample the key list
of the statement ``OnlySessionGateSetsSessionSlotTagsAnyCase`` is the generated part. The check also
fails when a slot key is written outside a generated block (comments aside). ``Fn::ForEach``
(AWS::LanguageExtensions) cannot do this: it only generates object entries, and most keys here are
list items (aws:TagKeys lists, policy statements), and the SCP is no template.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import cfn
from sessiongate.core import slots

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = [ROOT / "template.yaml", ROOT / "member" / "template.yaml"]
SCP = ROOT / "docs" / "scp-deny-slot-tags.json"
SCP_SID = "OnlySessionGateSetsSessionSlotTagsAnyCase"
# The actions the SCP sample's two slot-key statements deny (as the guard policies in template.yaml and
# member/template.yaml): IAM and STS tags, EC2 tags (also at creation, and on the launch calls RunInstances
# and CreateFleet, which take aws:TagKeys on the instances they launch), Auto Scaling group tags (propagated
# at launch by Auto Scaling's service-linked role, which no SCP binds), SSM resource tags (REVIEW-A F3, L4).
GUARDED_ACTIONS = [
    "iam:TagUser",
    "iam:TagRole",
    "iam:UntagUser",
    "iam:UntagRole",
    "iam:CreateUser",
    "iam:CreateRole",
    "sts:TagSession",
    "sts:GetFederationToken",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:RunInstances",
    "ec2:CreateFleet",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:CreateAutoScalingGroup",
    "ssm:AddTagsToResource",
]
SCP_SIDS = ("OnlySessionGateSetsSessionSlotTags", SCP_SID)

BEGIN = re.compile(r"^(?P<indent> *)# >>> generated (?P<kind>[a-z-]+): .*$")
END = re.compile(r"^ *# <<< generated (?P<kind>[a-z-]+)$")
NOTE = "`make slot-keys` (tools/slot_keys.py) writes this, do not edit"

Lines = list[str]


def _keys(count: int) -> Lines:
    """Instance keys first, then user keys (the order the templates have always listed them)."""
    return [slots.instance_key(s) for s in range(1, count + 1)] + [
        slots.user_key(s) for s in range(1, count + 1)
    ]


def _slot_keys(count: int) -> Lines:
    """The keys the engine may set and clear: one pair per slot the template offers."""
    return [f"- {key}" for key in _keys(count)]


def _slot_key_values(count: int) -> Lines:
    """What a slot tag may hold: an instance id, or a role session's aws:userid (<RoleId>:<session>)."""
    return [f"aws:RequestTag/{slots.instance_key(s)}: i-*" for s in range(1, count + 1)] + [
        f"aws:RequestTag/{slots.user_key(s)}: AROA*:*" for s in range(1, count + 1)
    ]


def _any_case_keys() -> Lines:
    """Every key up to MAX_SLOTS, principal keys then instance keys (issue 15)."""
    return _keys(slots.MAX_SLOTS) + slots.all_for_keys(slots.MAX_SLOTS)


def _slot_keys_any_case(_count: int) -> Lines:
    """Every key up to MAX_SLOTS, for the deny statements that compare ignoring case."""
    return [f"- {key}" for key in _any_case_keys()]


def _instance_slot_keys(count: int) -> Lines:
    """The instance keys the engine may set and clear on instances (instance binding)."""
    return [f"- {key}" for key in slots.all_for_keys(count)]


def _instance_slot_key_values(count: int) -> Lines:
    """What an instance slot tag may hold: an aws:userid, an IAM user's UserId or a role session's
    ``<RoleId>:<session>``."""
    return [f'aws:RequestTag/{key}: ["AIDA*", "AROA*:*"]' for key in slots.all_for_keys(count)]


def _instance_start_session(slot: int) -> Lines:
    arn = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
    return [
        f"Sid: StartSessionOnInstanceSlot{slot}",
        "Effect: Allow",
        "Action: ssm:StartSession",
        f'Resource: !Sub "{arn}"',
        "Condition:",
        "  StringEquals:",
        f'    ssm:resourceTag/{slots.for_key(slot)}: "${{aws:userid}}"',
    ]


def _instance_start_session_statements(count: int) -> Lines:
    """Per slot: StartSession on any instance whose slot tag names the caller's own aws:userid."""
    out: Lines = []
    for slot in range(1, count + 1):
        statement = _instance_start_session(slot)
        if slot == 1:
            out += _item(statement, 0)
        else:
            out += ["- !If", f"  - HasSlot{slot}", *_item(statement, 2), "  - !Ref AWS::NoValue"]
    return out


def _item(body: Lines, indent: int) -> Lines:
    """``body`` (a mapping, unindented) as a YAML list item at ``indent``."""
    pad = " " * indent
    return [f"{pad}- {body[0]}"] + [f"{pad}  {line}" for line in body[1:]]


def _start_session(slot: int, bound: bool) -> Lines:
    instance, user = slots.slot_keys(slot)
    arn = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/${!aws:PrincipalTag/%s}"
    head = [
        f"Sid: StartSession{'Bound' if bound else ''}Slot{slot}",
        "Effect: Allow",
        "Action: ssm:StartSession",
        f'Resource: !Sub "{arn % instance}"',
        "Condition:",
    ]
    if bound:  # the slot is bound to one role session
        return [*head, "  StringEquals:", f'    aws:userid: "${{aws:PrincipalTag/{user}}}"']
    return [*head, '  "Null":', f'    aws:PrincipalTag/{user}: "true"']


def _start_session_statements(count: int) -> Lines:
    """Per slot: StartSession on the instance its tag names, unbound or bound to one role session.
    Slot 1 always exists; slot k > 1 only under the condition HasSlot<k>."""
    out: Lines = []
    for slot in range(1, count + 1):
        for bound in (False, True):
            statement = _start_session(slot, bound)
            if slot == 1:
                out += _item(statement, 0)
            else:
                out += ["- !If", f"  - HasSlot{slot}", *_item(statement, 2), "  - !Ref AWS::NoValue"]
    return out


KINDS: dict[str, Callable[[int], Lines]] = {
    "slot-keys": _slot_keys,
    "slot-key-values": _slot_key_values,
    "slot-keys-any-case": _slot_keys_any_case,
    "start-session-statements": _start_session_statements,
    "instance-slot-keys": _instance_slot_keys,
    "instance-slot-key-values": _instance_slot_key_values,
    "instance-start-session-statements": _instance_start_session_statements,
}


def offered_slots(template: dict[str, Any]) -> int:
    """The slots a template offers: its SlotCount parameter's largest allowed value (1..n)."""
    allowed = [int(v) for v in template["Parameters"]["SlotCount"]["AllowedValues"]]
    count = max(allowed)
    if allowed != list(range(1, count + 1)) or count > slots.MAX_SLOTS:
        raise ValueError(f"SlotCount's AllowedValues must be 1..n with n <= {slots.MAX_SLOTS}: {allowed}")
    return count


def render_yaml(text: str, count: int) -> str:
    """``text`` with every generated block rewritten for ``count`` offered slots."""
    out: Lines = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        begin = BEGIN.match(line)
        if not begin:
            if END.match(line):
                raise ValueError(f"line {i}: end marker without a begin marker")
            continue
        kind, pad = begin["kind"], begin["indent"]
        if kind not in KINDS:
            raise ValueError(f"line {i}: unknown generated block {kind!r} (known: {', '.join(KINDS)})")
        out[-1] = f"{pad}# >>> generated {kind}: {NOTE}"
        end = None
        while i < len(lines) and not (end := END.match(lines[i])):
            if BEGIN.match(lines[i]):
                raise ValueError(f"line {i + 1}: begin marker inside the block {kind!r}")
            i += 1
        if end is None or end["kind"] != kind:
            raise ValueError(f"block {kind!r} has no end marker '# <<< generated {kind}'")
        out += [pad + generated for generated in KINDS[kind](count)]
        out.append(f"{pad}# <<< generated {kind}")
        i += 1
    return "\n".join(out)


def render_scp(text: str) -> str:
    document = json.loads(text)
    [statement] = [s for s in document["Statement"] if s.get("Sid") == SCP_SID]
    statement["Condition"]["ForAnyValue:StringEqualsIgnoreCase"]["aws:TagKeys"] = _any_case_keys()
    for guard in (s for s in document["Statement"] if s.get("Sid") in SCP_SIDS):
        guard["Action"] = list(GUARDED_ACTIONS)
    return json.dumps(document, indent=2) + "\n"


def _key_pattern() -> re.Pattern[str]:
    keys = sorted(_any_case_keys(), key=len, reverse=True)
    return re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, keys)) + r")(?![A-Za-z0-9*])", re.I)


def hand_written_keys(text: str) -> list[str]:
    """Slot keys outside the generated blocks, comment lines aside (wildcards such as
    ``SecurityAllowSession*`` are no slot key)."""
    found, inside, pattern = [], False, _key_pattern()
    for number, line in enumerate(text.split("\n"), start=1):
        if BEGIN.match(line) or END.match(line):
            inside = bool(BEGIN.match(line))
            continue
        if not inside and not line.lstrip().startswith("#") and pattern.search(line):
            found.append(f"line {number}: {line.strip()}")
    return found


def expected(path: Path) -> str:
    text = path.read_text()
    if path == SCP:
        return render_scp(text)
    rendered = render_yaml(text, offered_slots(cfn.read(path)))
    stray = hand_written_keys(rendered)
    if stray:
        raise ValueError(f"slot keys written by hand (generate them instead): {stray}")
    return rendered


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = args == ["--check"]
    if args and not check:
        print(__doc__)
        return 2
    stale = 0
    for path in [*TEMPLATES, SCP]:
        try:
            current, wanted = path.read_text(), expected(path)
        except ValueError as error:
            print(f"{path.relative_to(ROOT)}: {error}")
            return 1
        if current == wanted:
            continue
        name = str(path.relative_to(ROOT))
        if check:
            stale += 1
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                name,
                f"{name} (generated)",
            )
            sys.stdout.writelines(diff)
        else:
            path.write_text(wanted)
            print(f"rewrote {name}")
    if stale:
        print(f"{stale} file(s) out of date: run `make slot-keys`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
