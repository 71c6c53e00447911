"""Configuration, read from the environment once per cold start and validated as a whole."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

from sessiongate.core.slots import MAX_SLOTS, BindingMode
from sessiongate.errors import ConfigError

_KMS_ARN_RE = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/-]{1,256}")
# ApproverType values of a change template's approver ("About approvals in your change templates").
APPROVER_TYPES = ("IamUser", "IamGroup", "IamRole", "SSOUser", "SSOGroup")
_TAG_RE = re.compile(r"^([\w .:/=+\-@]{1,128})=([\w .:/=+\-@]{0,256})$")


@dataclass(frozen=True)
class Settings:
    account_id: str = ""
    partition: str = "aws"
    table_name: str = ""
    topic_arn: str = ""
    event_bus_name: str = ""
    schedule_group: str = ""
    revoke_target_arn: str = ""
    adapter_target_arn: str = ""
    operator_policy_arn: str = ""
    scheduler_role_arn: str = ""
    schedule_dlq_arn: str = ""
    change_template_name: str = "AllowSsmSessionStartTemplate"
    # Who may approve a change request, as the change template names them (ApproverName, ApproverType,
    # MinRequiredApprovals of the stack): the engine checks SSM's approval records against these, not
    # against the template, which anyone with ssm:UpdateDocument can rewrite.
    approver_name: str = ""
    approver_type: str = ""
    min_required_approvals: int = 1
    default_validity_minutes: int = 10
    max_validity_minutes: int = 60
    slot_count: int = 5
    approval_start_window_minutes: int = 60
    engine_role_path: str = "/sessiongate/"
    operator_path_prefixes: tuple[str, ...] = ("/",)
    excluded_principals: tuple[str, ...] = ()
    operator_required_tag: tuple[str, str] | None = None
    instance_required_tag: tuple[str, str] | None = None
    instance_denied_tag: tuple[str, str] | None = None
    require_ssm_managed: bool = True
    terminate_sessions_on_expiry: bool = False
    # Deny a grant unless the target account's Session Manager preferences log sessions, encrypted, to
    # S3 and/or CloudWatch Logs (core/session_logging.py).
    require_session_logging: bool = False
    shared_role_patterns: tuple[str, ...] = ("AWSReservedSSO_*",)
    bind_shared_role_sessions: bool = False
    # Where slot tags live (BindingMode): principal | instance | auto (README "Identity Center"). The
    # template's parameter defaults to auto; a function without the variable (deployed before it
    # existed) keeps binding on the principal.
    binding_mode: str = BindingMode.PRINCIPAL.value
    member_accounts: tuple[str, ...] = ()
    member_role_name: str = "SessionGateMember"
    member_external_id: str = ""
    # The reconciler's steady-run period (ReconcilerRateMinutes): usage reads one USAGE shard per run.
    reconciler_rate_minutes: int = 5
    # Native front door (request API).
    requests_table: str = ""
    approval_policy_parameter: str = ""
    pending_request_ttl_minutes: int = 60
    break_glass_approver_arn: str = ""
    # Approver ARN patterns of the stack's default policy (used when no policy parameter is named).
    default_approvers: tuple[str, ...] = ()
    # KMS HMAC keys: the approval policy's (deployers sign) and the approvals' (the request API signs).
    approval_policy_key_id: str = ""
    approval_key_id: str = ""
    # IAM Identity Center's identity store (approver groups): its id, the read-only role SessionGate
    # assumes in the account that administers it, and its Region (default: the function's).
    identity_store_id: str = ""
    identity_store_role_arn: str = ""
    identity_store_region: str = ""
    # The history export (issue 17): its bucket and the bucket's KMS key.
    history_bucket: str = ""
    history_key_arn: str = ""
    # Chat approvals (issue 19): the chat state and links tables, the Slack app's secrets (ARNs).
    chat_state_table: str = ""
    chat_links_table: str = ""
    # How long a chat identity link lasts (ChatLinkMaxAgeDays), and who may remove anyone's link.
    chat_link_max_age_days: int = 30
    deployer_arns: tuple[str, ...] = ()
    slack_signing_secret_arn: str = ""
    # The Slack workspaces (team ids) whose clicks and commands are acted on; empty: any workspace the
    # app's signing secret signs for (security review of issue 19, finding 7).
    slack_team_ids: tuple[str, ...] = ()
    slack_bot_token_arn: str = ""

    # Environment variable of each field.
    ENV: ClassVar[dict[str, str]] = {
        "account_id": "SESSIONGATE_ACCOUNT_ID",
        "partition": "SESSIONGATE_PARTITION",
        "table_name": "SESSIONGATE_TABLE",
        "topic_arn": "SESSIONGATE_TOPIC_ARN",
        "event_bus_name": "SESSIONGATE_EVENT_BUS",
        "schedule_group": "SESSIONGATE_SCHEDULE_GROUP",
        "revoke_target_arn": "SESSIONGATE_REVOKE_TARGET_ARN",
        "adapter_target_arn": "SESSIONGATE_ADAPTER_TARGET_ARN",
        "operator_policy_arn": "SESSIONGATE_OPERATOR_POLICY_ARN",
        "scheduler_role_arn": "SESSIONGATE_SCHEDULER_ROLE_ARN",
        "schedule_dlq_arn": "SESSIONGATE_SCHEDULE_DLQ_ARN",
        "change_template_name": "SESSIONGATE_CHANGE_TEMPLATE",
        "approver_name": "SESSIONGATE_APPROVER_NAME",
        "approver_type": "SESSIONGATE_APPROVER_TYPE",
        "min_required_approvals": "SESSIONGATE_MIN_REQUIRED_APPROVALS",
        "default_validity_minutes": "SESSIONGATE_DEFAULT_VALIDITY_MINUTES",
        "max_validity_minutes": "SESSIONGATE_MAX_VALIDITY_MINUTES",
        "slot_count": "SESSIONGATE_SLOT_COUNT",
        "approval_start_window_minutes": "SESSIONGATE_APPROVAL_START_WINDOW_MINUTES",
        "engine_role_path": "SESSIONGATE_ENGINE_ROLE_PATH",
        "operator_path_prefixes": "SESSIONGATE_OPERATOR_PATH_PREFIXES",
        "excluded_principals": "SESSIONGATE_EXCLUDED_PRINCIPALS",
        "operator_required_tag": "SESSIONGATE_OPERATOR_REQUIRED_TAG",
        "instance_required_tag": "SESSIONGATE_INSTANCE_REQUIRED_TAG",
        "instance_denied_tag": "SESSIONGATE_INSTANCE_DENIED_TAG",
        "require_ssm_managed": "SESSIONGATE_REQUIRE_SSM_MANAGED",
        "terminate_sessions_on_expiry": "SESSIONGATE_TERMINATE_SESSIONS_ON_EXPIRY",
        "require_session_logging": "SESSIONGATE_REQUIRE_SESSION_LOGGING",
        "shared_role_patterns": "SESSIONGATE_SHARED_ROLE_PATTERNS",
        "bind_shared_role_sessions": "SESSIONGATE_BIND_SHARED_ROLE_SESSIONS",
        "binding_mode": "SESSIONGATE_BINDING_MODE",
        "member_accounts": "SESSIONGATE_MEMBER_ACCOUNTS",
        "member_role_name": "SESSIONGATE_MEMBER_ROLE_NAME",
        "member_external_id": "SESSIONGATE_MEMBER_EXTERNAL_ID",
        "reconciler_rate_minutes": "SESSIONGATE_RECONCILER_RATE_MINUTES",
        "requests_table": "SESSIONGATE_REQUESTS_TABLE",
        "approval_policy_parameter": "SESSIONGATE_APPROVAL_POLICY_PARAMETER",
        "pending_request_ttl_minutes": "SESSIONGATE_PENDING_REQUEST_TTL_MINUTES",
        "break_glass_approver_arn": "SESSIONGATE_BREAK_GLASS_APPROVER_ARN",
        "default_approvers": "SESSIONGATE_DEFAULT_APPROVERS",
        "approval_policy_key_id": "SESSIONGATE_APPROVAL_POLICY_KEY",
        "approval_key_id": "SESSIONGATE_APPROVAL_KEY",
        "identity_store_id": "SESSIONGATE_IDENTITY_STORE_ID",
        "identity_store_role_arn": "SESSIONGATE_IDENTITY_STORE_ROLE_ARN",
        "identity_store_region": "SESSIONGATE_IDENTITY_STORE_REGION",
        "history_bucket": "SESSIONGATE_HISTORY_BUCKET",
        "history_key_arn": "SESSIONGATE_HISTORY_KEY_ARN",
        "chat_state_table": "SESSIONGATE_CHAT_STATE_TABLE",
        "chat_links_table": "SESSIONGATE_CHAT_LINKS_TABLE",
        "chat_link_max_age_days": "SESSIONGATE_CHAT_LINK_MAX_AGE_DAYS",
        "deployer_arns": "SESSIONGATE_DEPLOYER_ARNS",
        "slack_signing_secret_arn": "SESSIONGATE_SLACK_SIGNING_SECRET",
        "slack_team_ids": "SESSIONGATE_SLACK_TEAM_IDS",
        "slack_bot_token_arn": "SESSIONGATE_SLACK_BOT_TOKEN",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str], require: Sequence[str] = ()) -> Settings:
        """Build settings from ``env``; every problem is reported at once in one :class:`ConfigError`."""
        values: dict[str, object] = {}
        problems: list[str] = []
        defaults = cls()
        for f in fields(cls):
            var = cls.ENV[f.name]
            raw = env.get(var, "").strip()
            if not raw:
                if f.name in require:
                    problems.append(f"{var} is required")
                continue
            default = getattr(defaults, f.name)
            try:
                values[f.name] = _convert(f.name, raw, default)
            except ValueError as exc:
                problems.append(f"{var}: {exc}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        problems = []
        if not 1 <= self.default_validity_minutes <= self.max_validity_minutes:
            problems.append("default validity must be between 1 and the maximum validity")
        if not 1 <= self.max_validity_minutes <= 1440:
            problems.append("maximum validity must be 1..1440 minutes")
        if not 1 <= self.slot_count <= MAX_SLOTS:
            problems.append(f"slot count must be 1..{MAX_SLOTS}")
        if self.approval_start_window_minutes < 1:
            problems.append("approval start window must be at least 1 minute")
        if not (self.engine_role_path.startswith("/") and self.engine_role_path.endswith("/")):
            problems.append("engine role path must start and end with '/'")
        if self.engine_role_path == "/":
            problems.append("engine role path must not be '/' (it would exclude every principal)")
        bad = [a for a in self.member_accounts if not re.fullmatch(r"\d{12}", a)]
        if bad:
            problems.append(f"member accounts must be 12-digit ids, got {bad}")
        if not 1 <= self.pending_request_ttl_minutes <= 10080:
            problems.append("pending request TTL must be 1..10080 minutes")
        if self.break_glass_approver_arn and not re.fullmatch(
            r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", self.break_glass_approver_arn
        ):
            problems.append("break-glass approver must be an IAM role ARN")
        for name in ("approval_policy_key_id", "approval_key_id"):
            value = getattr(self, name)
            if value and not re.fullmatch(
                r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/-]{1,256}", value
            ):
                problems.append(f"{self.ENV[name]} must be a KMS key (or alias) ARN")
        if not 1 <= self.chat_link_max_age_days <= 365:
            problems.append("chat link max age must be 1..365 days")
        bad = [p for p in self.deployer_arns if not p.startswith("arn:")]
        if bad:
            problems.append(f"deployer ARNs must be ARNs, got {bad[:3]}")
        bad = [p for p in self.default_approvers if not p.startswith("arn:")]
        if bad:
            problems.append(f"default approvers must be ARN patterns, got {bad[:3]}")
        if self.approver_type and self.approver_type not in APPROVER_TYPES:
            problems.append(f"approver type must be one of {', '.join(APPROVER_TYPES)}")
        if self.approver_name and not re.fullmatch(r"[\w+=,.@-]{1,128}", self.approver_name):
            problems.append("approver name must be an IAM or IAM Identity Center name (no path)")
        if not 1 <= self.min_required_approvals <= 5:
            problems.append("minimum required approvals must be 1..5")
        elif self.approver_type in ("IamUser", "SSOUser") and self.min_required_approvals != 1:
            problems.append(
                "an IamUser or SSOUser approver is one person: minimum required approvals must be 1"
            )
        problems += self._identity_store_problems()
        if self.binding_mode not in {m.value for m in BindingMode}:
            problems.append(f"binding mode must be one of {', '.join(m.value for m in BindingMode)}")
        if self.account_id and not re.fullmatch(r"\d{12}", self.account_id):
            problems.append("account id must be 12 digits")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    def _identity_store_problems(self) -> list[str]:
        problems = []
        if bool(self.identity_store_id) != bool(self.identity_store_role_arn):
            problems.append("the identity store id and its role ARN are set together (or neither)")
        # IdentityStoreId pattern of the Identity Store API Reference.
        if self.identity_store_id and not re.fullmatch(
            r"d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            self.identity_store_id,
        ):
            problems.append("identity store id must look like d-1234567890")
        if self.identity_store_role_arn and not re.fullmatch(
            r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", self.identity_store_role_arn
        ):
            problems.append("identity store role must be an IAM role ARN")
        if self.identity_store_region and not re.fullmatch(
            r"[a-z]{2}(-[a-z]+)+-\d", self.identity_store_region
        ):
            problems.append("identity store region must be a Region name such as us-east-1")
        return problems


def _convert(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        lowered = raw.lower()
        if lowered not in {"true", "false"}:
            raise ValueError("must be true or false")
        return lowered == "true"
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if name.endswith("_tag"):
        match = _TAG_RE.match(raw)
        if not match:
            raise ValueError(f"must be KEY=VALUE, got {raw!r}")
        return match.group(1), match.group(2)
    return raw
