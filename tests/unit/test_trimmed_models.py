"""The trimmed service models the layer ships (tools/trim_models.py): current, and used by the one Session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.loaders import Loader

from sessiongate.adapters import aws
from tools import trim_models


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    aws.session.cache_clear()
    aws.client.cache_clear()
    yield
    aws.session.cache_clear()
    aws.client.cache_clear()


def test_shipped_models_match_the_installed_botocore() -> None:
    """Stale after a botocore upgrade: regenerate with ``python -m tools.trim_models``."""
    for relative, text in trim_models.models().items():
        assert (trim_models.DATA / relative).read_text() == text, relative


def test_every_operation_the_code_calls_is_in_the_trimmed_models() -> None:
    missing = trim_models.missing_operations()
    assert missing == {}, (
        f"add {missing} to OPERATIONS in tools/trim_models.py, then: python -m tools.trim_models"
    )


def test_a_call_missing_from_the_trimmed_models_is_found(tmp_path: Path) -> None:
    (tmp_path / "adapter.py").write_text(
        "def f(ssm, iam):\n"
        "    ssm.send_command(DocumentName='x')\n"
        "    return iam.get_paginator('list_users')\n"
    )
    # A name is matched against every trimmed service (identitystore has a ListUsers too): a false match
    # only keeps one more operation.
    assert trim_models.missing_operations(tmp_path) == {
        "ssm": {"SendCommand"},
        "iam": {"ListUsers"},
        "identitystore": {"ListUsers"},
    }


def test_an_operation_read_as_a_bound_method_counts_as_called(tmp_path: Path) -> None:
    """``identity_store.py`` reads ``client.get_user_id`` and calls it later: an attribute reference,
    not a call, and still an operation the trimmed model must keep."""
    (tmp_path / "adapter.py").write_text("def f(store):\n    return {'x': store.list_group_memberships}\n")
    assert trim_models.missing_operations(tmp_path) == {"identitystore": {"ListGroupMemberships"}}


def test_trimmed_operations_are_botocores_own() -> None:
    builtin = trim_models._builtin_loader()
    assert builtin.search_paths == [Loader.BUILTIN_DATA_PATH]
    for relative in trim_models.models():
        service, version = relative.parts[0], relative.parts[1]
        full = builtin.load_data(f"{service}/{version}/service-2")
        trimmed = json.loads((trim_models.DATA / relative).read_text())
        assert trimmed["metadata"] == full["metadata"]
        for name in trim_models.OPERATIONS[service]:
            assert trimmed["operations"][name] == trim_models._strip(full["operations"][name])
        for name, shape in trimmed["shapes"].items():
            assert shape == trim_models._strip(full["shapes"][name]), name


def test_the_session_builds_clients_from_the_trimmed_models(
    fresh_clients: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ec2 = aws.client("ec2")
    # DescribeInstances, and the tag calls of instance binding (issue 15).
    assert ec2.meta.service_model.operation_names == ["CreateTags", "DeleteTags", "DescribeInstances"]
    assert hasattr(ec2, "describe_instances")
    # Every other service and file is still botocore's own.
    assert "Publish" in aws.client("sns").meta.service_model.operation_names
    assert ec2.can_paginate("describe_instances")


@pytest.mark.usefixtures("fresh_clients")
def test_a_call_on_the_shipped_s3_model_resolves_its_endpoint() -> None:
    """S3's endpoint rule set reads the model's client context parameters, documentation included
    (botocore's ``client_context_parameters``): the history export's PutObject, answered by a stub
    after the endpoint is resolved."""
    from botocore.stub import Stubber

    s3 = aws.session().client("s3", region_name="us-east-1")
    with Stubber(s3) as stub:
        stub.add_response("put_object", {"ETag": '"0"'}, {"Bucket": "history", "Key": "k", "Body": b"{}"})
        assert s3.put_object(Bucket="history", Key="k", Body=b"{}")["ETag"] == '"0"'


def test_every_modeled_error_of_a_trimmed_service_is_kept() -> None:
    """botocore builds ``client.exceptions`` from every error shape of the model; the adapters catch
    errors that none of the operations they call declares (IAM's UnmodifiableEntityException)."""
    builtin = trim_models._builtin_loader()
    for relative in trim_models.models():
        service, version = relative.parts[0], relative.parts[1]
        full = builtin.load_data(f"{service}/{version}/service-2")
        trimmed = json.loads((trim_models.DATA / relative).read_text())
        errors = {name for name, shape in full["shapes"].items() if shape.get("exception")}
        assert errors <= set(trimmed["shapes"]), (service, sorted(errors - set(trimmed["shapes"]))[:5])


@pytest.mark.usefixtures("fresh_clients")
@pytest.mark.parametrize(
    ("operation", "code", "expected"),
    [
        ("untag_role", "NoSuchEntity", False),
        ("untag_role", "UnmodifiableEntity", False),
        ("tag_role", "UnmodifiableEntity", "PrincipalUnmodifiable"),
        ("tag_role", "LimitExceeded", "TagLimitExceeded"),
    ],
)
def test_the_directory_on_the_shipped_iam_model_turns_iam_refusals_into_the_cores(
    operation: str, code: str, expected: object
) -> None:
    """The Directory adapter with the client Lambda builds (the trimmed IAM model), IAM answering with
    an error: the core's exception or ``False``, never an AttributeError for a missing error class."""
    from botocore.stub import Stubber

    from sessiongate.adapters.directory import Directory
    from sessiongate.core.identity import PrincipalType

    iam = aws.session().client("iam", region_name="us-east-1")
    directory = Directory(iam)
    with Stubber(iam) as stub:
        stub.add_client_error(operation, service_error_code=code, http_status_code=409)
        try:
            if operation == "untag_role":
                result: object = directory.untag(PrincipalType.ROLE, "ops", ["SecurityAllowSessionInstance"])
            else:
                directory.tag(
                    PrincipalType.ROLE, "ops", {"SecurityAllowSessionInstance": "i-0123456789abcdef0"}
                )
                result = None
        except Exception as exc:  # noqa: BLE001 - the test names the exception it expects
            result = type(exc).__name__
    assert result == expected
