"""``sessiongate audit``: who had access to what, when, approved by whom, for how long, which sessions.

    sessiongate audit --stack-name sessiongate --since 2026-11-01 --until 2026-11-30 [--person alice]
                      [--instance i-...] [--account 111111111111] [--format table|json|csv]
    sessiongate audit backfill --stack-name sessiongate --since 2026-11-01 --until 2026-11-30

The report reads the history export's objects straight from S3 (``history/v1/dt=<day>/``, one prefix per
day of the range, plus the days after ``--until`` that a grant of the range can still end in, and the
``LOOKBACK`` days before ``--since`` that its grant or its approval can have started in), with the
caller's credentials (the stack's ``HistoryAuditorPolicy``): no Athena needed; for long ranges or
ad-hoc questions use the Athena workgroup and its named queries (README, "Audit evidence"). A row is one
grant whose access overlaps the range (granted before ``--since`` and ended in it included), or one
denial of the range, with its approval, its end and its sessions.

``backfill`` asks the export function to rebuild the days from the ledger tables (the same object keys:
nothing is duplicated); only the deployers may invoke it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .client import CliError

if TYPE_CHECKING:
    from .main import Context

# A grant of the range may end this long after it (MaxValidityMinutes is at most 12 hours; an extension
# ends its parent at once): its revocation is read from the partitions up to here past --until.
END_LOOKAHEAD = timedelta(days=2)
# ... and a grant in force on --since began at most that long before it (STARTED_BEFORE), its request
# approved at most a scheduled start's lead before that (``rule_limits.MAX_LEAD_MINUTES``, a week):
# the approval (approval kind, break-glass, ticket) is read from the partitions up to LOOKBACK before
# --since, eight more day prefixes per report.
STARTED_BEFORE = timedelta(days=1)
LOOKBACK = STARTED_BEFORE + timedelta(days=7)
MAX_DAYS = 3660
COLUMNS = (
    "granted_at",
    "status",
    "person",
    "principal_arn",
    "account",
    "instance_id",
    "minutes",
    "ended_at",
    "end_reason",
    "approved_by",
    "approval_kind",
    "requester_arn",
    "reason",
    "ticket",
    "sessions",
    "grant_id",
    "request_id",
    "denials",
)


def add_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``audit`` on the CLI (``add`` is main.build_parser's helper)."""
    p = add(
        "audit",
        "auditors: who had access to what, when, approved by whom, how long, which sessions (from the "
        "history export in S3); deployers: `audit backfill` rebuilds days of history from the ledger",
        run,
        api=False,
    )
    p.add_argument(
        "action", nargs="?", choices=["report", "backfill"], default="report", help="default: report"
    )
    p.add_argument("--stack-name", default="sessiongate", help="SessionGate's stack (default: sessiongate)")
    p.add_argument(
        "--bucket", help="the history bucket (stack output HistoryBucketName); default: from the stack"
    )
    p.add_argument(
        "--function", help="backfill: the export function (stack output ExportHistoryFunctionName)"
    )
    p.add_argument("--since", type=_day, required=True, help="first day (UTC), YYYY-MM-DD")
    p.add_argument("--until", type=_day, help="last day (UTC), YYYY-MM-DD; default: today")
    p.add_argument("--person", help="only this person: principal ARN, or its user/role/session name")
    p.add_argument("--instance", help="only this instance id")
    p.add_argument("--account", help="only this account id")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="default: table")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def run(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    until = a.until or datetime.now(UTC).date()
    if a.since > until:
        raise CliError("--since is after --until", "invalid_range")
    if (until - a.since).days >= MAX_DAYS:
        raise CliError(f"the range is longer than {MAX_DAYS} days", "invalid_range")
    session = ctx.boto_session()
    if session.get_credentials() is None:
        raise CliError(
            "no AWS credentials found: configure a profile (--profile) or sign in (aws sso login)",
            "no_credentials",
        )
    region = ctx.aws_region()
    if a.action == "backfill":
        return {
            "audit": backfill(
                session,
                region,
                a.function or _output(session, region, a.stack_name, "ExportHistoryFunctionName"),
                a.since,
                until,
            )
        }
    bucket = a.bucket or _output(session, region, a.stack_name, "HistoryBucketName")
    today = datetime.now(UTC).date()
    records = read_records(
        session.client("s3", region_name=region),
        bucket,
        a.since - LOOKBACK,
        min(until + END_LOOKAHEAD, max(until, today)),
    )
    rows = access_rows(records, a.since, until, person=a.person, instance=a.instance, account=a.account)
    return {"audit": render(rows, a.format)}


def _output(session: Any, region: str, stack: str, name: str) -> str:
    from botocore.exceptions import ClientError

    try:
        stacks = session.client("cloudformation", region_name=region).describe_stacks(StackName=stack)[
            "Stacks"
        ]
    except ClientError as exc:
        raise CliError(
            f"cannot read stack {stack}: {exc.response['Error'].get('Message', '')}", "stack_unreadable"
        ) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if name not in outputs:
        raise CliError(f"stack {stack} has no output {name} (deploy this release first)", "no_history")
    return str(outputs[name])


def read_records(s3: Any, bucket: str, since: date, until: date) -> list[dict[str, Any]]:
    """Every record of the day partitions ``since``..``until`` (ListObjectsV2 + GetObject per object)."""
    from botocore.exceptions import ClientError

    from sessiongate.history import keys_between, parse_lines

    records: list[dict[str, Any]] = []
    try:
        for prefix in keys_between(since, until):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    records += parse_lines(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    except ClientError as exc:
        error = exc.response["Error"]
        raise CliError(
            f"cannot read the history in {bucket}: {error.get('Code')} {error.get('Message', '')}".strip(),
            "history_unreadable",
        ) from None
    return records


def _matches_person(record: Mapping[str, Any], person: str) -> bool:
    arn = str(record.get("principal_arn") or "")
    return person in (arn, record.get("principal_name")) or arn.endswith(f"/{person}")


def access_rows(
    records: Iterable[Mapping[str, Any]],
    since: date,
    until: date,
    *,
    person: str | None = None,
    instance: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """One row per grant in force during ``since``..``until`` (granted in it, or granted before it and
    ended in it or after: a grant without an end counts from at most STARTED_BEFORE before ``since``)
    and per denial dated in it: with its approval (the request's approved record, else the grant's
    approvers, approval kind unknown), its end (the revocation) and its sessions."""
    from sessiongate.history import day_of

    by_grant: dict[str, dict[str, Mapping[str, Any]]] = {}
    approvals: dict[str, Mapping[str, Any]] = {}
    for r in records:
        if r.get("grant_id"):
            by_grant.setdefault(str(r["grant_id"]), {})[str(r["transition"])] = r
        if r.get("transition") in ("approved", "extension") and r.get("request_id"):
            approvals[str(r["request_id"])] = r
    rows = []
    for grant_id, seen in by_grant.items():
        start = seen.get("grant") or seen.get("denial")
        if start is None or day_of(str(start["at"])) > until:
            continue
        began = day_of(str(start["at"]))
        ending = seen.get("revocation") if "grant" in seen else None
        if began < since and (
            "grant" not in seen
            or (day_of(str(ending["at"])) < since if ending else began < since - STARTED_BEFORE)
        ):
            continue
        if person and not _matches_person(start, person):
            continue
        if (instance and start.get("instance_id") != instance) or (
            account and start.get("account") != account
        ):
            continue
        end = seen.get("revocation") if "grant" in seen else seen.get("denial")
        approval = approvals.get(str(start.get("request_id") or ""))
        approvers = (approval or start).get("approver_arns") or []
        ended = str(end["at"]) if end else None
        rows.append(
            {
                "granted_at": str(start["at"]) if "grant" in seen else None,
                "status": "DENIED" if "denial" in seen else "REVOKED" if end else "ACTIVE",
                "person": start.get("principal_name"),
                "principal_arn": start.get("principal_arn"),
                "account": start.get("account"),
                "instance_id": start.get("instance_id"),
                "minutes": _minutes(str(start["at"]), ended) if "grant" in seen and ended else None,
                "ended_at": ended,
                "end_reason": end.get("revoke_reason") if end and end is not start else None,
                "approved_by": list(approvers),
                # Without the request's approved record a native grant's approvers may be the request
                # API's own role (break-glass, auto-approval): its kind is not known.
                "approval_kind": (approval or {}).get("approval_kind")
                or ("approvers" if approvers and start.get("origin") != "native" else None),
                "requester_arn": start.get("requester_arn"),
                "reason": start.get("reason"),
                "ticket": (approval or {}).get("ticket") or start.get("ticket"),
                "sessions": [
                    s.get("session_id") for s in (seen.get("sessions") or end or {}).get("sessions") or []
                ],
                "grant_id": grant_id,
                "request_id": start.get("request_id"),
                "denials": [d.get("code") for d in (seen.get("denial") or {}).get("denials") or []],
            }
        )
    return sorted(rows, key=lambda row: (str(row["granted_at"] or row["ended_at"] or ""), row["grant_id"]))


def _minutes(start: str, end: str) -> int:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return max(0, round((parse(end) - parse(start)).total_seconds() / 60))


def render(rows: Sequence[Mapping[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"access": list(rows)}, indent=2, sort_keys=True)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
        return out.getvalue().rstrip("\n")
    if not rows:
        return "no access in this range"
    lines = [
        f"{'GRANTED (UTC)':<21} {'PERSON':<16} {'ACCOUNT':<12} {'INSTANCE':<20} {'MIN':>4}  "
        f"{'END':<10} {'APPROVED BY':<24} SESSIONS"
    ]
    for r in rows:
        approvers = ",".join(str(a).rsplit("/", 1)[-1] for a in r["approved_by"]) or (
            r["approval_kind"] or "-"
        )
        end = r["end_reason"] or (
            "denied: " + ",".join(r["denials"]) if r["status"] == "DENIED" else "active"
        )
        lines.append(
            f"{r['granted_at'] or '-':<21} {str(r['person'])[:16]:<16} {r['account']!s:<12} "
            f"{r['instance_id']!s:<20} "
            f"{r['minutes'] if r['minutes'] is not None else '-':>4}  {end[:10]:<10} {approvers[:24]:<24} "
            f"{','.join(r['sessions']) or '-'}"
        )
    return "\n".join(lines)


# The backfill scans both tables and writes the records of its days within one invocation (300 s): the
# range is asked for in chunks of this many days, one invocation each, in order.
BACKFILL_CHUNK_DAYS = 7


def backfill(session: Any, region: str, function: str, since: date, until: date) -> str:
    """Invoke the export function's backfill for ``since``..``until``, BACKFILL_CHUNK_DAYS at a time; what
    it wrote. Stops at the first chunk that fails (the days before it are done); items the function
    could not read are left out by it and reported here (an error after all chunks ran)."""
    from botocore.config import Config

    # The function may take its whole timeout (300 s, template.yaml): wait for it, and do not retry a
    # call that timed out (it may still be running; a second run would only rewrite the same keys).
    config = Config(read_timeout=330, retries={"max_attempts": 1})
    client = session.client("lambda", region_name=region, config=config)
    written, failed, lines = 0, 0, []
    items: list[str] = []
    first = since
    while first <= until:
        last = min(first + timedelta(days=BACKFILL_CHUNK_DAYS - 1), until)
        try:
            done = _backfill_chunk(client, function, first, last)
        except CliError as exc:
            before = f"; {since}..{first - timedelta(days=1)} are done" if first > since else ""
            raise CliError(
                f"the backfill stopped at {first}..{last}: {exc}{before} (rerun with --since {first})",
                "backfill_failed",
            ) from None
        written += int(done["written"])
        failed += int(done.get("failed") or 0)
        items += [str(i) for i in done.get("failed_items") or []]
        lines.append(f"backfilled {done['since']}..{done['until']}: {done['written']} records written")
        first = last + timedelta(days=1)
    summary = f"backfilled {since}..{until}: {written} records written (existing keys overwritten)"
    if failed:
        raise CliError(
            f"{summary}, but {failed} table items could not be read and were left out (see the export "
            f"function's log): {', '.join(items)}",
            "backfill_incomplete",
        )
    return "\n".join([*lines, summary]) if len(lines) > 1 else summary


def _backfill_chunk(client: Any, function: str, since: date, until: date) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    payload = {"backfill": {"since": since.isoformat(), "until": until.isoformat()}}
    try:
        answer = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    except ClientError as exc:
        error = exc.response["Error"]
        raise CliError(
            f"cannot invoke {function}: {error.get('Code')} {error.get('Message', '')}".strip(),
            "backfill_failed",
        ) from None
    except BotoCoreError as exc:  # a read timeout: the function may still be running
        raise CliError(f"no answer from {function}: {exc}", "backfill_failed") from None
    body = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError") or not isinstance(body, dict) or "backfill" not in body:
        raise CliError(f"the backfill failed: {body}", "backfill_failed")
    return dict(body["backfill"])
