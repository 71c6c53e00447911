"""Read template.yaml as data, through the sandbox's loader (``sandbox.cfn.read``: CloudFormation
short-form tags become their long-form dicts, nothing resolved)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sandbox import cfn

ROOT = cfn.ROOT
TEMPLATE = cfn.TEMPLATE
MEMBER_TEMPLATE = ROOT / "member" / "template.yaml"


@functools.cache
def template(path: Path = TEMPLATE) -> dict[str, Any]:
    return cfn.read(path)


def resource(logical_id: str) -> dict[str, Any]:
    return template()["Resources"][logical_id]  # type: ignore[no-any-return]


def create_table(dynamodb: Any, logical_id: str, name: str) -> None:
    """Create table ``name`` (on moto) with the keys and indexes template.yaml declares for ``logical_id``."""
    table = resource(logical_id)["Properties"]
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        BillingMode=table["BillingMode"],
        StreamSpecification={"StreamEnabled": True, **table["StreamSpecification"]},
    )


def unwrap(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement behind ``Fn::If`` (a condition), taken as if the condition held."""
    return statement["Fn::If"][1] if "Fn::If" in statement else statement  # type: ignore[no-any-return]


def function_statements(logical_id: str) -> list[dict[str, Any]]:
    """The IAM statements of a function: its SAM ``Policies``, or those of the role it names (``Role``)."""
    props = resource(logical_id)["Properties"]
    if "Role" in props:
        role = resource(props["Role"]["Fn::GetAtt"][0])["Properties"]
        return [unwrap(s) for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    return [unwrap(s) for policy in props["Policies"] for s in policy["Statement"]]
