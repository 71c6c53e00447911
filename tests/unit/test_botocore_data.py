"""botocore's data read for less (sessiongate/adapters/botocore_data.py): the same answers as botocore's
own endpoint resolver and loader, for less work at cold start."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader as BotocoreLoader
from botocore.regions import EndpointResolver

from sessiongate.adapters import aws, botocore_data
from tools import trim_models

LAYER = Path(aws.__file__).resolve().parents[1]


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    aws.session.cache_clear()
    aws.client.cache_clear()
    yield
    aws.session.cache_clear()
    aws.client.cache_clear()


def _builtin() -> EndpointResolver:
    return EndpointResolver(trim_models._builtin_loader().load_data("endpoints"), uses_builtin_data=True)


def _shipped() -> botocore_data.TrimmedEndpoints:
    data = json.loads((trim_models.DATA / trim_models.ENDPOINTS).read_text())
    return botocore_data.TrimmedEndpoints(data, _builtin)


def test_shipped_endpoints_match_the_installed_botocore() -> None:
    """Stale after a botocore upgrade: regenerate with ``python -m tools.trim_models``."""
    assert (trim_models.DATA / trim_models.ENDPOINTS).read_text() == trim_models.endpoints()
    assert set(json.loads(trim_models.endpoints())["services"]) == set(trim_models.OPERATIONS)


def _answer(method: Any, *args: Any, **kwargs: Any) -> Any:
    """What a resolver method returns, or the error it raises (type and message)."""
    try:
        return method(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the same error from both resolvers is what is compared
        return (type(exc).__name__, str(exc))


def _regions(data: dict[str, Any], service: str) -> set[str | None]:
    """Every region and endpoint name botocore knows in any partition, a new one per partition, none."""
    names: set[str | None] = {None, "nowhere-1"}
    for partition in data["partitions"]:
        names |= set(partition["regions"])
        names |= set(partition["services"].get(service, {}).get("endpoints", {}))
    names |= {"us-east-9", "cn-north-9", "us-gov-east-9", "us-iso-west-9", "eusc-de-east-9"}
    return names


@pytest.mark.parametrize("service", sorted(trim_models.OPERATIONS))
def test_every_endpoint_of_a_shipped_service_is_botocores(service: str) -> None:
    """Every region and endpoint name of every partition, with and without FIPS and dual-stack, in any
    partition or a given one: the trimmed resolver answers what botocore's whole file answers."""
    builtin, shipped = _builtin(), _shipped()
    data = trim_models._builtin_loader().load_data("endpoints")
    partitions = [None, *builtin.get_available_partitions(), "aws-nowhere"]
    for region in _regions(data, service):
        for fips in (False, True):
            for dualstack in (False, True):
                for partition in partitions:
                    args = {"use_fips_endpoint": fips, "use_dualstack_endpoint": dualstack}
                    if partition:
                        args["partition_name"] = partition
                    expected = _answer(builtin.construct_endpoint, service, region, **args)
                    got = _answer(shipped.construct_endpoint, service, region, **args)
                    assert got == expected, (region, args)
    for partition in partitions:
        for tags in (None, ["fips"], ["dualstack"], ["dualstack", "fips"]):
            for non_regional in (False, True):
                args = {"allow_non_regional": non_regional, "endpoint_variant_tags": tags}
                expected_names = _answer(builtin.get_available_endpoints, service, partition, **args)
                assert _answer(shipped.get_available_endpoints, service, partition, **args) == expected_names
        expected_data = builtin.get_service_endpoints_data(service, partition)
        assert shipped.get_service_endpoints_data(service, partition) == expected_data


def test_partitions_are_kept_whole() -> None:
    builtin, shipped = _builtin(), _shipped()
    assert shipped.get_available_partitions() == builtin.get_available_partitions()
    for partition in builtin.get_available_partitions():
        for tags in (None, ["fips"], ["dualstack"], ["dualstack", "fips"]):
            assert shipped.get_partition_dns_suffix(partition, tags) == builtin.get_partition_dns_suffix(
                partition, tags
            )
    for region in ("us-east-1", "cn-north-1", "us-gov-west-1", "us-isob-east-1", "eu-west-9", "aws-global"):
        got = _answer(shipped.get_partition_for_region, region)
        assert got == _answer(builtin.get_partition_for_region, region), region


def test_another_service_is_answered_from_botocores_whole_file() -> None:
    builtin, shipped = _builtin(), _shipped()
    assert "sqs" not in shipped.services
    for region in ("us-east-1", "aws-global", "cn-north-1", "us-gov-west-1"):
        for service in ("sqs", "cloudfront", "lambda"):
            for fips in (False, True):
                expected = _answer(builtin.construct_endpoint, service, region, use_fips_endpoint=fips)
                assert (
                    _answer(shipped.construct_endpoint, service, region, use_fips_endpoint=fips) == expected
                )
    assert shipped.get_available_endpoints("sqs", "aws") == builtin.get_available_endpoints("sqs", "aws")
    assert shipped.get_service_endpoints_data("sqs") == builtin.get_service_endpoints_data("sqs")


class _Sent(Exception):
    pass


def _where(session: Any, service: str, region: str, config: Config) -> tuple[Any, ...]:
    """Where a client of ``session`` sends its request, and for which region and service it signs it
    (nothing leaves: the request is captured before it is sent)."""
    client = session.client(service, region_name=region, config=config)
    sent: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        sent["url"] = request.url
        sent["scope"] = (
            request.headers.get("Authorization", b"").decode().split("Credential=")[-1].split(",")[0]
        )
        raise _Sent

    client.meta.events.register("before-send", capture)
    operation, params = CALLS[service]
    try:
        getattr(client, operation)(**params)
    except _Sent:
        pass
    except Exception as exc:  # noqa: BLE001 - the same error from both sessions is what is compared
        return (type(exc).__name__, str(exc))
    return (
        client.meta.region_name,
        client.meta.partition,
        client.meta.endpoint_url,
        sent["url"],
        "/".join(sent["scope"].split("/")[2:]),
    )


CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "dynamodb": ("get_item", {"TableName": "t", "Key": {"pk": {"S": "v"}}}),
    "ec2": ("describe_instances", {}),
    "events": ("put_events", {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}),
    "iam": ("get_user", {"UserName": "alice"}),
    "identitystore": (
        "get_group_id",
        {
            "IdentityStoreId": "d-1234567890",
            "AlternateIdentifier": {
                "UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "g"}
            },
        },
    ),
    "kms": ("generate_mac", {"KeyId": "k", "Message": b"m", "MacAlgorithm": "HMAC_SHA_256"}),
    "scheduler": ("get_schedule", {"Name": "n"}),
    "sns": ("publish", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": "m"}),
    "ssm": ("get_parameter", {"Name": "n"}),
    "sts": ("assume_role", {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s"}),
}
CASES = [(service, "us-east-1", {}) for service in sorted(CALLS)] + [
    ("iam", "cn-north-1", {}),
    ("iam", "us-gov-west-1", {}),
    ("iam", "us-east-1", {"use_fips_endpoint": True}),
    ("sts", "us-gov-west-1", {"use_fips_endpoint": True}),
    ("sts", "eu-west-1", {}),
    ("dynamodb", "eu-west-1", {"use_dualstack_endpoint": True}),
    ("ec2", "cn-north-1", {}),
    ("ssm", "us-gov-east-1", {"use_fips_endpoint": True}),
    ("kms", "eu-central-2", {}),
    ("sns", "us-isob-east-1", {}),
    ("scheduler", "ap-southeast-7", {}),
]


@pytest.mark.usefixtures("fresh_clients")
def test_clients_send_where_botocores_own_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer's Session and a plain one: same region, partition, endpoint, URL and signing scope (the
    trimmed endpoints are botocore's built-in data: URLs still come from the services' rule sets)."""
    for key in ("AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_DATA_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    plain = boto3.session.Session(botocore_session=botocore.session.get_session())
    ours = aws.session()
    for service, region, options in CASES:
        config = Config(retries={"total_max_attempts": 1}, **options)
        assert _where(ours, service, region, config) == _where(plain, service, region, config), (
            service,
            region,
            options,
        )
    resolver = ours._session._get_internal_component("endpoint_resolver")
    assert isinstance(resolver, botocore_data.TrimmedEndpoints)
    assert resolver._full.cache_info().currsize == 0  # botocore's whole endpoints.json never read


@pytest.mark.usefixtures("fresh_clients")
def test_an_endpoints_file_on_the_users_data_path_stays_in_charge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = trim_models._builtin_loader().load_data("endpoints")
    (tmp_path / "endpoints.json").write_text(json.dumps(custom))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    resolver = aws.session()._session._get_internal_component("endpoint_resolver")
    assert not isinstance(resolver, botocore_data.TrimmedEndpoints)
    assert resolver.uses_builtin_data is False  # botocore's own handling of a custom endpoints file


def test_service_names_answer_as_botocores_list() -> None:
    ours = botocore_data.Loader(extra_search_paths=[aws.DATA_PATH])
    theirs = BotocoreLoader(extra_search_paths=[aws.DATA_PATH])
    root = Path(BotocoreLoader.BUILTIN_DATA_PATH)
    for type_name in ("service-2", "paginators-1", "waiters-2", "endpoint-rule-set-1"):
        listed = theirs.list_available_services(type_name)
        candidates = {p.name for p in root.iterdir()} | {"nosuchservice", "", ".", "..", "../ec2", "ec2/"}
        for name in sorted(candidates):
            # A fresh list each time: membership alone never lists every service.
            names = ours.list_available_services(type_name)
            assert (name in names) == (name in listed), (type_name, name)
            assert "_names" not in vars(names) or not botocore_data._plain(name)
    assert "sdb" in ours.list_available_services("service-2")
    names = ours.list_available_services("waiters-2")
    assert names == theirs.list_available_services("waiters-2")
    assert list(names) == theirs.list_available_services("waiters-2")
    assert len(names) == len(list(names))
    assert names[0] == theirs.list_available_services("waiters-2")[0]


def test_an_unknown_service_is_refused_as_botocore_refuses_it() -> None:
    ours = botocore_data.Loader(extra_search_paths=[aws.DATA_PATH])
    theirs = BotocoreLoader(extra_search_paths=[aws.DATA_PATH])
    with pytest.raises(UnknownServiceError) as got:
        ours.load_service_model("nosuchservice", "service-2")
    with pytest.raises(UnknownServiceError) as expected:
        theirs.load_service_model("nosuchservice", "service-2")
    assert str(got.value) == str(expected.value)
    assert ours.load_service_model("ec2", "service-2") == theirs.load_service_model("ec2", "service-2")


_FACTORIES = {"make", "client", "client_with", "tag_client", "tag_client_with", "LazyClient", "_make"}


def _services_built(source: Path) -> set[str]:
    """The service names the layer passes to a client factory (``make("sns")``, ``client_with(...)``)."""
    found: set[str] = set()
    for path in sorted(source.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in _FACTORIES and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def test_every_service_the_layer_builds_a_client_for_is_trimmed() -> None:
    """A service outside ``OPERATIONS`` still works (botocore's whole model and endpoints file), at the
    cold-start cost this module removes: add it to tools/trim_models.py."""
    built = _services_built(LAYER)
    assert {"dynamodb", "ec2", "iam", "identitystore", "kms", "scheduler", "sns", "ssm", "sts"} <= built
    assert built <= set(trim_models.OPERATIONS), sorted(built - set(trim_models.OPERATIONS))


def test_a_new_service_client_is_found(tmp_path: Path) -> None:
    (tmp_path / "adapter.py").write_text(
        "def f(make):\n    return make('s3'), aws.client_with('logs', None)\n"
    )
    assert _services_built(tmp_path) == {"s3", "logs"}


def test_the_data_path_keeps_its_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    core = botocore.session.get_session()
    core.set_config_variable("data_path", os.pathsep.join((aws.DATA_PATH, str(tmp_path))))
    botocore_data.install(core, aws.DATA_PATH)
    loader = core.get_component("data_loader")
    assert isinstance(loader, botocore_data.Loader)
    assert loader.search_paths[:2] == [aws.DATA_PATH, str(tmp_path)]
    assert (
        loader.search_paths
        == botocore.loaders.create_loader(os.pathsep.join((aws.DATA_PATH, str(tmp_path)))).search_paths
    )
