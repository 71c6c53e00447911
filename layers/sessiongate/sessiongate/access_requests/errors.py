"""Why the native front door refuses a call: domain refusals with a code and a message, no HTTP status.

Only :mod:`sessiongate.access_requests.http` turns them into responses (see its ``STATUS``).
"""

from __future__ import annotations


class Refused(Exception):
    """A decision or a user mistake: ``code`` is stable (clients test it), ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidInput(Refused):
    """The call itself is malformed (a field, the body, a limit)."""


class Unauthenticated(Refused):
    """No signed IAM caller."""


class NotAllowed(Refused):
    """The caller may not do this (policy, separation of duties, wrong caller, excluded instance)."""


class NotFound(Refused):
    """No such request or instance."""


class Conflict(Refused):
    """The request is not in a state that allows this, or it changed meanwhile."""


class Unavailable(Refused):
    """SessionGate cannot decide now (policy unusable, key or member role unavailable): ask the admins."""


def invalid(message: str, code: str = "bad_request") -> InvalidInput:
    """An :class:`InvalidInput` (message first, as the input checks read best)."""
    return InvalidInput(code, message)
