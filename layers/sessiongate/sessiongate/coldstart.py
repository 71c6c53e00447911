"""The process's long-lived objects are built with the cyclic garbage collector paused, then frozen.

A cold start builds what the process keeps for its whole life: boto3 and botocore's modules, the one
Session and its clients (service models, endpoint rule sets), Powertools' logger and metrics, the
handler's dependencies. Reference counting frees the little garbage building makes; the cyclic
collector only walks the growing heap again and again: ~120 ms CPU of the request API's cold start
(one full collection ~50 ms, ten of the middle generation ~40 ms), about 0.3x ``import boto3``
(issue 16, ``bench.cold_start``). So the process-wide builders (``adapters.aws``: session and clients;
``observability``: logger, metrics, instrumented handler; ``wiring``: each function's dependencies) run
:func:`long_lived`: the collector is off while the outermost one builds, and what exists when it ends
moves to the permanent generation (:func:`gc.freeze`, Python documentation "gc — Garbage Collector
interface"), which no later collection walks; every later invocation's garbage is collected as before.

The price: a reference cycle among objects alive at a freeze that later becomes garbage is never
freed. What is frozen is what the process keeps (modules, clients, dependencies), built once per
process; builders that build again (a test clearing a cache) freeze again.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def long_lived(build: Callable[P, R]) -> Callable[P, R]:
    """Decorate a builder of process-long objects (under its ``functools.cache``): it runs with the
    cyclic collector paused, and what exists when it returns (or raises) is frozen. A builder called
    from another one, or while something else has the collector off, runs as it is."""

    @functools.wraps(build)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return build(*args, **kwargs)
        gc.disable()
        try:
            return build(*args, **kwargs)
        finally:
            gc.freeze()
            gc.enable()

    return run
