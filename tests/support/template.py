"""Read template.yaml as data (CloudFormation short-form tags become their long-form dicts)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct)


MEMBER_TEMPLATE = ROOT / "member" / "template.yaml"


@functools.cache
def template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def resource(logical_id: str) -> dict[str, Any]:
    return template()["Resources"][logical_id]  # type: ignore[no-any-return]


def unwrap(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement behind ``Fn::If`` (a condition), taken as if the condition held."""
    return statement["Fn::If"][1] if "Fn::If" in statement else statement  # type: ignore[no-any-return]


def function_statements(logical_id: str) -> list[dict[str, Any]]:
    props = resource(logical_id)["Properties"]
    return [unwrap(s) for policy in props["Policies"] for s in policy["Statement"]]
