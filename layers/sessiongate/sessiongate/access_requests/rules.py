"""The verified approval policy, the rule that covers an instance, and the accounts a request may target."""

from __future__ import annotations

from sessiongate.access_requests.caller import Caller, same_caller
from sessiongate.access_requests.errors import NotAllowed, NotFound, Refused, Unavailable
from sessiongate.access_requests.policy import (
    ApprovalPolicy,
    PolicyError,
    PolicyRejected,
    Rule,
    VerifiedPolicy,
)
from sessiongate.access_requests.records import (
    Request,
)
from sessiongate.access_requests.signing import Signing
from sessiongate.adapters.accounts import MemberUnavailable
from sessiongate.clock import to_iso
from sessiongate.core.guardrails import excluded_by_tag
from sessiongate.core.ports import Directory, Inventory
from sessiongate.observability import bind, metrics


class RuleAccess(Signing):
    def _check_account(self, caller: Caller, asked: str | None = None) -> str:
        """The account a request of ``caller`` is for: the caller's own, which must be SessionGate's or
        one of its member accounts. ``asked`` (the body's ``account``) may only repeat it: a person in
        one account cannot ask for an instance in another (their identity there is not theirs)."""
        if asked is not None and asked != caller.account:
            raise NotAllowed(
                "cross_account",
                f"you sign in account {caller.account}: a request is for an instance in that account, "
                f"not in {asked} (call SessionGate with your identity in {asked})",
            )
        if caller.account != self.settings.account_id and caller.account not in self.settings.member_accounts:
            raise NotAllowed(
                "account_not_allowed",
                f"account {caller.account} is neither SessionGate's account nor one of its member accounts",
            )
        return caller.account

    def _policy(self) -> ApprovalPolicy:
        return self._verified_policy().policy

    def _verified_policy(self, *, notify: bool = False) -> VerifiedPolicy:
        try:
            return self.policies.verified()
        except PolicyRejected as exc:
            raise self._rejected(exc, notify=notify) from None
        except PolicyError as exc:
            bind().error("approval policy unusable", extra={"problem": str(exc)})
            metrics().add("PolicyErrors")
            raise Unavailable(
                "policy_unavailable", "the approval policy cannot be used; tell the SessionGate admins"
            ) from None

    def _rejected(self, exc: PolicyRejected, *, notify: bool) -> Refused:
        """Someone wrote the parameter without the deployers' key (or wrote back an older signed
        policy): refuse everything, loudly."""
        bind().error("approval policy rejected", extra={"problem": str(exc)})
        metrics().add("PolicyRejected")
        if notify:
            self.notifier.publish(
                "PolicyRejected",
                {
                    "at": to_iso(self.clock.now()),
                    "account": self.settings.account_id,
                    "parameter": self.settings.approval_policy_parameter,
                    "problem": str(exc),
                },
                subject="SessionGate: the approval policy failed verification - every request refused",
            )
        return Unavailable(
            "policy_rejected",
            "the approval policy is not signed by SessionGate's deployers: every request is refused; "
            "tell the SessionGate admins",
        )

    def _note_policy(self, *, sweep: bool = False) -> None:
        """Write paths and the sweep: record a new verified policy and notify PolicyChanged once per
        change (a conditional write keyed on its digest), and raise the recorded serial to the policy's
        (a policy signed before it is refused from then on). Reads never call this (a GET never writes).
        A rejected policy is notified by the sweep only (once a period, however many calls fail)."""
        verified = self._verified_policy(notify=sweep)
        noted = f"{verified.digest}:{verified.serial}"
        if not sweep and noted == self._recorded_policy:
            return  # (the sweep always asks the table: a change back to an earlier policy counts too)
        try:
            changed = self.store.record_policy(verified, now=self.clock.now())
        except PolicyRejected as exc:  # a newer signed policy was recorded meanwhile
            raise self._rejected(exc, notify=sweep) from None
        if changed:
            bind().warning(
                "approval policy changed", extra={"digest": verified.digest, "source": verified.source}
            )
            metrics().add("PolicyChanged")
            self.notifier.publish(
                "PolicyChanged",
                {
                    "at": to_iso(self.clock.now()),
                    "account": self.settings.account_id,
                    "digest": verified.digest,
                    "source": verified.source,
                    "parameter_version": verified.parameter_version,
                    "rules": verified.summary(),
                },
                subject="SessionGate: the approval policy changed",
            )
        self._recorded_policy = noted

    def _adapters(self, account: str) -> tuple[Directory, Inventory]:
        """IAM and EC2 of ``account``: SessionGate's own, or a member's through its member role."""
        if account == self.settings.account_id:
            return self.directory, self.inventory
        accounts = self.engine.accounts
        if account not in self.settings.member_accounts or accounts is None:
            raise NotAllowed(
                "account_not_allowed",
                f"account {account} is neither SessionGate's account nor one of its member accounts",
            )
        try:
            directory, inventory, _ = accounts.adapters(account, self.clock.now())
        except MemberUnavailable as exc:
            bind().error("member account unavailable", extra={"account": account, "problem": str(exc)})
            metrics().add("MemberUnavailable")
            raise Unavailable(
                "member_role_unavailable",
                f"SessionGate cannot act in account {account} (its member role is missing or does not "
                "trust SessionGate); tell the SessionGate admins",
            ) from None
        return directory, inventory

    def _rule_for(
        self, instance_id: str, account: str, inventory: Inventory | None = None, *, creating: bool = False
    ) -> tuple[Rule, dict[str, str]]:
        if inventory is None:
            inventory = self._adapters(account)[1]
        # Whether the node is managed by Systems Manager is asked when a request is made, not at grant
        # time: a usability check, not a security one (see ``core/grant.py``: a tag opens nothing on
        # a node Session Manager cannot reach).
        check_managed = creating and self.settings.require_ssm_managed
        instance = inventory.describe(instance_id, check_managed=check_managed)
        if instance is None:
            raise NotFound(
                "instance_not_found", f"instance {instance_id} does not exist in account {account}"
            )
        if check_managed and instance.ssm_managed is False:
            raise NotAllowed(
                "instance_not_managed",
                f"instance {instance_id} is not a managed node of Systems Manager: no session can open",
            )
        why = excluded_by_tag(instance.tags, self.settings)
        if why:
            raise NotAllowed("instance_excluded", f"instance {instance_id}: {why}")
        rule = self._policy().rule_for(instance_id, dict(instance.tags))
        if rule is None:
            raise NotAllowed("no_matching_rule", f"no approval rule covers instance {instance_id}")
        return rule, dict(instance.tags)

    def _current_rule(self, request: Request, *, required: bool) -> Rule | None:
        """The rule that covers the request's instance now (the policy and tags may have changed)."""
        try:
            return self._rule_for(request.instance_id, request.account)[0]
        except Refused:
            if required:
                raise
            return None

    def _may_review(self, caller: Caller, request: Request, rule: Rule | None) -> bool:
        # A permission, not separation of duties: only the very approver (same_caller), not everyone
        # who may be the same person (a session merely named like an approver is not that approver).
        if any(same_caller(caller.arn, a.approver_arn) for a in request.approvals):
            return True
        return rule is not None and rule.may_review(caller.arn)
