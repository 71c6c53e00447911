"""The native front door's origin verifier: the grant re-checks a request before granting it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sessiongate.access_requests.caller import same_caller
from sessiongate.access_requests.grant_checks import grant_time_denials
from sessiongate.access_requests.groups import GroupLookupFailed
from sessiongate.access_requests.ids import request_id_of
from sessiongate.access_requests.policy import PolicyError
from sessiongate.access_requests.records import Request, RequestStatus
from sessiongate.adapters.kms import Macs, MacUnavailable
from sessiongate.adapters.policy_source import PolicySource
from sessiongate.adapters.request_store import RequestStore
from sessiongate.clock import parse_iso
from sessiongate.core.guardrails import InstanceFacts
from sessiongate.core.model import AccessApproved, Denial, disagreements
from sessiongate.core.ports import Condition
from sessiongate.errors import TransientError
from sessiongate.settings import Settings


@dataclass
class NativeVerifier:
    """Re-checks a native grant at grant time, trusting nothing the requests table alone says.

    The record (the event's signed approval facts, or the requests table's item for an event without
    them) must be APPROVED, say what the event says, carry the request API's approval MAC
    (ApprovalKey: only the request API role can make one, only this grant role can check one), and its
    approvals must satisfy the rule that covers the instance now, under the current verified policy,
    which must be the rule the request was made and approved under.
    """

    store: RequestStore
    settings: Settings
    policies: PolicySource | None = None
    macs: Macs | None = None

    def verify(self, request: AccessApproved, instance: InstanceFacts | None = None) -> list[Denial]:
        request_id = request_id_of(request.grant_id)
        if request_id is None or request.origin_ref != request_id:
            return [Denial("origin_mismatch", "a native grant id is rq-<request id> and names its request")]
        record = self._record(request, request_id)
        if isinstance(record, Denial):
            return [record]
        if record is None:
            return [Denial("origin_not_found", f"request {request_id} does not exist")]
        if record.status is not RequestStatus.APPROVED:
            return [
                Denial("origin_not_approved", f"request {request_id} is {record.status.value}, not APPROVED")
            ]
        differing = disagreements(record, request)
        # The approval's time decides whether it is stale (approval_stale) and when the access starts:
        # it is the record's, never the event's (a hand-made event could revive an old approval).
        approved_at = parse_iso(record.approved_at) if record.approved_at else None
        not_before = parse_iso(record.not_before) if record.not_before else None  # (a scheduled start)
        if request.approved_at != approved_at or request.not_before != not_before:
            differing.append("approved_at")
        if differing:
            return [
                Denial("origin_mismatch", f"the event disagrees with request {request_id} on {differing}")
            ]
        if record.break_glass:
            if record.approver_arns != (self.settings.break_glass_approver_arn,) or not any(
                a.level == -1 and same_caller(a.approver_arn, record.requester_arn) for a in record.approvals
            ):
                return [
                    Denial("origin_mismatch", f"break-glass request {request_id} is not recorded as such")
                ]
        elif record.approver_arns != tuple(a.approver_arn for a in record.approvals):
            return [Denial("origin_mismatch", f"request {request_id}'s approvers of record are inconsistent")]
        signed = self._signed(record)
        if signed:
            return [signed]
        return self._rule_holds(record, instance)

    def _record(self, request: AccessApproved, request_id: str) -> Request | Denial | None:
        """The approved record: from the event's signed approval facts when it carries them (no read:
        their MAC is verified like the table's, and :meth:`conditions` has the grant's transaction
        check that the record is still APPROVED with that MAC), else read from the requests table."""
        if request.approval is None:
            return self.store.get(request_id)
        try:
            record = Request.from_approval(request.approval)
        except ValueError as exc:
            return Denial("origin_mismatch", f"the event's approval of request {request_id}: {exc}"[:500])
        if record.request_id != request_id:
            return Denial("origin_mismatch", f"the event's approval is not request {request_id}'s")
        return record

    def conditions(self, request: AccessApproved) -> list[Condition]:
        """The request record, when the grant opens, is still APPROVED (not cancelled, ended or denied
        since it was verified), and, when the event carried the approval, with the very MAC verified
        (the record was not rewritten since).

        The policy's serial is not a condition here. It protects against a rollback: an older signed
        envelope written back at a deleted and re-created parameter once its version counts up to the
        old one's (``adapters/policy_source.py``). It is read with the policy and cached with it (60 s):
        that adds no window beyond the policy cache's own, since a rolled-back parameter is only seen
        when the policy is read again, and the serial is read again with it (the recorded highest only
        grows). Folding it into this transaction (``serial <= ours`` on ``policy#current``) would make
        it exact at open time and save the cold grant's GetItem, but would deny a grant racing a
        legitimate policy update instead of re-reading; not done."""
        request_id = request_id_of(request.grant_id)
        if request_id is None or not self.settings.requests_table:
            return []
        equals = {"status": RequestStatus.APPROVED.value}
        mac = (request.approval or {}).get("mac")
        if isinstance(mac, str):
            equals["approval_mac"] = mac

        def unmet(seen: Mapping[str, str] | None) -> Denial:
            if seen is None:
                return Denial("origin_not_found", f"request {request_id} does not exist")
            status = seen.get("status", "")
            if status != RequestStatus.APPROVED.value:
                return Denial("origin_not_approved", f"request {request_id} is {status}, not APPROVED")
            # The request API signs an approval once: another MAC on the APPROVED record means it was
            # written by someone else since (the table alone is never trusted).
            return Denial(
                "approval_not_signed",
                f"request {request_id}'s record no longer carries the approval signature verified",
            )

        return [Condition(self.settings.requests_table, {"request_id": request_id}, equals, unmet)]

    def _signed(self, record: Request) -> Denial | None:
        if not record.approval_mac:
            return Denial("approval_not_signed", f"request {record.request_id} carries no approval signature")
        if self.macs is None or not self.settings.approval_key_id:
            return Denial("approval_not_signed", "no approval key is configured to verify the approval")
        try:
            valid = self.macs.verify(
                self.settings.approval_key_id, record.approval_message(), record.approval_mac
            )
        except MacUnavailable as exc:
            return Denial("approval_not_signed", f"the approval signature cannot be checked: {exc}")
        if not valid:
            return Denial(
                "approval_not_signed",
                f"request {record.request_id}'s approval was not signed by SessionGate's request API",
            )
        return None

    def _rule_holds(self, record: Request, instance: InstanceFacts | None) -> list[Denial]:
        if self.policies is None:
            return [Denial("policy_rejected", "no approval policy is configured to re-check the approval")]
        try:
            policy = self.policies.get()
        except PolicyError as exc:
            return [Denial("policy_rejected", f"the approval policy cannot be used: {exc}"[:500])]
        if instance is None:
            return [Denial("instance_not_found", f"instance {record.instance_id} does not exist")]
        rule = policy.rule_for(record.instance_id, dict(instance.tags))
        if rule is None or rule.name != record.rule:
            now = "no rule" if rule is None else f"rule {rule.name!r}"
            return [
                Denial(
                    "rule_changed",
                    f"request {record.request_id} was approved under rule {record.rule!r}; the instance "
                    f"now falls under {now}",
                )
            ]
        try:
            # The instance's tags now (the grant read them): a forbid added since the request stops it.
            return grant_time_denials(
                policy,
                rule,
                record,
                api_role=self.settings.break_glass_approver_arn,
                tags=dict(instance.tags),
            )
        except GroupLookupFailed as exc:  # approver groups re-checked now; unknown = not granted
            if exc.transient:
                # Throttled or unavailable now: the event is retried (then alarmed), never granted.
                raise TransientError(f"request {record.request_id}: {exc.problem}") from exc
            return [Denial("approval_insufficient", exc.message[:500])]
