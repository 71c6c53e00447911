"""Error taxonomy.

Permanent problems (bad input, a denied request) are *decisions*: they are audited and notified and the
handler returns normally, so EventBridge/Scheduler do not retry them. Transient problems (throttling,
conflicts, 5xx) are raised, so Lambda retries and DLQs do their work.
"""

from __future__ import annotations


class SessionGateError(Exception):
    """Base class of the engine's own errors."""


class ConfigError(SessionGateError):
    """The function's configuration (environment) is invalid. Raised at cold start."""


class InvalidInput(SessionGateError):
    """An event or request is malformed. Permanent: never retried."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TransientError(SessionGateError):
    """A condition that a retry can clear (lost race, partial PutEvents failure)."""
