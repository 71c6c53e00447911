"""``sessiongate doctor``: is a deployment protected as README's deployment steps say? (read-only)

Signed with the caller's own credentials; every call is a read (CloudFormation ListStackResources
and DescribeStacks, IAM ListEntitiesForPolicy and ListRoles, Organizations ListPolicies,
DescribePolicy and ListTargetsForPolicy, DynamoDB GetResourcePolicy, SNS ListSubscriptionsByTopic).
Each check answers OK, MISSING, WARN or CANNOT CHECK (the caller may not read it: that is not a
pass) with a one-line fix.

Resources are found by type in the stack (``ListStackResources``: ``DescribeStackResources`` returns
only the first 100), and by a word in the logical id where one type has several roles: the tag-key
guard is the ``AWS::IAM::ManagedPolicy`` whose logical id contains ``Guard``, alarm topics the
``AWS::SNS::Topic`` whose logical id contains ``Alarm``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

OK = "OK"
MISSING = "MISSING"
WARN = "WARN"
CANNOT = "CANNOT CHECK"
SLOT_PREFIX = "SecurityAllowSession"
# Every slot key the guard protects (slots 1..10, as template.yaml's tag-key guard lists them).
SLOT_KEYS = (
    "SecurityAllowSessionInstance",
    *(f"SecurityAllowSessionInstance{k}" for k in range(2, 11)),
    *(f"SecurityAllowSessionUser{k}" for k in range(1, 11)),
)


class StackNotFound(Exception):
    """The stack does not exist (or the caller may not see it): a usage error."""


@dataclass(frozen=True)
class Check:
    check: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Resource:
    logical_id: str
    physical_id: str
    type: str


def run(session: Any, stack_name: str, region: str | None) -> list[Check]:
    """Every check of the stack ``stack_name``, in a fixed order."""
    client = _Clients(session, region)
    stack, resources = _stack(client, stack_name)
    arn_parts = str(stack["StackId"]).split(":")  # arn:PARTITION:cloudformation:REGION:ACCOUNT:stack/...
    partition, stack_region, account = arn_parts[1], arn_parts[3], arn_parts[4]
    checks = [_guard(client, resources)]
    checks += _control_plane_guard(client, resources)
    checks += _trust_policies(client)
    checks += _table_policies(client, resources, partition, stack_region, account)
    checks += _alarm_subscriptions(client, resources)
    checks.append(_deployers(stack))
    return checks


def exit_code(checks: Iterable[Check]) -> int:
    """0: nothing missing (warnings allowed); 1: something missing or not checkable."""
    return 1 if any(c.status in (MISSING, CANNOT) for c in checks) else 0


def as_json(stack_name: str, checks: list[Check]) -> dict[str, Any]:
    return {
        "doctor": {
            "stack": stack_name,
            "ok": exit_code(checks) == 0,
            "checks": [asdict(c) for c in checks],
        }
    }


def as_text(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status:<13} {c.check:<22} {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<13} {'':<22} fix: {c.fix}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ plumbing
class _Clients:
    def __init__(self, session: Any, region: str | None) -> None:
        self._session = session
        self._region = region
        self._cache: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._cache:
            from botocore.config import Config

            region = self._region
            if service in ("iam", "organizations"):
                region = region or "us-east-1"  # global services
            self._cache[service] = self._session.client(
                service, region_name=region, config=Config(retries={"mode": "standard"})
            )
        return self._cache[service]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Error"))


def _cannot(check: str, exc: Exception, what: str) -> Check:
    reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return Check(check, CANNOT, f"{what}: {reason}", "run doctor with read access to it (e.g. SecurityAudit)")


def _stack(client: _Clients, stack_name: str) -> tuple[Mapping[str, Any], list[Resource]]:
    cfn = client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":
            raise StackNotFound(f"stack {stack_name!r} does not exist in this account and Region") from None
        raise
    resources = [
        Resource(r["LogicalResourceId"], r.get("PhysicalResourceId", ""), r["ResourceType"])
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        for r in page["StackResourceSummaries"]
    ]
    return stacks[0], resources


def _of(resources: list[Resource], type_: str, word: str = "") -> list[Resource]:
    return [
        r for r in resources if r.type == type_ and word.lower() in r.logical_id.lower() and r.physical_id
    ]


# ------------------------------------------------------------------------------------------ checks
def _guard(client: _Clients, resources: list[Resource]) -> Check:
    """The tag-key guard policy is attached to someone, or an SCP denies the slot keys."""
    name = "tag-key guard"
    fix = (
        "attach TagKeyGuardPolicyArn to everyone else with IAM write rights, or attach the SCP "
        "docs/scp-deny-slot-tags.json"
    )
    attached = 0
    guard_problem = ""
    guards = _of(resources, "AWS::IAM::ManagedPolicy", "TagKeyGuard")
    if not guards:
        guard_problem = "no guard policy in the stack"
    for guard in guards:
        try:
            for page in (
                client("iam").get_paginator("list_entities_for_policy").paginate(PolicyArn=guard.physical_id)
            ):
                attached += sum(len(page.get(k, [])) for k in ("PolicyGroups", "PolicyUsers", "PolicyRoles"))
        except (ClientError, BotoCoreError) as exc:
            guard_problem = f"cannot list who holds {guard.logical_id}"
            if attached == 0:
                return _cannot(name, exc, guard_problem)
    if attached:
        return Check(name, OK, f"guard policy attached to {attached} user(s)/group(s)/role(s)")
    scp = _scp_with_slot_keys(client)
    if isinstance(scp, str):
        return Check(name, OK, f"guard policy attached to nobody, but SCP {scp} denies the slot keys")
    if scp is None:
        return Check(
            name, MISSING, guard_problem or "guard policy attached to nobody; no SCP names the slot keys", fix
        )
    return Check(name, CANNOT, f"{guard_problem or 'guard policy attached to nobody'}; SCPs: {scp[1]}", fix)


def _control_plane_guard(client: _Clients, resources: list[Resource]) -> list[Check]:
    """The guard's engine-only half (its own managed policy: one cannot hold both) is attached to someone."""
    name = "control-plane guard"
    guards = _of(resources, "AWS::IAM::ManagedPolicy", "ControlPlaneGuard")
    if not guards:  # a stack from before the split: its tag-key guard holds these statements
        return []
    attached = 0
    try:
        for guard in guards:
            for page in (
                client("iam").get_paginator("list_entities_for_policy").paginate(PolicyArn=guard.physical_id)
            ):
                attached += sum(len(page.get(k, [])) for k in ("PolicyGroups", "PolicyUsers", "PolicyRoles"))
    except (ClientError, BotoCoreError) as exc:
        return [_cannot(name, exc, "cannot list who holds the control-plane guard")]
    if attached:
        return [Check(name, OK, f"guard policy attached to {attached} user(s)/group(s)/role(s)")]
    fix = (
        "attach ControlPlaneGuardPolicyArn with TagKeyGuardPolicyArn, or attach the SCP "
        "docs/scp-protect-front-doors.json"
    )
    return [Check(name, MISSING, "control-plane guard policy attached to nobody", fix)]


def _scp_with_slot_keys(client: _Clients) -> str | tuple[None, str] | None:
    """The name of an SCP that names the slot keys; ``None``: none; ``(None, why)``: cannot tell."""
    org = client("organizations")
    try:
        for page in org.get_paginator("list_policies").paginate(Filter="SERVICE_CONTROL_POLICY"):
            for summary in page.get("Policies", []):
                content = org.describe_policy(PolicyId=summary["Id"])["Policy"].get("Content", "")
                if SLOT_PREFIX.lower() not in str(content).lower():
                    continue
                # An SCP protects only where it is attached (a root, an OU or an account).
                if org.list_targets_for_policy(PolicyId=summary["Id"]).get("Targets"):
                    return str(summary.get("Name") or summary["Id"])
    except ClientError as exc:
        return None, f"cannot check ({_code(exc)})"
    except BotoCoreError as exc:
        return None, f"cannot check ({type(exc).__name__})"
    return None


def _trust_policies(client: _Clients) -> list[Check]:
    """No role's trust policy lets anyone pass session tags without restricting the keys: a session tag
    ``SecurityAllowSessionInstance`` would override the role's tag in ``aws:PrincipalTag``."""
    name = "session-tag trust"
    fix = (
        "allow-list the session tag keys in the trust statement allowing sts:TagSession "
        "(Condition ForAllValues:StringEquals aws:TagKeys [the keys your IdP passes])"
    )
    idc_fix = (
        "IAM Identity Center's role cannot be edited: its attributes for access control must not "
        "include a SecurityAllowSession* key"
    )
    flagged: list[tuple[str, str]] = []
    try:
        for page in client("iam").get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                path = str(role.get("Path", "/"))
                if path.startswith("/aws-service-role/"):
                    continue  # service-linked: trusts an AWS service only, and cannot be edited
                if any(_tags_unrestricted(s) for s in _statements(role.get("AssumeRolePolicyDocument"))):
                    idc = path.startswith("/aws-reserved/sso.amazonaws.com/")
                    flagged.append((str(role["RoleName"]), idc_fix if idc else fix))
    except (ClientError, BotoCoreError) as exc:
        return [_cannot(name, exc, "cannot list roles")]
    if not flagged:
        return [Check(name, OK, "no role trust policy allows sts:TagSession with the slot keys")]
    return [
        Check(name, MISSING, f"role {role} trusts sts:TagSession without restricting the tag keys", how)
        for role, how in flagged
    ]


def _statements(document: object) -> list[Mapping[str, Any]]:
    if isinstance(document, str):  # the IAM API returns it URL-encoded; botocore usually decodes it
        try:
            document = json.loads(unquote(document))
        except ValueError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    return [s for s in statements if isinstance(s, Mapping)] if isinstance(statements, list) else []


def _listed(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _tags_unrestricted(statement: Mapping[str, Any]) -> bool:
    """An Allow of ``sts:TagSession`` whose conditions let the slot keys through."""
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        allows = not any(
            fnmatch.fnmatchcase("sts:tagsession", a.lower()) for a in _listed(statement["NotAction"])
        )
    else:
        allows = any(
            fnmatch.fnmatchcase("sts:tagsession", a.lower()) for a in _listed(statement.get("Action"))
        )
    if not allows:
        return False
    conditions = statement.get("Condition") or {}
    for operator, block in conditions.items() if isinstance(conditions, Mapping) else []:
        if not isinstance(block, Mapping):
            continue
        for key, values in block.items():
            if key.lower() == "aws:tagkeys" and _keys_excluded(operator, _listed(values)):
                return False
    return True


def _keys_excluded(operator: str, patterns: list[str]) -> bool:
    """Does ``operator``/``patterns`` on ``aws:TagKeys`` keep every slot key out, in any letter case?

    IAM tag keys are case-insensitive while ``StringLike``/``StringNotLike``/``StringNotEquals`` are
    not, so a deny-list of case-sensitive patterns never keeps out every spelling; an allow-list does.
    """
    op = operator.lower()
    if not op.startswith("forallvalues:"):
        return False  # ForAnyValue or a single-valued operator does not restrict every key
    op = op.removeprefix("forallvalues:")
    lowered = [p.lower() for p in patterns]
    if op in ("stringequals", "stringequalsignorecase"):
        return not any(key.lower() in lowered for key in SLOT_KEYS)
    if op == "stringlike":
        return not any(fnmatch.fnmatchcase(key.lower(), p) for key in SLOT_KEYS for p in lowered)
    if op == "stringnotequalsignorecase":
        return all(key.lower() in lowered for key in SLOT_KEYS)
    if op == "stringnotlike":
        return "*" in patterns
    return False


def _table_policies(
    client: _Clients, resources: list[Resource], partition: str, region: str, account: str
) -> list[Check]:
    tables = _of(resources, "AWS::DynamoDB::Table")
    if not tables:
        return [
            Check("table policy", MISSING, "no DynamoDB table in the stack", "deploy SessionGate's template")
        ]
    checks = []
    for table in tables:
        name = f"table policy {table.logical_id}"
        arn = f"arn:{partition}:dynamodb:{region}:{account}:table/{table.physical_id}"
        try:
            client("dynamodb").get_resource_policy(ResourceArn=arn)
        except ClientError as exc:
            if _code(exc) == "PolicyNotFoundException":
                checks.append(
                    Check(
                        name,
                        MISSING,
                        f"{table.physical_id} has no resource policy: DynamoDB admins can write grants",
                        "deploy the current template (it puts a resource policy on each table)",
                    )
                )
            else:
                checks.append(_cannot(name, exc, table.physical_id))
            continue
        except BotoCoreError as exc:
            checks.append(_cannot(name, exc, table.physical_id))
            continue
        checks.append(Check(name, OK, f"{table.physical_id} has a resource policy"))
    return checks


def _alarm_subscriptions(client: _Clients, resources: list[Resource]) -> list[Check]:
    topics = _of(resources, "AWS::SNS::Topic", "Alarm")
    fix = "subscribe someone (AlarmEmail parameter or aws sns subscribe) and confirm the subscription"
    if not topics:
        return [
            Check(
                "alarm subscriptions", MISSING, "no alarm topic in the stack", "deploy SessionGate's template"
            )
        ]
    checks = []
    for topic in topics:
        name = f"alarms {topic.logical_id}"
        confirmed = pending = 0
        try:
            pages = (
                client("sns")
                .get_paginator("list_subscriptions_by_topic")
                .paginate(TopicArn=topic.physical_id)
            )
            for page in pages:
                for sub in page.get("Subscriptions", []):
                    # Unconfirmed subscriptions have the ARN "PendingConfirmation" (SNS API reference).
                    if str(sub.get("SubscriptionArn", "")).startswith("arn:"):
                        confirmed += 1
                    else:
                        pending += 1
        except (ClientError, BotoCoreError) as exc:
            checks.append(_cannot(name, exc, topic.physical_id))
            continue
        if confirmed:
            checks.append(Check(name, OK, f"{confirmed} confirmed subscription(s)"))
        else:
            checks.append(
                Check(
                    name, MISSING, f"no confirmed subscription ({pending} pending): alarms reach nobody", fix
                )
            )
    return checks


def _deployers(stack: Mapping[str, Any]) -> Check:
    params = {p.get("ParameterKey"): p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    value = str(params.get("DeployerArns") or "").strip()
    if value:
        return Check("deployers", OK, f"DeployerArns names {len([v for v in value.split(',') if v.strip()])}")
    return Check(
        "deployers",
        WARN,
        "DeployerArns is empty: the KMS keys trust the account root (any IAM-delegated KMS admin)",
        "deploy with DeployerArns=<the roles/users that deploy SessionGate>",
    )
