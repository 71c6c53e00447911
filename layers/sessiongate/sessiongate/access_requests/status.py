"""Loading requests for reads (derived) and writes (synced), and optimistic conditional writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sessiongate.access_requests.deps import (
    WRITE_ATTEMPTS,
)
from sessiongate.access_requests.ending import Ending
from sessiongate.access_requests.errors import Conflict, NotFound
from sessiongate.access_requests.ids import check_request_id, extension_id, root_id
from sessiongate.access_requests.records import (
    Request,
    RequestStatus,
)


class Status(Ending):
    def _read_derived(self, request_id: str) -> Request:
        """A request as the reads report it: derived (:meth:`_derive`), nothing written."""
        request = self.store.get(check_request_id(request_id))
        if request is None:
            raise NotFound("not_found", f"no request {request_id}")
        return self._derive(request)

    def _load_for_write(self, request_id: str) -> Request:
        """A request for a write path: its derived status written first (:meth:`_write_derived`)."""
        request = self.store.get(check_request_id(request_id))
        if request is None:
            raise NotFound("not_found", f"no request {request_id}")
        return self._write_derived(request)

    def _pending(self, request_id: str) -> Request:
        request = self._load_for_write(request_id)
        if request.status is RequestStatus.EXPIRED and request.approved_at is None:
            raise Conflict("request_expired", f"request {request_id} expired before it was approved")
        if request.status is not RequestStatus.PENDING:
            raise Conflict(
                "not_pending", f"request {request_id} is {request.status.value}, no longer PENDING"
            )
        return request

    def _write_derived(self, request: Request) -> Request:
        """For write paths and the sweep only: write the derived status (a pending request's expiry is
        notified, once: the write is conditional on the version). An extension found ACTIVE first retires
        the grant it replaces (before the record leaves the sweep's list, so a failure is retried). Never
        emits. On a lost race the other writer's record, derived."""
        derived = self._derive(request)
        if derived.status is request.status:
            return request
        if derived.status is RequestStatus.ACTIVE:
            self._retire_parent(derived)
        updated = replace(derived, version=request.version + 1)
        if self.store.replace(updated, expected_version=request.version):
            return updated
        current = self.store.get(request.request_id)
        return self._derive(current) if current is not None else derived

    def _write(self, load: Callable[[], Request], change: Callable[[Request], Request]) -> Request:
        """Optimistic update: re-read and re-decide when another writer got there first."""
        for _ in range(WRITE_ATTEMPTS):
            request = load()
            updated = change(request)
            if self.store.replace(updated, expected_version=request.version):
                return updated
        raise Conflict("conflict", "the request kept changing meanwhile; check its status and try again")

    def _family(self, request: Request) -> list[Request]:
        """The requests of one access: the first request and its extensions (``<first>-x<n>``), synced."""
        first = request if request.extends is None else self.store.get(root_id(request.request_id))
        if first is None:
            return [request]
        members = [first]
        for n in range(1, first.extension_count + 1):
            member = self.store.get(extension_id(first.request_id, n))
            if member is not None:
                members.append(member)
        return [self._write_derived(m) for m in members]
