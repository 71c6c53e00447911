"""Origin verifier of Change Manager grants: the grant re-reads the change request and compares."""

from __future__ import annotations

from dataclasses import dataclass

from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.interpretation import interpret
from sessiongate.change_manager.ports import ChangeRequestReader, GroupDirectory
from sessiongate.change_manager.status import awaiting_approval
from sessiongate.clock import Clock
from sessiongate.core import guardrails
from sessiongate.core.model import AccessApproved, Denial, disagreements
from sessiongate.core.ports import Condition
from sessiongate.errors import TransientError
from sessiongate.settings import Settings


@dataclass
class ChangeManagerVerifier:
    """Re-reads the change request at grant time and checks that the event says what SSM says."""

    changes: ChangeRequestReader
    settings: Settings
    clock: Clock
    # IAM of the stack's account: the members of an IamGroup approver (without it, unverifiable).
    directory: GroupDirectory | None = None

    def conditions(self, request: AccessApproved) -> list[Condition]:
        """None: the change request is re-read from SSM by ``verify`` (no table to check atomically)."""
        return []

    def verify(
        self, request: AccessApproved, instance: guardrails.InstanceFacts | None = None
    ) -> list[Denial]:
        execution_id = request.grant_id.removeprefix("cm-")
        execution = self.changes.get(execution_id)
        if execution is None:
            return [Denial("origin_not_found", f"change request {execution_id} does not exist")]
        if awaiting_approval(execution):
            # The adapter saw the approval; this read does not yet (eventual consistency): retry later.
            raise TransientError(f"change request {execution_id} is not shown as approved yet")
        ref = ChangeRequestRef(request.origin_ref, execution_id, "Approved", None, None)
        truth = interpret(
            ref,
            execution,
            self.settings,
            account=self.settings.account_id,
            now=self.clock.now(),
            group_members=self.directory.group_user_names if self.directory else None,
        )
        if isinstance(truth, list):
            return truth
        differing = disagreements(truth, request)
        if differing:
            return [Denial("origin_mismatch", f"the event disagrees with the change request on {differing}")]
        return []
