"""Integration tier: a SessionGate stack on moto, built from the template's settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.support.stack import Stack, build_stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield build_stack()
