"""botocore's own data files, read for less on a cold start (issue 16: init + first invocation).

Two costs of building the first clients remained after the trimmed service models (``aws.py``), both
paid whatever the service:

- **endpoints.json** (1.2 MB): the Session's ``EndpointResolver`` parses it whole when the first client
  is built, ~35 ms of JSON into ~100k objects, and ~100 ms more of garbage collection those objects
  cause during the cold start. Its only readers are per service (``construct_endpoint``,
  ``get_available_endpoints``, ``get_service_endpoints_data``: ``partition["services"][name]``) or per
  partition (regions, DNS suffixes, variants). ``TrimmedEndpoints`` is botocore's own resolver over the
  same data with every partition kept whole and only the services SessionGate calls
  (``data/endpoints-trimmed.json``, 44 kB, written by ``tools/trim_models.py``); any other service is
  answered from the whole file, read then. It is marked as botocore's built-in data
  (``uses_builtin_data``), which it is: botocore then resolves URLs from the services' endpoint rule
  sets exactly as before, instead of treating the legacy hostname as a custom endpoint. A user's own
  endpoints.json earlier on ``AWS_DATA_PATH`` is left in charge (nothing is replaced then).
- **the list of every known service**: ``Loader.load_service_model`` first asks
  ``list_available_services(type)``, which lists each of the ~440 service directories of botocore's
  data and looks for the type's file in each of their versions (~1,500 system calls, for
  ``service-2``, ``endpoint-rule-set-1`` and ``paginators-1`` each). ``Loader`` answers the ``in``
  test that call is for by looking at that one service's directories, the same test botocore applies
  to each of them; anything else asked of the list gets botocore's own, computed then.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from botocore.loaders import Loader as BotocoreLoader
from botocore.regions import EndpointResolver

ENDPOINTS_FILE = "endpoints-trimmed.json"


class Loader(BotocoreLoader):  # type: ignore[misc]  # botocore is untyped
    """botocore's ``Loader``, whose service lists answer membership without listing every service."""

    def list_available_services(self, type_name: str) -> Sequence[str]:
        return ServiceNames(
            type_name, self._has_service, functools.partial(super().list_available_services, type_name)
        )

    def _has_service(self, service: str, type_name: str) -> bool:
        """Whether botocore's listing would include ``service``: a directory of that name in a search
        path with a version directory holding the type's file (``list_available_services``)."""
        for path in self.search_paths:
            directory = os.path.join(path, service)
            if not os.path.isdir(directory):
                continue
            for version in os.listdir(directory):
                if self.file_loader.exists(os.path.join(directory, version, type_name)):
                    return True
        return False


class ServiceNames(Sequence[str]):
    """The sorted names botocore's ``list_available_services`` returns, listed only when more than
    ``name in names`` is asked of them."""

    def __init__(
        self, type_name: str, has: Callable[[str, str], bool], listing: Callable[[], list[str]]
    ) -> None:
        self._type_name = type_name
        self._has = has
        self._listing = listing

    @functools.cached_property
    def _names(self) -> list[str]:
        return list(self._listing())

    def __contains__(self, name: object) -> bool:
        if "_names" in self.__dict__ or not isinstance(name, str) or not _plain(name):
            return name in self._names
        return self._has(name, self._type_name)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __eq__(self, other: object) -> bool:
        return self._names == (list(other) if isinstance(other, ServiceNames) else other)

    __hash__ = None  # type: ignore[assignment]  # a list is not hashable either

    def __repr__(self) -> str:
        return repr(self._names)


def _plain(name: str) -> bool:
    """A name that can only be one directory entry (botocore's listing only ever holds such names)."""
    return bool(name) and name not in (".", "..") and os.sep not in name and (os.altsep or os.sep) not in name


class TrimmedEndpoints(EndpointResolver):  # type: ignore[misc]  # botocore is untyped
    """botocore's ``EndpointResolver`` over the trimmed endpoints data; other services go to ``full``."""

    def __init__(self, trimmed: dict[str, Any], full: Callable[[], EndpointResolver]) -> None:
        super().__init__(trimmed["endpoints"], uses_builtin_data=True)
        self.services = frozenset(trimmed["services"])
        self._full = functools.cache(full)

    def construct_endpoint(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        if service_name in self.services:
            return super().construct_endpoint(service_name, *args, **kwargs)
        return self._full().construct_endpoint(service_name, *args, **kwargs)

    def get_available_endpoints(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        if service_name in self.services:
            return super().get_available_endpoints(service_name, *args, **kwargs)
        return self._full().get_available_endpoints(service_name, *args, **kwargs)

    def get_service_endpoints_data(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        if service_name in self.services:
            return super().get_service_endpoints_data(service_name, *args, **kwargs)
        return self._full().get_service_endpoints_data(service_name, *args, **kwargs)


def install(core: Any, data_dir: str) -> None:
    """Give the botocore Session ``core`` (before any client is built) the ``Loader`` above, over its
    configured data path, and the trimmed endpoints found in ``data_dir``."""
    path = core.get_config_variable("data_path")
    # What botocore.loaders.create_loader does with the data path, with this module's Loader.
    loader = Loader(
        extra_search_paths=[os.path.expanduser(os.path.expandvars(p)) for p in path.split(os.pathsep)]
        if path
        else None
    )
    core.register_component("data_loader", loader)
    register = getattr(core, "_register_internal_component", None)
    trimmed = os.path.join(data_dir, ENDPOINTS_FILE)
    if register is None or not os.path.isfile(trimmed) or not _builtin_endpoints(loader):
        return

    def full() -> EndpointResolver:
        # botocore.session.Session._register_endpoint_resolver's own resolver.
        data, found = loader.load_data_with_path("endpoints")
        return EndpointResolver(data, uses_builtin_data=loader.is_builtin_path(found))

    with open(trimmed, encoding="utf-8") as f:
        register("endpoint_resolver", TrimmedEndpoints(json.load(f), full))


def _builtin_endpoints(loader: Any) -> bool:
    """Whether the endpoints file botocore would load is its own (not one earlier on AWS_DATA_PATH)."""
    for path in loader.search_paths:
        candidate = os.path.join(path, "endpoints")
        if os.path.isdir(path) and loader.file_loader.exists(candidate):
            return bool(loader.is_builtin_path(candidate))
    return False
