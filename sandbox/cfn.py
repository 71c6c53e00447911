"""template.yaml -> CloudFormation (SAM translator, offline) -> resources with resolved properties.

``read`` is the one template loader: the sandbox, the template tests and tools/slot_keys.py use it.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from samtranslator.yaml_helper import intrinsics_multi_constructor

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
LOCAL_PREFIX = "s3://sandbox-local/"


# The label of every table stream in a loaded stack (CloudFormation: GetAtt <Table>.StreamArn).
STREAM_LABEL = "2026-01-01T00:00:00.000"


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any]
    physical_id: str
    arn: str


@dataclass
class Stack:
    """A resolved stack: resources by logical id, with their physical ids and ARNs."""

    name: str
    account: str
    region: str
    parameters: dict[str, Any]
    resources: dict[str, Resource] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type == type_]

    def by_arn(self, arn: str) -> Resource | None:
        return next((r for r in self.resources.values() if r.arn == arn), None)


class _TemplateLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML without stubs: Any
    """YAML with CloudFormation's short-form tags (``!Ref``, ``!GetAtt A.B``, ``!If`` ...) read as their
    long forms by the SAM translator's constructor (the AWS CLI's), registered on this loader only:
    ``samtranslator.yaml_helper.yaml_parse`` would register it on ``yaml.SafeLoader`` for the process."""


_TemplateLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def read(path: Path = TEMPLATE) -> dict[str, Any]:
    """A template as data, intrinsics in their long form, nothing resolved."""
    with path.open() as fh:
        return yaml.load(fh, Loader=_TemplateLoader)  # type: ignore[no-any-return]  # noqa: S506 - a SafeLoader


class _NoManagedPolicies:
    """SAM asks IAM for AWS managed policy ARNs; offline we know the one it uses."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        }


def transform(parameters: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    from samtranslator.translator.transform import transform as sam_transform

    # The translator records usage metrics nobody publishes offline, then warns about them on exit.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    template = read(TEMPLATE)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        # Local code paths become placeholder S3 URIs (as `sam validate` does); the sandbox maps back.
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = LOCAL_PREFIX + props[key]
    pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws"}
    # The translator looks the region up through boto3 even when it is given as a pseudo parameter.
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        return sam_transform(template, {**parameters, **pseudo}, _NoManagedPolicies())  # type: ignore[no-any-return]
    finally:
        if previous is None:
            del os.environ["AWS_DEFAULT_REGION"]
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def load(name: str, account: str, region: str, overrides: dict[str, Any] | None = None) -> Stack:
    """Transform and resolve template.yaml as stack ``name`` with parameter ``overrides``."""
    cfn = transform(overrides or {}, account, region)
    params = {k: v.get("Default") for k, v in cfn.get("Parameters", {}).items()}
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ValueError(f"template has no parameter {key!r}")
        params[key] = value
    for key, spec in cfn.get("Parameters", {}).items():
        # A CommaDelimitedList is a list to Ref, Join and conditions ("" is [""], as in CloudFormation).
        if spec.get("Type") == "CommaDelimitedList" and isinstance(params[key], str):
            params[key] = params[key].split(",")
    stack = Stack(name=name, account=account, region=region, parameters=params)
    resolver = _Resolver(stack, cfn)
    resolver.check_rules()
    for logical_id, resource in cfn["Resources"].items():
        if not resolver.condition(resource.get("Condition")):
            continue
        stack.resources[logical_id] = Resource(
            logical_id=logical_id,
            type=resource["Type"],
            properties={},
            physical_id=resolver.physical_id(logical_id),
            arn=resolver.arn(logical_id),
        )
    for logical_id, res in list(stack.resources.items()):
        props = resolver.resolve(copy.deepcopy(cfn["Resources"][logical_id].get("Properties", {})))
        stack.resources[logical_id] = Resource(res.logical_id, res.type, props, res.physical_id, res.arn)
    return stack


class _NoValue:
    pass


NO_VALUE = _NoValue()


class _Resolver:
    def __init__(self, stack: Stack, cfn: dict[str, Any]) -> None:
        self.stack = stack
        self.cfn = cfn
        self.conditions = cfn.get("Conditions", {})

    # -- names --------------------------------------------------------------------------------
    def _props(self, logical_id: str) -> dict[str, Any]:
        return self.cfn["Resources"][logical_id].get("Properties", {})  # type: ignore[no-any-return]

    def name(self, logical_id: str) -> str:
        props = self._props(logical_id)
        type_ = self.cfn["Resources"][logical_id]["Type"]
        key = {
            "AWS::Lambda::Function": "FunctionName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::Events::EventBus": "Name",
            "AWS::Scheduler::ScheduleGroup": "Name",
            "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
            "AWS::SSM::Document": "Name",
            "AWS::SSM::Parameter": "Name",
            "AWS::Lambda::LayerVersion": "LayerName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::SecretsManager::Secret": "Name",
        }.get(type_)
        if key and key in props:
            return str(self.resolve(copy.deepcopy(props[key])))
        if type_ == "AWS::DynamoDB::Table":
            # CloudFormation names an unnamed table <stack>-<logical id>-<random suffix>; the engine
            # roles' policies rely on that form (the tables' resource policies name the roles).
            return f"{self.stack.name}-{logical_id}-SANDBOX0TABLE"
        if type_ == "AWS::S3::Bucket":  # lowercase only (S3, "General purpose bucket naming rules")
            return f"{self.stack.name}-{logical_id}".lower()[:63]
        return f"{self.stack.name}-{logical_id}"[:64]

    def physical_id(self, logical_id: str) -> str:
        type_ = self.cfn["Resources"][logical_id]["Type"]
        if type_ in ("AWS::SNS::Topic", "AWS::IAM::ManagedPolicy", "AWS::SecretsManager::Secret"):
            return self.arn(logical_id)
        if type_ == "AWS::SQS::Queue":
            return (
                f"https://sqs.{self.stack.region}.amazonaws.com/{self.stack.account}/{self.name(logical_id)}"
            )
        return self.name(logical_id)

    def arn(self, logical_id: str) -> str:
        s, type_ = self.stack, self.cfn["Resources"][logical_id]["Type"]
        name = self.name(logical_id)
        region, account = s.region, s.account
        return {
            "AWS::IAM::Role": lambda: (
                f"arn:aws:iam::{account}:role{self._props(logical_id).get('Path', '/')}{name}"
            ),
            "AWS::IAM::ManagedPolicy": lambda: f"arn:aws:iam::{account}:policy/{name}",
            "AWS::Lambda::Function": lambda: f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::SQS::Queue": lambda: f"arn:aws:sqs:{region}:{account}:{name}",
            "AWS::SNS::Topic": lambda: f"arn:aws:sns:{region}:{account}:{name}",
            "AWS::Events::EventBus": lambda: f"arn:aws:events:{region}:{account}:event-bus/{name}",
            "AWS::Events::Rule": lambda: f"arn:aws:events:{region}:{account}:rule/{name}",
            "AWS::DynamoDB::Table": lambda: f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "AWS::Scheduler::ScheduleGroup": lambda: (
                f"arn:aws:scheduler:{region}:{account}:schedule-group/{name}"
            ),
            "AWS::Lambda::LayerVersion": lambda: f"arn:aws:lambda:{region}:{account}:layer:{name}:1",
            # moto picks key ids: the sandbox names each key by an alias of its logical name.
            "AWS::KMS::Key": lambda: f"arn:aws:kms:{region}:{account}:alias/{name}",
            "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{name}",
            # A secret's Ref is its ARN, which ends in a random suffix AWS picks ("-AbCdEf"); the partial
            # ARN (without it) names the same secret in every Secrets Manager call.
            "AWS::SecretsManager::Secret": lambda: f"arn:aws:secretsmanager:{region}:{account}:secret:{name}",
        }.get(type_, lambda: name)()

    # -- intrinsics ---------------------------------------------------------------------------
    def condition(self, name: str | None) -> bool:
        if name is None:
            return True
        return bool(self._cond(self.conditions[name]))

    def _cond(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Fn::Equals":
                a, b = (self.resolve(copy.deepcopy(x)) for x in arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self._cond(arg[0])
            if fn == "Fn::And":
                return all(self._cond(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._cond(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Contains":  # rule functions (Rules section)
                values, value = (self.resolve(copy.deepcopy(x)) for x in arg)
                return str(value) in [str(v) for v in values]
        return self.resolve(expr)

    def check_rules(self) -> None:
        """The template's ``Rules``: like CloudFormation, refuse parameters an assertion rejects
        ("CloudFormation template Rules syntax") before any resource exists."""
        for name, rule in self.cfn.get("Rules", {}).items():
            if "RuleCondition" in rule and not self._cond(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self._cond(assertion["Assert"]):
                    raise ValueError(f"rule {name}: {assertion.get('AssertDescription', 'assertion failed')}")

    def ref(self, name: str) -> Any:
        s = self.stack
        pseudo = {
            "AWS::StackName": s.name,
            # CloudFormation's stack id: arn:...:stack/<name>/<uuid>, the UUID fixed per stack name here.
            "AWS::StackId": (
                f"arn:aws:cloudformation:{s.region}:{s.account}:stack/{s.name}/"
                f"{uuid.uuid5(uuid.NAMESPACE_URL, f'{s.account}/{s.region}/{s.name}')}"
            ),
            "AWS::AccountId": s.account,
            "AWS::Region": s.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in s.parameters:
            value = s.parameters[name]
            kind = str(self.cfn.get("Parameters", {}).get(name, {}).get("Type", "String"))
            if kind == "CommaDelimitedList" or kind.startswith("List<"):
                return value
            # Ref of a String or Number parameter is a string ("CloudFormation template Parameters
            # syntax": a Number parameter's value becomes a string where it is used).
            return str(value)
        if name in s.resources:
            return s.resources[name].physical_id
        raise KeyError(f"unresolvable Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        res = self.stack.resources[logical_id]
        if attribute == "Arn":
            return res.arn
        if attribute == "Name":
            return res.physical_id
        if attribute == "QueueName":
            return res.physical_id.rsplit("/", 1)[-1]
        if attribute == "StreamArn" and res.type == "AWS::DynamoDB::Table":
            # A stream's label is its creation time, known once the table exists: a fixed one here
            # (the world maps it to the stream moto creates).
            return f"{res.arn}/stream/{STREAM_LABEL}"
        raise KeyError(f"unsupported GetAtt {logical_id}.{attribute}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.get_att(parts[0], parts[1])
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if fn == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if fn == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.stack.resources:
                logical_id, attribute = expr.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)
