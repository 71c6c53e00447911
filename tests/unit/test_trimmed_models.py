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
    assert trim_models.missing_operations(tmp_path) == {"ssm": {"SendCommand"}, "iam": {"ListUsers"}}


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
    assert ec2.meta.service_model.operation_names == ["DescribeInstances"]
    assert hasattr(ec2, "describe_instances")
    # Every other service and file is still botocore's own.
    assert "Publish" in aws.client("sns").meta.service_model.operation_names
    assert ec2.can_paginate("describe_instances")
