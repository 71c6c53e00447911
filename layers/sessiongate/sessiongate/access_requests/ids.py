"""Request ids, and the grant ids the engine knows them by (``rq-<id>``; extensions ``<root>-x<n>``)."""

from __future__ import annotations

import re
import uuid

from sessiongate.access_requests.errors import NotFound
from sessiongate.core.model import GRANT_ID_RE

GRANT_PREFIX = "rq-"
# Request ids: 32 hex digits; an extension of request R is ``R-x<n>``. ``rq-`` + id stays within the
# 48 characters model.GRANT_ID_RE allows (3 + 32 + 6 = 41).
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}(?:-x[1-9][0-9]{0,3})?$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def grant_id_for(request_id: str) -> str:
    grant_id = GRANT_PREFIX + request_id
    assert GRANT_ID_RE.fullmatch(grant_id), grant_id
    return grant_id


def request_id_of(grant_id: str) -> str | None:
    """The request behind a native grant id, or ``None`` if it is not one."""
    if not grant_id.startswith(GRANT_PREFIX):
        return None
    request_id = grant_id[len(GRANT_PREFIX) :]
    return request_id if REQUEST_ID_RE.fullmatch(request_id) else None


def root_id(request_id: str) -> str:
    """The first request of an access: extensions are ``<root>-x<n>``."""
    return request_id.split("-x", 1)[0]


def extension_id(parent_id: str, n: int) -> str:
    return f"{root_id(parent_id)}-x{n}"


def check_request_id(value: object) -> str:
    if not isinstance(value, str) or not REQUEST_ID_RE.fullmatch(value):
        raise NotFound("not_found", "no such request")
    return value
