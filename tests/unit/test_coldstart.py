"""Process-long objects built with the cyclic collector paused, then frozen (sessiongate/coldstart.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sessiongate import observability, wiring
from sessiongate.adapters import aws
from sessiongate.coldstart import long_lived


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen and the collector on (as this process had it)."""
    gc.unfreeze()
    assert gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable()


def test_a_builder_runs_with_the_collector_off_and_freezes_what_it_built() -> None:
    seen: list[bool] = []

    @long_lived
    def build() -> list[object]:
        seen.append(gc.isenabled())
        return [object() for _ in range(10)]

    build()
    assert seen == [False]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_nested_builders_pause_and_freeze_once() -> None:
    events: list[tuple[str, bool, int]] = []

    @long_lived
    def inner() -> None:
        events.append(("inner", gc.isenabled(), gc.get_freeze_count()))

    @long_lived
    def outer() -> None:
        inner()
        events.append(("outer", gc.isenabled(), gc.get_freeze_count()))

    outer()
    assert events == [("inner", False, 0), ("outer", False, 0)]  # nothing frozen before the outer ends
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_a_failing_builder_turns_the_collector_back_on() -> None:
    @long_lived
    def build() -> None:
        raise ValueError("bad configuration")

    with pytest.raises(ValueError, match="bad configuration"):
        build()
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_is_left_alone() -> None:
    @long_lived
    def build() -> int:
        return 1

    gc.disable()
    assert build() == 1
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_garbage_made_after_the_build_is_still_collected() -> None:
    @long_lived
    def build() -> None:
        return None

    build()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle, unreachable once the names go
    del a, b
    assert gc.collect() >= 2


def test_the_process_wide_builders_are_long_lived() -> None:
    """The cold start's builders (the Session and clients, Powertools' logger and metrics, each
    function's dependencies) run under ``long_lived`` (below their ``functools.cache``)."""
    for builder in (
        aws.session,
        aws.client,
        aws.tag_client,
        observability.logger,
        observability._metrics,
        observability._instrumented,
        wiring.engine,
        wiring.change_request_adapter,
        wiring.publisher,
        wiring.request_api,
    ):
        wrapped = builder.__wrapped__  # type: ignore[attr-defined]  # functools.cache's
        assert wrapped.__code__ is long_lived(lambda: None).__code__, builder.__name__
