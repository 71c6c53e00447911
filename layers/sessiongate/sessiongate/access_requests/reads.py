"""Reads: one request, my requests, requests I may approve. A read never writes, emits or revokes."""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.caller import Caller, same_caller
from sessiongate.access_requests.deps import (
    MAX_LIST,
)
from sessiongate.access_requests.errors import NotAllowed, Refused, Unavailable
from sessiongate.access_requests.policy import (
    approver_level,
)
from sessiongate.access_requests.records import (
    Page,
    RequestStatus,
)
from sessiongate.access_requests.status import Status


class Reads(Status):
    def get(self, caller: Caller, request_id: str) -> dict[str, Any]:
        request = self._read_derived(request_id)
        rule = self._current_rule(request, required=False)
        if not (same_caller(caller.arn, request.requester_arn) or self._may_review(caller, request, rule)):
            raise NotAllowed("not_allowed", "only the requester and the approvers may see this request")
        return self._view(request, rule)

    def list_mine(self, caller: Caller, limit: int) -> dict[str, Any]:
        found = [self._derive(r) for r in self.store.by_requester(caller.arn, limit=min(limit, MAX_LIST))]
        return Page(found).view()

    def list_to_approve(self, caller: Caller, limit: int) -> dict[str, Any]:
        """Pending requests the caller may approve now (their level is the current one)."""
        out = []
        for request in self.store.pending(limit=MAX_LIST):
            request = self._derive(request)
            if request.status is not RequestStatus.PENDING:
                continue
            rule = self._current_rule(request, required=False)
            if rule is None or rule.name != request.rule:
                continue
            try:
                approver_level(rule, request, caller.arn)
            except Unavailable:
                raise  # (the identity store did not answer: a 503, not an empty list)
            except Refused:
                continue
            out.append(request)
            if len(out) >= limit:
                break
        return Page(out).view()
