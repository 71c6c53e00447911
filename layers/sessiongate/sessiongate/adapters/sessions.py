"""Session Manager: end the open sessions a revoked grant allowed (removing a tag does not), read the
account's Session Manager preferences (RequireSessionLogging) and the sessions a grant's principal
opened (usage, recorded after the revocation)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from sessiongate.adapters.aws import error_code, raises_service_failures
from sessiongate.clock import to_iso
from sessiongate.core.identity import Identity, parse_identity, same_principal
from sessiongate.core.session_logging import PREFERENCES_DOCUMENT, Preferences, PreferencesUnreadable

# GetDocument's answers that are a decision, not a retry: the document does not exist (InvalidDocument,
# botocore's SSM model; "The specified document does not exist."), or SessionGate may not read it.
_UNREADABLE = {"InvalidDocument", "InvalidDocumentVersion", "AccessDeniedException", "AccessDenied"}
# DescribeSessions answers at most 200 sessions per page (botocore's SSM model, MaxResults 1..200).
_PAGE = 200


@raises_service_failures
class Sessions:
    def __init__(self, ssm: Any) -> None:
        self._ssm = ssm

    def terminate(self, instance_id: str, owner: Identity, session_name: str | None = None) -> list[str]:
        """Terminate the active sessions on ``instance_id`` owned by ``owner`` (one role session if named)."""
        terminated = []
        request = {"State": "Active", "Filters": [{"key": "Target", "value": instance_id}]}
        for session in self._owned_by(request, owner, session_name):
            self._ssm.terminate_session(SessionId=session["SessionId"])
            terminated.append(str(session["SessionId"]))
        return terminated

    def _owned_by(
        self, request: dict[str, Any], owner: Identity, session_name: str | None
    ) -> Iterator[dict[str, Any]]:
        """The sessions of every DescribeSessions page of ``request`` that ``owner`` started (one role
        session if named), compared by ARN (``same_principal``), not by the API's ``Owner`` filter."""
        token: str | None = None
        while True:
            page = self._ssm.describe_sessions(**request, **({"NextToken": token} if token else {}))
            for session in page.get("Sessions", []):
                started_by = parse_identity(str(session.get("Owner", "")))
                if started_by is None or not same_principal(owner, started_by):
                    continue
                if session_name is not None and started_by.session != session_name:
                    continue
                yield session
            token = page.get("NextToken")
            if not token:
                return

    def preferences(self) -> Preferences:
        """The account's Session Manager preferences (one GetDocument of ``SSM-SessionManagerRunShell``).

        Read at ``$LATEST``: "Update Session Manager preferences (command line)" changes them with
        ``update-document --document-version '$LATEST'`` and does not move the default version, so the
        latest version is what Session Manager applies. Raises PreferencesUnreadable when the document
        does not exist, may not be read, or is no Session document."""
        try:
            document = self._ssm.get_document(
                Name=PREFERENCES_DOCUMENT, DocumentVersion="$LATEST", DocumentFormat="JSON"
            )
        except ClientError as exc:
            if error_code(exc) in _UNREADABLE:
                raise PreferencesUnreadable(f"{PREFERENCES_DOCUMENT}: {error_code(exc)}") from exc
            raise
        if document.get("DocumentType") != "Session":
            kind = document.get("DocumentType")
            raise PreferencesUnreadable(f"{PREFERENCES_DOCUMENT} is a {kind} document, not a Session one")
        return Preferences.from_content(str(document.get("Content", "")))

    def opened(
        self, instance_id: str, owner: Identity, session_name: str | None, start: datetime, end: datetime
    ) -> list[dict[str, str]]:
        """The sessions ``owner`` (one role session if named) started on ``instance_id`` between
        ``start`` and ``end``: DescribeSessions, Active then History ("terminated sessions from the
        past 30 days", SSM API Reference, DescribeSessions), filtered by Target and by start time
        (``InvokedAfter``/``InvokedBefore``, timestamps as in botocore's SSM model). ``Owner`` is
        the caller's ARN (an assumed-role ARN for a role session): compared here, as ``terminate`` does,
        not by the API's ``Owner`` filter."""
        found: dict[str, dict[str, str]] = {}
        for state in ("Active", "History"):
            request: dict[str, Any] = {
                "State": state,
                "MaxResults": _PAGE,
                "Filters": [
                    {"key": "Target", "value": instance_id},
                    {"key": "InvokedAfter", "value": to_iso(start)},
                    {"key": "InvokedBefore", "value": to_iso(end)},
                ],
            }
            for session in self._owned_by(request, owner, session_name):
                found.setdefault(str(session["SessionId"]), _use(session))
        return sorted(found.values(), key=lambda s: (s.get("started_at", ""), s["session_id"]))


def _use(session: dict[str, Any]) -> dict[str, str]:
    """What the ledger keeps of a session (strings only: DynamoDB keeps them as they are)."""
    use = {"session_id": str(session["SessionId"]), "status": str(session.get("Status", ""))}
    for key, name in (("StartDate", "started_at"), ("EndDate", "ended_at")):
        if isinstance(session.get(key), datetime):
            use[name] = to_iso(session[key])
    if session.get("DocumentName"):
        use["document"] = str(session["DocumentName"])
    if session.get("Owner"):
        use["owner"] = str(session["Owner"])
    output = session.get("OutputUrl") or {}
    if output.get("S3OutputUrl"):
        use["s3_output_url"] = str(output["S3OutputUrl"])
    if output.get("CloudWatchOutputUrl"):
        use["cloudwatch_output_url"] = str(output["CloudWatchOutputUrl"])
    return use
