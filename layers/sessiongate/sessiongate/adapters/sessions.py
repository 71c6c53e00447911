"""Session Manager: end the open sessions a revoked grant allowed (removing a tag does not)."""

from __future__ import annotations

from typing import Any

from sessiongate.adapters.aws import raises_service_failures
from sessiongate.core.identity import Identity, parse_identity, same_principal


@raises_service_failures
class Sessions:
    def __init__(self, ssm: Any) -> None:
        self._ssm = ssm

    def terminate(self, instance_id: str, owner: Identity, session_name: str | None = None) -> list[str]:
        """Terminate the active sessions on ``instance_id`` owned by ``owner`` (one role session if named)."""
        terminated = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"State": "Active", "Filters": [{"key": "Target", "value": instance_id}]}
            if token:
                kwargs["NextToken"] = token
            page = self._ssm.describe_sessions(**kwargs)
            for session in page.get("Sessions", []):
                started_by = parse_identity(str(session.get("Owner", "")))
                if started_by is None or not same_principal(owner, started_by):
                    continue
                if session_name is not None and started_by.session != session_name:
                    continue
                self._ssm.terminate_session(SessionId=session["SessionId"])
                terminated.append(str(session["SessionId"]))
            token = page.get("NextToken")
            if not token:
                return terminated
