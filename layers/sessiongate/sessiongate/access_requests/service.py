"""The native front door's service: one object, its jobs in one module each.

Creating (:mod:`.creating`), deciding (:mod:`.deciding`), revoking (:mod:`.revoking`), extending
(:mod:`.extending`), reads (:mod:`.reads`) and the scheduled sweep (:mod:`.sweep`), over the shared
layers below them: request status (:mod:`.status`, :mod:`.ending`), the policy (:mod:`.rules`),
signing and hand-over (:mod:`.signing`) and notifications (:mod:`.notices`). Approved requests reach
the engine as ``AccessApproved`` (origin ``native``) on the SessionGate bus; revocation goes through
the engine's revoke. Every state change is a conditional write; the writer that moves a request to
APPROVED is the only one that emits, so two approvers clicking at once produce one grant. Reads never
write, emit or revoke: they report the status derived from the record and the grant ledger.
"""

from __future__ import annotations

from sessiongate.access_requests.creating import Creating
from sessiongate.access_requests.deciding import Deciding
from sessiongate.access_requests.extending import Extending
from sessiongate.access_requests.reads import Reads
from sessiongate.access_requests.revoking import Revoking
from sessiongate.access_requests.sweep import Sweep


class NativeService(Creating, Deciding, Revoking, Extending, Reads, Sweep):
    """The request API's service (constructed with :class:`.deps.ServiceDeps`' fields)."""
