"""Wiring: pure builders of each handler's dependencies (settings, clock, client factories given
explicitly), and the process-wide ones the Lambda handlers use when nothing is injected."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessiongate.change_manager.adapter import ChangeRequestAdapter
from sessiongate.change_manager.verifier import ChangeManagerVerifier
from sessiongate.clock import Clock, SystemClock
from sessiongate.coldstart import long_lived
from sessiongate.core.engine import Engine
from sessiongate.core.model import Origin
from sessiongate.errors import ConfigError
from sessiongate.settings import Settings

if TYPE_CHECKING:
    from sessiongate.access_requests.http import RequestApi
    from sessiongate.access_requests.service import NativeService
    from sessiongate.adapters.bus import Bus
    from sessiongate.adapters.directory import Directory
    from sessiongate.adapters.inventory import Inventory
    from sessiongate.adapters.notifier import Notifier
    from sessiongate.adapters.scheduler import Schedules
    from sessiongate.chat.interactions import ChatInteractions
    from sessiongate.chat.messages import RequestMessages
    from sessiongate.history import Exporter
    from sessiongate.outbox import Publisher

ClientFactory = Callable[[str], Any]
MemberClientFactory = Callable[[str, dict[str, str] | None], Any]

_COMMON = ("account_id", "table_name", "topic_arn", "schedule_group")
_SCHEDULING = ("scheduler_role_arn", "schedule_dlq_arn")
# The functions that interpret change requests check SSM's approvals against the stack's approvers.
_APPROVERS = ("approver_name", "approver_type")
REQUIRED: dict[str, tuple[str, ...]] = {
    "grant": _COMMON + _SCHEDULING + _APPROVERS + ("revoke_target_arn",),
    "revoke": _COMMON,
    "adapter": _COMMON + _SCHEDULING + _APPROVERS + ("event_bus_name", "adapter_target_arn"),
    # The reconciler revokes through the engine and reads principals and locks: no schedule, no policy.
    "reconcile": _COMMON,
    # Native front door: the request API also revokes early through the engine (same path as expiry).
    # The stream consumer publishes what the ledger's and the requests table's changes stand for.
    "publish": ("account_id", "table_name", "topic_arn"),
    # The history export writes the same changes to S3 (and rebuilds them from the tables: backfill).
    "export": ("account_id", "table_name", "history_bucket", "history_key_arn"),
    "requests": (
        *_COMMON,
        "requests_table",
        "event_bus_name",
        "break_glass_approver_arn",
        "approval_policy_key_id",
        "approval_key_id",
    ),
    # Chat approvals (issue 19): the interactions endpoint decides through the request API's service;
    # the chat notifier keeps the request messages up to date from the lifecycle topic.
    "chat": (
        *_COMMON,
        "requests_table",
        "event_bus_name",
        "break_glass_approver_arn",
        "approval_policy_key_id",
        "approval_key_id",
        "chat_state_table",
        "chat_links_table",
        "slack_signing_secret_arn",
    ),
    "chat_notify": ("account_id", "chat_state_table", "slack_bot_token_arn", "requests_table"),
}


@dataclass(frozen=True)
class SharedAdapters:
    """The adapters the engine and a front door share (one instance each per process)."""

    directory: Directory
    inventory: Inventory
    schedules: Schedules
    notifier: Notifier
    bus: Bus


def shared_adapters(settings: Settings, make: ClientFactory) -> SharedAdapters:
    from sessiongate.adapters.bus import Bus
    from sessiongate.adapters.directory import Directory
    from sessiongate.adapters.inventory import Inventory
    from sessiongate.adapters.notifier import Notifier
    from sessiongate.adapters.scheduler import Schedules

    return SharedAdapters(
        directory=Directory(make("iam"), _tagger(make)),
        inventory=Inventory(make("ec2"), make("ssm"), _tagger(make, "ec2")),
        schedules=Schedules(
            make("scheduler"),
            group=settings.schedule_group,
            role_arn=settings.scheduler_role_arn,
            dlq_arn=settings.schedule_dlq_arn,
        ),
        notifier=Notifier(make("sns"), settings.topic_arn),
        bus=Bus(make("events"), settings.event_bus_name),
    )


def _tagger(make: ClientFactory, service: str = "iam") -> Any:
    """The IAM (TagUser/TagRole) or EC2 (CreateTags, instance binding) client of the grant's tag calls,
    bounded in time (``aws.TAG_CALL_CONFIG``) when clients are the process's own; an injected factory's
    (tests, sandbox) is used as it is."""
    from sessiongate.adapters import aws

    return aws.LazyClient(service, aws.tag_client) if make is aws.LazyClient else None


def build_engine(
    settings: Settings,
    *,
    clock: Clock | None = None,
    client: ClientFactory | None = None,
    member_client: MemberClientFactory | None = None,
    member_session: tuple[str, dict[str, Any] | None] = ("sessiongate", None),
    shared: SharedAdapters | None = None,
) -> Engine:
    from sessiongate.adapters import aws
    from sessiongate.adapters.accounts import MemberAccounts
    from sessiongate.adapters.change_requests import ChangeRequests
    from sessiongate.adapters.ledger import Ledger
    from sessiongate.adapters.sessions import Sessions

    make = client or aws.LazyClient
    clock = clock or SystemClock()
    shared = shared or shared_adapters(settings, make)
    changes = ChangeRequests(make("ssm"))
    return Engine(
        settings=settings,
        ledger=Ledger(make("dynamodb"), settings.table_name),
        directory=shared.directory,
        inventory=shared.inventory,
        schedules=shared.schedules,
        notifier=shared.notifier,
        clock=clock,
        bus=shared.bus,
        verifiers=_verifiers(settings, changes, clock, make),
        sessions=Sessions(make("ssm")),
        accounts=MemberAccounts(
            make("sts"),
            member_client or aws.client_with,
            partition=settings.partition,
            role_path=settings.engine_role_path,
            role_name=settings.member_role_name,
            external_id=settings.member_external_id,
            session_name=member_session[0],
            session_policy=member_session[1],
            tag_make=aws.tag_client_with if member_client is None else None,
        )
        if settings.member_accounts
        else None,
    )


def build_change_request_adapter(
    settings: Settings,
    *,
    clock: Clock | None = None,
    client: ClientFactory | None = None,
    member_client: MemberClientFactory | None = None,
) -> ChangeRequestAdapter:
    """The Change Manager front door: status events -> re-read SSM -> ``AccessApproved`` on the bus."""
    from sessiongate.adapters import aws
    from sessiongate.adapters.accounts import READ_INSTANCES_ONLY
    from sessiongate.adapters.change_requests import ChangeRequests

    make = client or aws.LazyClient
    shared = shared_adapters(settings, make)
    # In member accounts the adapter only asks whether the instance is a managed node: read-only session.
    core = build_engine(
        settings,
        clock=clock,
        client=client,
        member_client=member_client,
        member_session=("sessiongate-adapter", READ_INSTANCES_ONLY),
        shared=shared,
    )
    return ChangeRequestAdapter(
        settings=settings,
        changes=ChangeRequests(make("ssm")),
        bus=shared.bus,
        schedules=shared.schedules,
        directory=shared.directory,
        clock=core.clock,
        recorder=core,
        targets=core,
    )


def _verifiers(settings: Settings, changes: Any, clock: Clock, make: ClientFactory) -> dict[Origin, Any]:
    """Origin verifiers; without a requests table native grants stay unverifiable (denied)."""
    from sessiongate.adapters.directory import Directory

    verifiers: dict[Origin, Any] = {
        Origin.CHANGE_MANAGER: ChangeManagerVerifier(changes, settings, clock, Directory(make("iam")))
    }
    if settings.requests_table:
        if not settings.break_glass_approver_arn:
            # Without it every break-glass grant would be denied as origin_mismatch: say so at cold start.
            raise ConfigError(
                "invalid configuration: SESSIONGATE_BREAK_GLASS_APPROVER_ARN is required with "
                "SESSIONGATE_REQUESTS_TABLE (the approver of record of break-glass requests)"
            )
        if not (settings.approval_key_id and settings.approval_policy_key_id):
            # Without them no native approval could be verified: say so at cold start.
            raise ConfigError(
                "invalid configuration: SESSIONGATE_APPROVAL_KEY and SESSIONGATE_APPROVAL_POLICY_KEY are "
                "required with SESSIONGATE_REQUESTS_TABLE (native approvals are verified with them)"
            )

        def native() -> Any:
            from sessiongate.access_requests.verifier import NativeVerifier
            from sessiongate.adapters.kms import Macs
            from sessiongate.adapters.request_store import RequestStore

            return NativeVerifier(
                RequestStore(make("dynamodb"), settings.requests_table),
                settings,
                policy_source(settings, clock, make),
                Macs(make("kms")),
            )

        # Built (and the native front door imported) when the first native grant arrives: a Change
        # Manager grant does not pay for it at cold start.
        verifiers[Origin.NATIVE] = OnFirstUse(native)
    return verifiers


class OnFirstUse:
    """Stands in for the object ``build`` returns, built on the first attribute access."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._built: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._built is None:
            self._built = self._build()
        return getattr(self._built, name)


def policy_source(settings: Settings, clock: Clock, make: ClientFactory) -> Any:
    """The verified approval policy (the stack default, or the signed parameter)."""
    from sessiongate.adapters.kms import Macs
    from sessiongate.adapters.policy_source import PolicySource
    from sessiongate.adapters.request_store import RequestStore

    return PolicySource(
        make("ssm"),
        settings.approval_policy_parameter,
        clock,
        macs=Macs(make("kms")),
        key_id=settings.approval_policy_key_id,
        default_approvers=settings.default_approvers,
        groups=identity_store_groups(settings, clock, make),
        # Identity Center sessions count only from the accounts served (their SCP reserves the names).
        served_accounts=(settings.account_id, *settings.member_accounts),
        # The highest signed serial accepted so far (policy#current): older envelopes are refused.
        store=RequestStore(make("dynamodb"), settings.requests_table) if settings.requests_table else None,
    )


def identity_store_groups(settings: Settings, clock: Clock, make: ClientFactory) -> Any:
    """Who is in which Identity Center group (approver groups), when an identity store is configured;
    otherwise None, and a policy naming groups refuses those approvals (fail closed)."""
    if not (settings.identity_store_id and settings.identity_store_role_arn):
        return None
    from sessiongate.adapters import aws
    from sessiongate.adapters.identity_store import IdentityStoreGroups

    return IdentityStoreGroups(
        make("sts"),
        aws.client_with,
        clock,
        identity_store_id=settings.identity_store_id,
        role_arn=settings.identity_store_role_arn,
        region=settings.identity_store_region,
    )


def build_request_api(
    settings: Settings,
    *,
    clock: Clock | None = None,
    client: ClientFactory | None = None,
    member_client: MemberClientFactory | None = None,
) -> RequestApi:
    """The native front door: request API over the request store, the policy and the engine."""
    from sessiongate.access_requests.http import RequestApi
    from sessiongate.adapters import aws

    make = client or aws.LazyClient
    clock = clock or SystemClock()
    return RequestApi(
        native_service(settings, clock=clock, client=client, member_client=member_client),
        linking=linking(settings, clock, make),
    )


def linking(settings: Settings, clock: Clock, make: ClientFactory) -> Any:
    """Chat identity links (issue 19), when the chat tables are configured; otherwise None."""
    if not (settings.chat_state_table and settings.chat_links_table):
        return None
    from datetime import timedelta

    from sessiongate.adapters.chat import ChatStateTable, LinksTable
    from sessiongate.adapters.kms import Macs
    from sessiongate.adapters.notifier import Notifier
    from sessiongate.chat.links import Linking, LinkSeal

    return Linking(
        ChatStateTable(make("dynamodb"), settings.chat_state_table),
        LinksTable(make("dynamodb"), settings.chat_links_table),
        clock,
        Notifier(make("sns"), settings.topic_arn),
        seal=LinkSeal(Macs(make("kms")), settings.approval_key_id),
        max_age=timedelta(days=settings.chat_link_max_age_days),
        deployers=settings.deployer_arns,
    )


def native_service(
    settings: Settings,
    *,
    clock: Clock,
    client: ClientFactory | None = None,
    member_client: MemberClientFactory | None = None,
) -> NativeService:
    """The native front door's service (the request API's, and the chat interactions')."""
    from sessiongate.access_requests.service import NativeService
    from sessiongate.adapters import aws
    from sessiongate.adapters.accounts import READ_AND_UNTAG_ONLY
    from sessiongate.adapters.kms import Macs
    from sessiongate.adapters.request_store import RequestStore

    make = client or aws.LazyClient

    shared = shared_adapters(settings, make)
    # In member accounts the request API only reads and revokes: its role session there cannot tag.
    core = build_engine(
        settings,
        clock=clock,
        client=client,
        member_client=member_client,
        member_session=("sessiongate-requests", READ_AND_UNTAG_ONLY),
        shared=shared,
    )
    return NativeService(
        settings=settings,
        store=RequestStore(make("dynamodb"), settings.requests_table),
        policies=policy_source(settings, clock, make),
        macs=Macs(make("kms")),
        inventory=shared.inventory,
        directory=shared.directory,
        bus=shared.bus,
        notifier=shared.notifier,
        engine=core,
        clock=clock,
    )


def build_chat_interactions(
    settings: Settings,
    *,
    clock: Clock | None = None,
    client: ClientFactory | None = None,
    member_client: MemberClientFactory | None = None,
    slack: tuple[Any, Any] | None = None,
) -> ChatInteractions:
    """The chat interactions endpoint (issue 19): Slack's signed requests -> link codes and decisions
    through the request API's own service. ``slack``: (web client factory of a bot token, webhook
    factory of a response_url) to use instead of slack-sdk's (the sandbox's fake Slack)."""
    from sessiongate.adapters import aws
    from sessiongate.adapters.chat import ChatStateTable, LinksTable, Secret
    from sessiongate.chat.interactions import ChatInteractions
    from sessiongate.chat.slack import SlackInbound, SlackOutbound

    make = client or aws.LazyClient
    clock = clock or SystemClock()
    state = ChatStateTable(make("dynamodb"), settings.chat_state_table)
    links = LinksTable(make("dynamodb"), settings.chat_links_table)
    signing = Secret(make("secretsmanager"), settings.slack_signing_secret_arn, clock)
    webhook = slack[1] if slack else None
    link = linking(settings, clock, make)
    return ChatInteractions(
        inbound=SlackInbound(signing, clock),
        outbound=SlackOutbound(_no_web, webhook),
        state=state,
        links=links,
        linking=link,
        decisions=native_service(settings, clock=clock, client=client, member_client=member_client),
        clock=clock,
        team_ids=frozenset(settings.slack_team_ids),
    )


def _no_web() -> Any:
    raise RuntimeError("the interactions endpoint answers through response_url only")


def build_chat_messages(
    settings: Settings,
    *,
    clock: Clock | None = None,
    client: ClientFactory | None = None,
    slack: tuple[Any, Any] | None = None,
) -> RequestMessages:
    """The chat notifier (issue 19): lifecycle events -> the request messages in the rules' channels."""
    from sessiongate.adapters import aws
    from sessiongate.adapters.chat import ChatStateTable, Secret, instance_tags
    from sessiongate.adapters.request_store import RequestStore
    from sessiongate.chat.messages import RequestMessages
    from sessiongate.chat.slack import SlackOutbound, web_client

    make = client or aws.LazyClient
    clock = clock or SystemClock()
    token = Secret(make("secretsmanager"), settings.slack_bot_token_arn, clock)
    make_web, webhook = slack or (web_client, None)

    def web() -> Any:  # built when a message is posted: the token is read then (cached a few minutes)
        return make_web(token())

    def tags_of(account: str, instance_id: str) -> dict[str, str]:
        return instance_tags(make("ec2"), account, settings.account_id, instance_id)

    return RequestMessages(
        ChatStateTable(make("dynamodb"), settings.chat_state_table),
        SlackOutbound(web, webhook),
        tags_of,
        # The card's facts and channel come from the request's record, never the event (a trigger).
        RequestStore(make("dynamodb"), settings.requests_table).get,
    )


def build_publisher(settings: Settings, *, client: ClientFactory | None = None) -> Publisher:
    """The stream consumer: lifecycle events of the ledger's and the requests table's changes -> SNS."""
    from sessiongate.adapters import aws
    from sessiongate.adapters.notifier import Notifier
    from sessiongate.outbox import LEDGER, REQUESTS, Publisher

    make = client or aws.LazyClient
    tables = {settings.table_name: LEDGER}
    if settings.requests_table:
        tables[settings.requests_table] = REQUESTS
    return Publisher(Notifier(make("sns"), settings.topic_arn), tables)


def build_exporter(settings: Settings, *, client: ClientFactory | None = None) -> Exporter:
    """The history export: the ledger's and the requests table's transitions -> S3 (and the backfill)."""
    from sessiongate.adapters import aws
    from sessiongate.adapters.history_store import HistoryStore, TableScanner
    from sessiongate.history import Exporter
    from sessiongate.outbox import LEDGER, REQUESTS

    make = client or aws.LazyClient
    tables = {settings.table_name: LEDGER}
    if settings.requests_table:
        tables[settings.requests_table] = REQUESTS
    store = HistoryStore(make("s3"), settings.history_bucket, settings.history_key_arn)
    return Exporter(store, tables, scanner=TableScanner(make("dynamodb")))


def build(
    role: str,
    environ: Mapping[str, str],
    *,
    clock: Clock | None = None,
    client: ClientFactory | None = None,
    member_client: MemberClientFactory | None = None,
    slack: tuple[Any, Any] | None = None,
) -> Any:
    """The dependency a handler of ``role`` is given, built from ``environ`` (its settings) and the
    given clock and client factories: an engine, or for ``adapter`` the Change Manager adapter, for
    ``requests`` the request API. The sandbox and the tests pass it to the handler explicitly."""
    settings = Settings.from_env(environ, require=REQUIRED[role])
    if role == "requests":
        return build_request_api(settings, clock=clock, client=client, member_client=member_client)
    if role == "adapter":
        return build_change_request_adapter(settings, clock=clock, client=client, member_client=member_client)
    if role == "publish":
        return build_publisher(settings, client=client)
    if role == "export":
        return build_exporter(settings, client=client)
    if role == "chat":  # (``slack``: the chat's web and webhook clients, e.g. the sandbox's fake Slack)
        return build_chat_interactions(
            settings, clock=clock, client=client, member_client=member_client, slack=slack
        )
    if role == "chat_notify":
        return build_chat_messages(settings, clock=clock, client=client, slack=slack)
    return build_engine(settings, clock=clock, client=client, member_client=member_client)


# The process-wide dependencies of the Lambda handlers: built on the first invocation from the
# function's environment, the system clock and boto3 clients, then kept for the process's life.
@functools.cache
@long_lived
def engine(role: str) -> Engine:
    """The process-wide engine of a function role (``grant``, ``revoke``, ``reconcile``)."""
    return build_engine(Settings.from_env(os.environ, require=REQUIRED[role]))


@functools.cache
@long_lived
def change_request_adapter() -> ChangeRequestAdapter:
    """The process-wide Change Manager adapter (role ``adapter``)."""
    return build_change_request_adapter(Settings.from_env(os.environ, require=REQUIRED["adapter"]))


@functools.cache
@long_lived
def publisher() -> Publisher:
    """The process-wide stream consumer (role ``publish``)."""
    return build_publisher(Settings.from_env(os.environ, require=REQUIRED["publish"]))


@functools.cache
@long_lived
def exporter() -> Exporter:
    """The process-wide history export (role ``export``)."""
    return build_exporter(Settings.from_env(os.environ, require=REQUIRED["export"]))


@functools.cache
@long_lived
def request_api() -> RequestApi:
    """The process-wide native request API (role ``requests``)."""
    return build_request_api(Settings.from_env(os.environ, require=REQUIRED["requests"]))


@functools.cache
@long_lived
def chat_interactions() -> ChatInteractions:
    """The process-wide chat interactions endpoint (role ``chat``)."""
    return build_chat_interactions(Settings.from_env(os.environ, require=REQUIRED["chat"]))


@functools.cache
@long_lived
def chat_messages() -> RequestMessages:
    """The process-wide chat notifier (role ``chat_notify``)."""
    return build_chat_messages(Settings.from_env(os.environ, require=REQUIRED["chat_notify"]))
