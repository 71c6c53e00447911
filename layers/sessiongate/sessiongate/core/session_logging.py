"""Session logging as a precondition of a grant (issue 17, ``RequireSessionLogging``).

Session Manager keeps an account's (and Region's) preferences in the Session-type document
``SSM-SessionManagerRunShell`` ("Create a Session Manager preferences document (command line)",
"Session document schema"): its ``inputs`` say where session logs go, ``s3BucketName``/``s3KeyPrefix``
with ``s3EncryptionEnabled``, ``cloudWatchLogGroupName`` with ``cloudWatchEncryptionEnabled`` and
``cloudWatchStreamingEnabled``, and ``kmsKeyId`` (the key of the session data itself).

With the option on, a grant is denied (``session_logging_off``) unless the TARGET account's preferences
send session logs to S3 with encryption required, or to CloudWatch Logs with encryption required. It
fails closed: a document that is absent, unreadable (AccessDenied) or not valid JSON is a denial; only a
failure to get an answer (throttling, 5xx) is transient (raised, so the delivery is retried).

The preferences are read once per account and cached for ``CACHE_FOR`` (a warm grant pays no extra
call; the approval policy is cached the same way: ``adapters/policy_source.py``). So a change of the
preferences takes effect on grants within ``CACHE_FOR``; an absent or unreadable document is not cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sessiongate.core.model import Denial, GrantStatus, Outcome, Result
from sessiongate.errors import TransientError
from sessiongate.observability import bind, logger, metrics

if TYPE_CHECKING:
    from sessiongate.core.context import Context

PREFERENCES_DOCUMENT = "SSM-SessionManagerRunShell"
DENIAL = "session_logging_off"
CACHE_FOR = timedelta(seconds=60)
# The inputs that decide where session logs go (and their key).
LOGGING_INPUTS = (
    "s3BucketName",
    "s3KeyPrefix",
    "s3EncryptionEnabled",
    "cloudWatchLogGroupName",
    "cloudWatchEncryptionEnabled",
    "cloudWatchStreamingEnabled",
    "kmsKeyId",
)


class PreferencesUnreadable(Exception):
    """The preferences document is absent, not readable by SessionGate, or not a valid document."""


@dataclass(frozen=True)
class Preferences:
    """The logging inputs of an account's Session Manager preferences."""

    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_encryption: bool = False
    log_group: str = ""
    cloudwatch_encryption: bool = False
    cloudwatch_streaming: bool = False
    kms_key_id: str = ""

    @classmethod
    def from_content(cls, content: str) -> Preferences:
        """Parse the document's content (JSON, as GetDocument answers with ``DocumentFormat`` JSON).
        Booleans may be JSON booleans or the strings "true"/"false" (the console writes booleans; a
        document written by hand may quote them)."""
        try:
            document = json.loads(content)
        except (TypeError, ValueError) as exc:
            raise PreferencesUnreadable(f"{PREFERENCES_DOCUMENT} is not JSON: {exc}") from exc
        inputs = document.get("inputs") if isinstance(document, Mapping) else None
        if not isinstance(inputs, Mapping):
            raise PreferencesUnreadable(f"{PREFERENCES_DOCUMENT} has no inputs")
        # A Session document may declare ``parameters`` and its inputs may reference them ("{{ name }}")
        # or Parameter Store ("{{ssm:name}}") ("Session document schema"): the person starting the
        # session could then pass its own value (``start-session --parameters s3BucketName=""``), or
        # the parameter's value changes without the document. Fail closed: a logging input that is a
        # reference is no logging SessionGate can vouch for.
        referenced = sorted(
            name for name in LOGGING_INPUTS if isinstance(inputs.get(name), str) and "{{" in inputs[name]
        )
        if referenced:
            raise PreferencesUnreadable(
                f"{PREFERENCES_DOCUMENT} takes {', '.join(referenced)} from a parameter or a reference"
            )
        return cls(
            s3_bucket=_text(inputs.get("s3BucketName")),
            s3_prefix=_text(inputs.get("s3KeyPrefix")),
            s3_encryption=_flag(inputs.get("s3EncryptionEnabled")),
            log_group=_text(inputs.get("cloudWatchLogGroupName")),
            cloudwatch_encryption=_flag(inputs.get("cloudWatchEncryptionEnabled")),
            cloudwatch_streaming=_flag(inputs.get("cloudWatchStreamingEnabled")),
            kms_key_id=_text(inputs.get("kmsKeyId")),
        )

    def destination(self) -> dict[str, Any] | None:
        """Where the logs of a session go, counting only encrypted destinations; ``None``: nowhere that
        counts (no destination, or none with encryption required)."""
        found: dict[str, Any] = {}
        if self.s3_bucket and self.s3_encryption:
            found["s3_bucket"] = self.s3_bucket
            if self.s3_prefix:
                found["s3_prefix"] = self.s3_prefix
        if self.log_group and self.cloudwatch_encryption:
            found["log_group"] = self.log_group
            found["cloudwatch_streaming"] = self.cloudwatch_streaming
        if not found:
            return None
        if self.kms_key_id:
            found["session_kms_key_id"] = self.kms_key_id
        return found

    def problem(self) -> str:
        """Why the preferences do not count as logging (for the denial's message)."""
        if not self.s3_bucket and not self.log_group:
            return "Session Manager sends session logs neither to S3 nor to CloudWatch Logs"
        parts = []
        if self.s3_bucket:
            parts.append(f"S3 bucket {self.s3_bucket} without s3EncryptionEnabled")
        if self.log_group:
            parts.append(f"log group {self.log_group} without cloudWatchEncryptionEnabled")
        return "session logs go only to " + " and ".join(parts)


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def check(ctx: Context, account: str, sessions: Any) -> tuple[Denial | None, dict[str, Any] | None]:
    """The denial (the option is on and logs go nowhere encrypted), else where the grant's sessions'
    logs go. ``sessions``: the account's Session Manager adapter (``Sessions.preferences``). Raises
    what the adapter raises for a failure that is no answer (``ServiceFailure``: retried)."""
    now = ctx.clock.now()
    cached = ctx.logging_cache.get(account)
    if cached is not None and now - cached[0] < CACHE_FOR:
        preferences = cached[1]
    else:
        if sessions is None:
            return Denial(DENIAL, f"no Session Manager client for account {account}"), None
        try:
            preferences = sessions.preferences()
        except PreferencesUnreadable as exc:
            bind(account=account).warning("session preferences unreadable", extra={"problem": str(exc)})
            metrics().add("SessionPreferencesUnreadable")
            return Denial(DENIAL, f"account {account}: {exc}"), None
        ctx.logging_cache[account] = (now, preferences)
    destination = preferences.destination()
    if destination is None:
        return Denial(DENIAL, f"account {account}: {preferences.problem()}"), None
    return None, destination


def cached_at(ctx: Context, account: str) -> datetime | None:
    """When the preferences of ``account`` were last read (tests and the bench look)."""
    cached = ctx.logging_cache.get(account)
    return cached[0] if cached else None


# The revocation reason of a grant whose account stopped logging sessions (``recheck``).
REVOKE_REASON = "session_logging_off"


def recheck(ctx: Context, revoke: Callable[[str], Outcome]) -> tuple[list[str], list[str]]:
    """The reconciler's steady run, with the option on: re-read the preferences of every configured
    account (this one and ``MemberAccounts``) and revoke the ACTIVE grants of an account whose sessions
    are not logged any more (preferences changed or deleted after the grant). Answers (revoked grant
    ids, failures).

    Cost: one GetDocument per configured account, per run, whatever the number of live grants; only
    when an account's logging is off are the live grants read (one query per index partition, then
    BatchGetItem, 100 records per call). An account whose member role cannot be used is skipped
    (nothing there can be revoked without it; the reconciler's overdue check covers its grants at
    expiry)."""
    from sessiongate.core.ports import (  # ports imports us
        AccountNotAllowed,
        MemberUnavailable,
        ServiceFailure,
    )

    revoked: list[str] = []
    failures: list[str] = []
    off: dict[str, Denial] = {}
    for account in dict.fromkeys((ctx.settings.account_id, *ctx.settings.member_accounts)):
        ctx.logging_cache.pop(account, None)  # a fresh answer: this is the check of a change
        try:
            sessions = ctx.adapters_in(account).sessions
            logging_off, _ = check(ctx, account, sessions)
        except (MemberUnavailable, AccountNotAllowed) as exc:
            logger().warning("session logging not rechecked", extra={"account": account, "problem": str(exc)})
            continue
        except (ServiceFailure, TransientError) as exc:
            failures.append(f"session logging of {account}: {exc}")
            continue
        if logging_off is not None:
            off[account] = logging_off
    if not off:
        return revoked, failures
    by_account: dict[str, list[str]] = {}
    for grant in ctx.ledger.live_grants():
        if grant.status is GrantStatus.ACTIVE and grant.account in off:
            by_account.setdefault(grant.account, []).append(grant.grant_id)
    for account, grant_ids in sorted(by_account.items()):
        bind(account=account).warning(
            "session logging is off: revoking the account's grants",
            extra={"problem": off[account].message, "grants": grant_ids},
        )
        for grant_id in grant_ids:
            try:
                outcome = revoke(grant_id)
            except (ServiceFailure, TransientError) as exc:
                failures.append(f"{grant_id}: {exc}")
                continue
            if outcome.result is Result.REVOKED:
                revoked.append(grant_id)
                metrics().add("RevokedLoggingOff")
    return revoked, failures
