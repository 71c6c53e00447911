"""Extending an active access: a new request ``<root>-x<n>`` approved like any other."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sessiongate.access_requests.caller import Caller, same_caller
from sessiongate.access_requests.deps import (
    WRITE_ATTEMPTS,
)
from sessiongate.access_requests.errors import Conflict, NotAllowed
from sessiongate.access_requests.ids import extension_id, root_id
from sessiongate.access_requests.inputs import parse_extend
from sessiongate.access_requests.policy import (
    check_duration,
    default_duration,
)
from sessiongate.access_requests.records import (
    MAX_EXTENSIONS,
    Request,
    RequestStatus,
    pending_deadline,
)
from sessiongate.access_requests.rule_limits import check_ticket
from sessiongate.access_requests.status import Status
from sessiongate.clock import to_iso
from sessiongate.observability import bind
from sessiongate.outbox import rule_snapshot


class Extending(Status):
    def extend(self, caller: Caller, request_id: str, body: object) -> dict[str, Any]:
        """A new request (``<id>-x<n>``) for the same instance and principal; approved like any other."""
        data = parse_extend(
            body,
            default_minutes=self.settings.default_validity_minutes,
            max_minutes=self.settings.max_validity_minutes,
        )
        for _ in range(WRITE_ATTEMPTS):
            parent = self._extendable(caller, request_id)
            # Extensions of one access are numbered on its first request (``<root>-x<n>``), so an
            # extension can itself be extended; the root's version guards the numbering.
            root = parent if parent.extends is None else self._load_for_write(root_id(parent.request_id))
            if root.extension_count >= MAX_EXTENSIONS:
                raise Conflict("too_many_extensions", f"at most {MAX_EXTENSIONS} extensions per request")
            rule, tags = self._rule_for(parent.instance_id, parent.account)
            if not rule.may_request(caller.arn):
                # The rule may have changed since the first request (policy or instance tags).
                raise NotAllowed("not_a_requester", f"rule {rule.name!r} does not let you request access")
            duration = data.duration_minutes
            if data.default_duration:
                duration = default_duration(rule, self.settings.default_validity_minutes, break_glass=False)
            check_duration(rule, duration)
            check_ticket(rule.name, rule.ticket, parent.ticket)  # the rule may require one since
            n = root.extension_count + 1
            child = self._extension(caller, parent, extension_id(root.request_id, n), duration, data.reason)
            child = replace(
                child,
                rule=rule.name,
                instance_tags=tuple(sorted(tags.items())),
                notice_rule=rule_snapshot(rule),
            )
            bumped = replace(root, extension_count=n, version=root.version + 1)
            if self.store.create_extension(bumped, expected_version=root.version, child=child):
                break
        else:
            raise Conflict("conflict", "the request kept changing; try again")
        bind(request_id=child.request_id).info("extension requested", extra={"extends": parent.request_id})
        return self._view(child, rule)

    def _extendable(self, caller: Caller, request_id: str) -> Request:
        parent = self._load_for_write(request_id)
        if not same_caller(caller.arn, parent.requester_arn):
            raise NotAllowed("not_requester", "only the requester may extend their access")
        if parent.status is not RequestStatus.ACTIVE:
            raise Conflict(
                "not_active",
                f"request {request_id} is {parent.status.value}: only ACTIVE access can be extended",
            )
        return parent

    def _extension(
        self, caller: Caller, parent: Request, child_id: str, duration: int, reason: str
    ) -> Request:
        """The PENDING extension of ``parent`` (its rule and tags are set by the caller)."""
        now = self.clock.now()
        return Request(
            request_id=child_id,
            status=RequestStatus.PENDING,
            account=parent.account,
            instance_id=parent.instance_id,
            principal_type=parent.principal_type,
            principal_name=parent.principal_name,
            principal_arn=parent.principal_arn,
            requester_arn=parent.requester_arn,
            duration_minutes=duration,
            reason=reason,
            ticket=parent.ticket,
            documents=parent.documents,
            created_at=to_iso(now),
            pending_expires_at=pending_deadline(now, self.settings.pending_request_ttl_minutes),
            rule="",
            extends=parent.request_id,
            history=({"at": to_iso(now), "status": RequestStatus.PENDING.value, "by": caller.arn},),
        )
