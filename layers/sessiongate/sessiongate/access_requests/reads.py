"""Reads: one request, my requests, requests I may approve, instances I may ask for. A read never writes,
emits or revokes."""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.caller import Caller, same_caller
from sessiongate.access_requests.deps import (
    MAX_LIST,
)
from sessiongate.access_requests.errors import NotAllowed, Refused, Unavailable
from sessiongate.access_requests.policy import (
    Rule,
    approver_level,
    arn_matches,
)
from sessiongate.access_requests.records import (
    Page,
    RequestStatus,
)
from sessiongate.access_requests.status import Status
from sessiongate.core.guardrails import excluded_by_tag

# Instances ``list_requestable`` answers at most (a picker, not an inventory: the rest are counted).
MAX_INSTANCES = 200


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

    def list_requestable(self, caller: Caller) -> dict[str, Any]:
        """The instances of the caller's own account a request of theirs could name now: not terminated,
        in SessionGate's scope (``InstanceRequiredTag``, not ``InstanceDeniedTag``), covered by a rule of
        the verified policy that lets the caller request. The same checks as :meth:`create`, made
        before a request (a picker's list: ``create`` checks again). Each answers its id, its Name tag,
        its state and the rule's limits (never its other tags)."""
        account = self._check_account(caller)
        _, inventory = self._adapters(account)
        policy = self._policy()
        found = []
        for instance in sorted(inventory.tagged_instances(), key=lambda i: i.instance_id):
            tags = dict(instance.tags)
            required = self.settings.instance_required_tag
            if required is not None and _tag(tags, required[0]) != required[1]:
                continue
            if excluded_by_tag(tags, self.settings):
                continue
            rule = policy.rule_for(instance.instance_id, tags)
            if rule is None or not rule.may_request(caller.arn):
                continue
            found.append(_requestable(instance.instance_id, instance.state, tags, rule, caller.arn))
        return {
            "account": account,
            "instances": found[:MAX_INSTANCES],
            "truncated": len(found) > MAX_INSTANCES,
        }


def _requestable(instance_id: str, state: str, tags: dict[str, str], rule: Rule, arn: str) -> dict[str, Any]:
    glass = rule.break_glass
    may_glass = glass.enabled and (not glass.requesters or arn_matches(arn, glass.requesters))
    return {
        "instance_id": instance_id,
        "name": tags.get("Name", ""),
        "state": state,
        "rule": rule.name,
        "max_duration_minutes": rule.max_duration_minutes,
        "ticket_required": rule.ticket is not None and rule.ticket.required,
        "break_glass": {"max_duration_minutes": glass.max_duration_minutes} if may_glass else None,
        "scheduled_start": rule.max_lead_minutes is not None,
    }


def _tag(tags: dict[str, str], key: str) -> str | None:
    """A tag's value, its key matched case-insensitively (as the grant's ``check_instance`` does)."""
    return next((v for k, v in tags.items() if k.lower() == key.lower()), None)
