"""The API's view of a request. (Its lifecycle notifications come from its record's changes:
:mod:`sessiongate.outbox`.)"""

from __future__ import annotations

from typing import Any

from sessiongate.access_requests.deps import (
    ServiceDeps,
)
from sessiongate.access_requests.policy import (
    Rule,
    progress,
)
from sessiongate.access_requests.records import (
    LIVE,
    Request,
    RequestStatus,
)


class Notices(ServiceDeps):
    def _view(self, request: Request, rule: Rule | None) -> dict[str, Any]:
        view = request.view()
        if rule is not None and request.status is RequestStatus.PENDING:
            view["approval_progress"] = progress(rule, request.approvals)
        grant = self.engine.ledger.get_grant(request.grant_id) if request.status in LIVE else None
        if grant is not None:
            view["grant"] = {"status": grant.status.value, "expires_at": grant.expires_at, "slot": grant.slot}
        return {"request": view}
