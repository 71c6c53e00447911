"""A rule's cap on concurrent grants (issue 18): ``max_active: {per_person: N, per_instance: M}``.

Checked when a request is made and again when its last approval lands (the approval that would hand
it to the engine), from the grant ledger's live grants (PROVISIONING/ACTIVE, each re-read consistently:
``live_grants``) plus the requests the request API approved whose grant the engine has not recorded
yet (their hand-over is under way). What counts:

- per instance: every live grant on the instance (any front door, any rule: the instance is under
  this rule now, and the cap is how many people may be on it at once);
- per person: the person's live native grants made under this rule (the request record names the
  rule; a person is :func:`~sessiongate.core.identity.person_key`: every session of an ordinary role is
  the role, an IAM Identity Center user is one person in every permission set). Change Manager grants
  are approved outside this policy and are not counted per person.

An extension replaces a live grant rather than adding one: it is not checked.

The race that remains: two approvals of two different requests that land at the same moment both see
N-1 and both pass (no lock between the check and the hand-over). It needs two approvers acting within
the same call's duration (well under a second) on two requests of the same person or instance; the
excess is one grant per such coincidence, time-boxed like every grant and notified to the approvers
(``AccessApproved``) who can revoke it. A strict cap would need a counter item written in the same
transaction as the approval; the requests table's conditional write is per request, so this check is
best effort by design (the limit is about workload hygiene, not an authorization boundary: every
grant is still approved by the rule's approvers).
"""

from __future__ import annotations

from sessiongate.access_requests.deps import SWEEP_LIMIT, ServiceDeps
from sessiongate.access_requests.errors import Conflict
from sessiongate.access_requests.policy import Rule
from sessiongate.access_requests.records import Request
from sessiongate.core.identity import parse_identity, person_key
from sessiongate.core.model import Grant, Origin


def _person(arn: str) -> str:
    identity = parse_identity(arn)
    return person_key(identity) if identity is not None else arn.lower()


def check_max_active(deps: ServiceDeps, rule: Rule, request: Request) -> None:
    """Refuse (409 ``max_active``) ``request`` under ``rule`` when one more grant would exceed a cap."""
    limits = rule.max_active
    if limits is None or request.extends is not None:
        return
    live = [g for g in deps.engine.ledger.live_grants() if g.grant_id != request.grant_id]
    live_ids = {g.grant_id for g in live}
    # Approved by the request API, not in the ledger yet (its hand-over is under way).
    handing_over = [
        r
        for r in deps.store.approved(limit=SWEEP_LIMIT)
        if r.grant_id not in live_ids
        and r.request_id != request.request_id
        and deps.engine.ledger.get_grant(r.grant_id) is None
    ]
    if limits.per_instance is not None:
        where = (request.account, request.instance_id)
        on_instance = sum(1 for g in live if (g.account, g.instance_id) == where)
        on_instance += sum(1 for r in handing_over if (r.account, r.instance_id) == where)
        if on_instance >= limits.per_instance:
            raise Conflict(
                "max_active",
                f"instance {request.instance_id} has {on_instance} live grant(s), the most rule "
                f"{rule.name!r} allows at once ({limits.per_instance}): try again when one ends",
            )
    if limits.per_person is not None:
        person = _person(request.requester_arn)
        mine = sum(1 for g in live if _person(g.requester_arn) == person and _under_rule(deps, g, rule))
        mine += sum(1 for r in handing_over if _person(r.requester_arn) == person and r.rule == rule.name)
        if mine >= limits.per_person:
            raise Conflict(
                "max_active",
                f"the requester has {mine} live grant(s) under rule {rule.name!r}, the most it allows at "
                f"once per person ({limits.per_person}): end one first (sessiongate revoke)",
            )


def _under_rule(deps: ServiceDeps, grant: Grant, rule: Rule) -> bool:
    if grant.origin != Origin.NATIVE.value:
        return False
    record = deps.store.get(grant.origin_ref)
    return record is not None and record.rule == rule.name
