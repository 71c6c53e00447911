"""Grant: guardrails, ledger, slot tags, revoke schedule, notifications (moto + SSM fake)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.change_manager.events import ChangeRequestRef
from sessiongate.change_manager.interpretation import interpret
from sessiongate.clock import to_iso
from sessiongate.core.grant import new_record
from sessiongate.core.model import AccessApproved, GrantStatus, Origin
from sessiongate.errors import TransientError
from tests.support.stack import ACCOUNT, Stack, change_request, through_change_manager


def test_happy_path_tags_principal_schedules_revocation_and_notifies(stack: Stack) -> None:
    stack.user("alice")
    instance = stack.instance()
    request = stack.approved(instance_id=instance, principal="alice")

    outcome = stack.engine().on_access_approved(stack.event(request))

    assert outcome.result == "granted", outcome
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": instance}
    grant = stack.engine().ledger.get_grant(request.grant_id)
    assert grant is not None
    assert grant.status is GrantStatus.ACTIVE
    assert grant.slot == 1
    assert grant.expires_at == "2026-11-24T09:10:00Z"
    schedules = stack.schedules()
    assert list(schedules) == [f"sg-revoke-{request.grant_id}"]
    schedule = schedules[f"sg-revoke-{request.grant_id}"]
    assert schedule["ScheduleExpression"] == "at(2026-11-24T09:10:00)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["Target"]["Arn"] == stack.settings.revoke_target_arn
    assert schedule["Target"]["RoleArn"] == stack.settings.scheduler_role_arn
    assert schedule["Target"]["DeadLetterConfig"] == {"Arn": stack.settings.schedule_dlq_arn}
    assert json.loads(schedule["Target"]["Input"]) == {
        "grant_id": request.grant_id,
        "reason": "expired",
        "principal_type": "user",
        "principal_name": "alice",
        "principal_arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
        "account": ACCOUNT,
        "instance_id": instance,
        "slot": 1,
        "expires_at": "2026-11-24T09:10:00Z",
    }
    [note] = stack.notifications()
    assert note["attributes"] == {
        "event_type": "AccessGranted",
        "instance_id": instance,
        "principal_arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
        "account": ACCOUNT,
        # Published from the ledger's stream (at least once): subscribers drop repeats by this id.
        "event_id": f"AccessGranted/{request.grant_id}",
    }
    assert note["message"]["expires_at"] == "2026-11-24T09:10:00Z"
    assert note["message"]["at"] == grant.activated_at  # when the record went ACTIVE


def test_role_principal_is_tagged(stack: Stack) -> None:
    stack.role("ops-oncall")
    instance = stack.instance()
    request = stack.approved(instance_id=instance, principal="ops-oncall", kind="role")
    assert stack.engine().grant(request.to_detail()).result == "granted"
    assert stack.tags("role", "ops-oncall") == {"SecurityAllowSessionInstance": instance}


def _denied(stack: Stack, outcome: object, code: str, principal: str = "alice", kind: str = "user") -> None:
    assert getattr(outcome, "result", None) == "denied", outcome
    codes = [d["code"] for d in outcome.detail["denials"]]  # type: ignore[attr-defined]
    assert code in codes, codes
    # Nothing changed in IAM, no schedule, and the decision is recorded and notified.
    if principal:
        try:
            assert not any(k.startswith("SecurityAllowSession") for k in stack.tags(kind, principal))
        except stack.client("iam").exceptions.NoSuchEntityException:
            pass
    assert stack.schedules() == {}
    grant = stack.engine().ledger.get_grant(outcome.grant_id)  # type: ignore[attr-defined]
    assert grant is not None
    assert grant.status is GrantStatus.DENIED
    assert code in [d["code"] for d in grant.denials]
    notes = stack.notifications()
    assert [n["attributes"]["event_type"] for n in notes] == ["AccessDenied"]


def test_self_approval_is_denied(stack: Stack) -> None:
    stack.user("alice")
    requester = f"arn:aws:iam::{ACCOUNT}:user/bob"
    request = stack.approved(
        instance_id=stack.instance(), principal="alice", requester=requester, approvers=(requester,)
    )
    _denied(stack, stack.engine().grant(request.to_detail()), "self_approval")


STS = f"arn:aws:sts::{ACCOUNT}:assumed-role"


@pytest.mark.parametrize(
    ("requester", "approver"),
    [
        # A role is every one of its sessions.
        (f"arn:aws:iam::{ACCOUNT}:role/Ops", f"{STS}/Ops/carol"),
        # Whoever assumes an ordinary role names the session: Ops/carol may be Ops/dave assuming it again.
        (f"{STS}/Ops/dave", f"{STS}/Ops/carol"),
        # One IAM Identity Center user in another permission set is the same person.
        (
            f"{STS}/AWSReservedSSO_Ops_1234/dave@example.com",
            f"{STS}/AWSReservedSSO_Approvers_5678/dave@example.com",
        ),
    ],
    ids=["role-and-its-session", "two-sessions-of-an-ordinary-role", "one-idc-user-two-permission-sets"],
)
def test_approver_who_may_be_the_requester_is_denied(stack: Stack, requester: str, approver: str) -> None:
    stack.user("alice")
    request = stack.approved(
        instance_id=stack.instance(), principal="alice", requester=requester, approvers=(approver,)
    )
    _denied(stack, stack.engine().grant(request.to_detail()), "self_approval")


def test_different_sessions_of_a_shared_role_may_approve_each_other(stack: Stack) -> None:
    stack.settings = replace(stack.settings, approver_type="SSOUser", approver_name="erin@example.com")
    stack.user("alice")
    request = stack.approved(
        instance_id=stack.instance(),
        principal="alice",
        requester=f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Ops_1234/dave@example.com",
        approvers=(f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Ops_1234/erin@example.com",),
    )
    assert stack.engine().grant(request.to_detail()).result == "granted"


def test_approver_who_receives_the_access_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(
        instance_id=stack.instance(),
        principal="alice",
        requester=f"arn:aws:iam::{ACCOUNT}:user/bob",
        approvers=(f"arn:aws:iam::{ACCOUNT}:user/alice",),
    )
    _denied(stack, stack.engine().grant(request.to_detail()), "approver_is_operator")


def test_no_approver_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice", approvers=())
    _denied(stack, stack.engine().grant(request.to_detail()), "no_approvers")


def test_unparseable_approver_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice", approvers=("JaneDoe",))
    _denied(stack, stack.engine().grant(request.to_detail()), "approver_unknown")


def test_missing_principal_is_denied(stack: Stack) -> None:
    request = stack.approved(instance_id=stack.instance(), principal="ghost")
    _denied(stack, stack.engine().grant(request.to_detail()), "principal_not_found", principal="")


@pytest.mark.parametrize("name", ["AdminAlice", "PlatformAdministrator", "OrganizationAccountAccessRole"])
def test_excluded_admin_like_principals_are_denied(stack: Stack, name: str) -> None:
    stack.role(name)
    request = stack.approved(instance_id=stack.instance(), principal=name, kind="role")
    _denied(
        stack, stack.engine().grant(request.to_detail()), "principal_excluded", principal=name, kind="role"
    )


def test_engine_roles_are_never_granted(stack: Stack) -> None:
    stack.role("grant-role", path="/sessiongate/")
    request = stack.approved(instance_id=stack.instance(), principal="grant-role", kind="role")
    _denied(
        stack,
        stack.engine().grant(request.to_detail()),
        "principal_is_engine",
        principal="grant-role",
        kind="role",
    )


def test_principal_outside_the_allowed_paths_is_denied(stack: Stack) -> None:
    stack.user("alice", path="/contractors/")
    engine = stack.engine(replace(stack.settings, operator_path_prefixes=("/ops/",)))
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    _denied(stack, engine.grant(request.to_detail()), "principal_path_not_allowed")


def test_principal_without_required_operator_tag_is_denied(stack: Stack) -> None:
    stack.user("alice")
    settings = replace(stack.settings, operator_required_tag=("Team", "ops"))
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    _denied(stack, stack.engine(settings).grant(request.to_detail()), "principal_not_operator")


def test_missing_instance_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id="i-0123456789abcdef0", principal="alice")
    _denied(stack, stack.engine().grant(request.to_detail()), "instance_not_found")


def test_an_unmanaged_instance_is_not_asked_about_at_grant_time(stack: Stack) -> None:
    """The managed-node check moved to request time (the front doors): the grant reads the instance
    once (DescribeInstances), and a tag opens nothing on a node Session Manager cannot reach."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(managed=False), principal="alice")
    stack.calls.clear()
    assert stack.engine().grant(request.to_detail()).result == "granted"
    assert "ssm:DescribeInstanceInformation" not in stack.calls
    assert stack.calls["ec2:DescribeInstances"] == 1


def test_instance_with_the_deny_tag_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(tags={"SessionGate": "deny"}), principal="alice")
    _denied(stack, stack.engine().grant(request.to_detail()), "instance_excluded")


def test_instance_out_of_scope_is_denied(stack: Stack) -> None:
    stack.user("alice")
    settings = replace(stack.settings, instance_required_tag=("Env", "dev"))
    request = stack.approved(instance_id=stack.instance(tags={"Env": "prod"}), principal="alice")
    _denied(stack, stack.engine(settings).grant(request.to_detail()), "instance_not_in_scope")


def test_duration_over_the_maximum_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice", minutes=61)
    _denied(stack, stack.engine().grant(request.to_detail()), "duration_exceeds_max")


def test_stale_approval_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    stack.clock.advance(timedelta(minutes=61))
    _denied(stack, stack.engine().grant(request.to_detail()), "approval_stale")


def test_approval_that_starts_later_is_denied_now(stack: Stack) -> None:
    stack.user("alice")
    later = stack.clock.now() + timedelta(hours=1)
    request = stack.approved(instance_id=stack.instance(), principal="alice", not_before=later)
    _denied(stack, stack.engine().grant(request.to_detail()), "not_yet_valid")


def test_event_that_disagrees_with_the_change_request_is_denied(stack: Stack) -> None:
    stack.user("alice")
    stack.user("mallory")
    instance = stack.instance()
    request = stack.approved(instance_id=instance, principal="alice")
    forged = {**request.to_detail(), "principal_name": "mallory"}
    outcome = stack.engine().grant(forged)
    _denied(stack, outcome, "origin_mismatch", principal="mallory")


def test_event_for_an_unknown_change_request_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    stack.ssm.executions.clear()
    _denied(stack, stack.engine().grant(request.to_detail()), "origin_not_found")


def test_event_naming_an_execution_id_ssm_cannot_have_is_denied_not_raised(stack: Stack) -> None:
    """A forged grant id ``cm-<not 36 characters>``: botocore would refuse the read (ParamValidationError);
    the adapter reads it as no change request, so the grant records an audited denial."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice", grant_id="cm-forged")
    _denied(stack, stack.engine().grant(request.to_detail()), "origin_not_found")


def test_change_request_rejected_in_ssm_is_denied_at_grant_time(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    stack.ssm.add_execution(change_request(request, status="Rejected", approval="Rejected"))
    _denied(stack, stack.engine().grant(request.to_detail()), "change_request_not_approved")


def test_change_request_ssm_does_not_show_approved_yet_is_retried_not_denied(stack: Stack) -> None:
    """The grant's own re-read may lag behind the adapter's (eventual consistency): raise, retry."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    pending = change_request(request, status="PendingApproval")
    pending["StepExecutions"][0].update(StepStatus="Waiting", Outputs={})
    stack.ssm.add_execution(pending)
    with pytest.raises(TransientError, match="not shown as approved yet"):
        stack.engine().grant(request.to_detail())
    assert stack.engine().ledger.get_grant(request.grant_id) is None
    assert stack.notifications() == []
    assert stack.tags("user", "alice") == {}


def test_native_origin_without_a_verifier_fails_closed(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(
        instance_id=stack.instance(), principal="alice", origin=Origin.NATIVE, grant_id="rq-0001"
    )
    _denied(stack, stack.engine().grant(request.to_detail()), "origin_unverifiable")


def test_unknown_account_is_denied(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    detail = {**request.to_detail(), "account": "210987654321"}
    _denied(stack, stack.engine().grant(detail), "account_not_allowed", principal="")


# ------------------------------------------------------------------------------ slots and races
def test_two_instances_take_two_slots(stack: Stack) -> None:
    stack.user("alice")
    first, second = stack.instance(), stack.instance()
    engine = stack.engine()
    a = engine.grant(stack.approved(instance_id=first, principal="alice").to_detail())
    b = engine.grant(stack.approved(instance_id=second, principal="alice").to_detail())
    assert (a.detail["slot"], b.detail["slot"]) == (1, 2)
    assert stack.tags("user", "alice") == {
        "SecurityAllowSessionInstance": first,
        "SecurityAllowSessionInstance2": second,
    }
    assert len(stack.schedules()) == 2


def test_a_slot_claimed_by_a_concurrent_grant_is_skipped(stack: Stack) -> None:
    """Two grants race for slot 1 (the other one claimed it, its tag not yet written): we take slot 2."""
    stack.user("alice")
    engine = stack.engine()
    rival = stack.approved(instance_id=stack.instance(), principal="alice")
    ours = stack.approved(instance_id=stack.instance(), principal="alice")
    rival_grant = replace(
        new_record(rival, f"arn:aws:iam::{ACCOUNT}:user/alice", stack.clock.now(), GrantStatus.ACTIVE),
        slot=1,
        expires_at="2026-11-24T09:10:00Z",
        activated_at=to_iso(stack.clock.now()),
    )
    assert engine.ledger.open(rival_grant).created
    stack.calls.clear()

    outcome = engine.grant(ours.to_detail())

    assert outcome.detail["slot"] == 2
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance2": ours.instance_id}
    assert stack.calls["dynamodb:TransactWriteItems"] == 2  # slot 1 cancelled, slot 2 opened


def test_no_free_slot_is_denied_and_leaves_other_grants_alone(stack: Stack) -> None:
    stack.user("alice")
    settings = replace(stack.settings, slot_count=1)
    engine = stack.engine(settings)
    first = stack.approved(instance_id=stack.instance(), principal="alice")
    assert engine.grant(first.to_detail()).result == "granted"
    stack.notifications()
    second = stack.approved(instance_id=stack.instance(), principal="alice")
    outcome = engine.grant(second.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["no_free_slot"]
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": first.instance_id}


def test_principal_with_no_room_for_tags_is_denied(stack: Stack) -> None:
    stack.user("alice", tags={f"k{i}": "v" for i in range(49)})
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    outcome = stack.engine().grant(request.to_detail())
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["tag_limit"]
    assert len(stack.tags("user", "alice")) == 49


# ------------------------------------------------------------------------------ redelivery
def test_duplicate_delivery_grants_once(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine = stack.engine()
    assert engine.on_access_approved(stack.event(request)).result == "granted"
    stack.notifications()
    stack.calls.clear()

    again = engine.on_access_approved(stack.event(request))

    assert again.result == "duplicate"
    # Told by the transaction's condition (ALL_OLD): the checks' reads, one cancelled transaction.
    assert stack.calls["dynamodb:TransactWriteItems"] == 1
    assert not {"iam:TagUser", "scheduler:CreateSchedule", "sns:Publish", "dynamodb:GetItem"} & set(
        stack.calls
    )
    assert len(stack.schedules()) == 1
    assert stack.notifications() == []


def test_redelivery_after_a_crash_mid_grant_converges(stack: Stack) -> None:
    """The first attempt died after its transaction (before the schedule): ACTIVE in the ledger with no
    tag (fail-closed); the retry resumes the same grant."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine = stack.engine()
    original = engine.schedules.create_once

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("Lambda timed out")

    engine.schedules.create_once = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        engine.grant(request.to_detail())
    assert engine.ledger.get_grant(request.grant_id).status is GrantStatus.ACTIVE  # type: ignore[union-attr]
    assert stack.tags("user", "alice") == {}
    engine.schedules.create_once = original  # type: ignore[method-assign]

    outcome = engine.grant(request.to_detail())

    assert outcome.result == "granted"
    assert outcome.detail["slot"] == 1
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}
    assert len(stack.schedules()) == 1


def test_denial_is_recorded_once_under_duplicate_delivery(stack: Stack) -> None:
    request = stack.approved(instance_id=stack.instance(), principal="ghost")
    engine = stack.engine()
    assert engine.grant(request.to_detail()).result == "denied"
    assert engine.grant(request.to_detail()).result == "duplicate"
    assert [n["attributes"]["event_type"] for n in stack.notifications()] == ["AccessDenied"]


# ------------------------------------------------------------------------------ revocation requests
APPROVER = f"arn:aws:iam::{ACCOUNT}:user/approver"


def test_the_ledger_never_opens_or_resumes_a_live_grant_over_a_revocation_request(stack: Stack) -> None:
    stack.user("alice")
    engine = stack.engine()
    ledger = engine.ledger
    at = to_iso(stack.clock.now())
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    active = replace(
        new_record(request, f"arn:aws:iam::{ACCOUNT}:user/alice", stack.clock.now(), GrantStatus.ACTIVE),
        slot=1,
        expires_at="2026-11-24T09:10:00Z",
        activated_at=at,
    )

    ledger.request_revoke(request.grant_id, at=at, reason="done", by=APPROVER)
    ledger.request_revoke(request.grant_id, at="2026-11-24T09:09:00Z", reason="revoked", by="someone else")
    assert ledger.get_grant(request.grant_id) is None  # a revocation request is no grant
    requested = ledger.revoke_request(request.grant_id)
    assert requested is not None
    assert (requested.at, requested.reason, requested.by) == (at, "done", APPROVER)  # the first one stays
    opened = ledger.open(active)
    assert (opened.created, opened.revoke_requested) == (False, requested)
    assert ledger.slot_holder(active.principal_arn, 1) is None
    assert ledger.create(replace(active, status=GrantStatus.DENIED))  # not live: it may be recorded
    assert ledger.get_grant(request.grant_id).status is GrantStatus.DENIED  # type: ignore[union-attr]

    other = stack.approved(instance_id=stack.instance(), principal="alice")
    record = replace(active, grant_id=other.grant_id, slot=2)
    assert ledger.open(record).created
    ledger.request_revoke(other.grant_id, at=at, reason="done", by=APPROVER)
    assert not ledger.rebind(record, "2026-11-24T09:01:00Z")
    current = ledger.get_grant(other.grant_id)
    assert current is not None
    assert (current.status, current.activated_at) == (GrantStatus.ACTIVE, at)
    assert ledger.revoke_request(other.grant_id) is not None


def test_a_revocation_requested_before_the_grant_is_recorded_ends_it_revoked(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine = stack.engine()
    engine.ledger.request_revoke(
        request.grant_id, at=to_iso(stack.clock.now()), reason="revoked", by=APPROVER
    )

    outcome = engine.grant(request.to_detail())

    assert (outcome.result, outcome.detail["untagged"]) == ("revoked", False)
    assert stack.tags("user", "alice") == {}
    assert stack.schedules() == {}
    grant = engine.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by, grant.slot) == (
        GrantStatus.REVOKED,
        "revoked",
        APPROVER,
        None,
    )
    assert [n["attributes"]["event_type"] for n in stack.notifications()] == ["AccessRevoked"]
    assert engine.grant(request.to_detail()).result == "duplicate"
    assert stack.notifications() == []


def test_a_revocation_between_the_transaction_and_the_tag_is_never_outlived_by_the_tag(stack: Stack) -> None:
    """The re-tag race on moto: the revocation runs after the grant's transaction, before its tag; it
    waits out the bind window (the stack's clock: virtual time), revokes, and the grant refuses to tag."""
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine = stack.engine()
    original = engine.schedules.create_once
    revoked = []

    def revoked_meanwhile(*args: object, **kwargs: object) -> bool:
        revoked.append(stack.engine().revoke(request.grant_id, reason="revoked", by=APPROVER))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    engine.schedules.create_once = revoked_meanwhile  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="bind window"):
        engine.grant(request.to_detail())
    engine.schedules.create_once = original  # type: ignore[method-assign]

    assert [o.result for o in revoked] == ["revoked"]
    assert stack.tags("user", "alice") == {}
    assert engine.ledger.slot_holder(f"arn:aws:iam::{ACCOUNT}:user/alice", 1) is None
    grant = engine.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert (grant.status, grant.revoked_by) == (GrantStatus.REVOKED, APPROVER)
    # The redelivery cannot resume a revoked grant; the schedule it made fires on it: nothing happens.
    assert engine.grant(request.to_detail()).result == "duplicate"
    stack.clock.advance(timedelta(minutes=10))
    [schedule] = stack.schedules().values()
    assert engine.on_revoke_schedule(json.loads(schedule["Target"]["Input"])).result == "duplicate"
    assert stack.tags("user", "alice") == {}


def test_a_duplicate_racing_the_first_delivery_converges_on_one_tag(stack: Stack) -> None:
    stack.user("alice")
    request = stack.approved(instance_id=stack.instance(), principal="alice")
    engine, duplicate = stack.engine(), stack.engine()
    original = engine.schedules.create_once
    outcomes = []

    def duplicate_finishes_first(*args: object, **kwargs: object) -> bool:
        outcomes.append(duplicate.grant(request.to_detail()))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    engine.schedules.create_once = duplicate_finishes_first  # type: ignore[method-assign]
    outcome = engine.grant(request.to_detail())

    # The duplicate found the record untagged and resumed it; both wrote the same tag.
    assert [o.result for o in outcomes] == ["granted"]
    assert outcome.result == "granted"
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": request.instance_id}
    assert engine.ledger.slot_holder(f"arn:aws:iam::{ACCOUNT}:user/alice", 1) == request.grant_id
    assert engine.ledger.get_grant(request.grant_id).status is GrantStatus.ACTIVE  # type: ignore[union-attr]
    assert len(stack.schedules()) == 1


# ------------------------------------------------------------------------------ malformed events
@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("instance_id"), "instance_id"),
        (lambda d: d.update(instance_id="i-123; rm -rf /"), "instance_id"),
        (lambda d: d.update(principal_name="alice/../admin"), "principal_name"),
        (lambda d: d.update(principal_type="group"), "principal_type"),
        (lambda d: d.update(duration_minutes="10"), "duration_minutes"),
        (lambda d: d.update(duration_minutes=True), "duration_minutes"),
        (lambda d: d.update(approver_arns="arn:aws:iam::123456789012:user/x"), "approver_arns"),
        (lambda d: d.update(requester_arn="bob"), "requester_arn"),
        (lambda d: d.update(not_before="yesterday"), "not_before"),
        (lambda d: d.update(not_before="2026-11-24T09:00:00"), "not_before"),
        (lambda d: d.update(grant_id="x" * 80), "grant_id"),
        (lambda d: d.update(schema_version="2"), "schema_version"),
        (lambda d: d.update(origin="email"), "origin"),
        (lambda d: d.update(reason="x" * 100_000), "reason"),
        (
            lambda d: d.update(approver_arns=[f"arn:aws:iam::123456789012:user/a{i}" for i in range(26)]),
            "approver_arns",
        ),
        (lambda d: d.update(principal_name="a" * 65), "principal_name"),
        (lambda d: d.update(instance_id="i-0123456789abcdef0\n"), "instance_id"),
        (lambda d: d.update(origin_ref="o" * 300), "origin_ref"),
        (lambda d: d.update(bound_user_id="AROA:x; rm"), "bound_user_id"),
    ],
)
def test_malformed_detail_is_rejected_without_touching_iam(stack: Stack, mutate: object, field: str) -> None:
    stack.user("alice")
    detail = stack.approved(instance_id=stack.instance(), principal="alice").to_detail()
    mutate(detail)  # type: ignore[operator]
    outcome = stack.engine().grant(detail)
    assert outcome.result == "rejected"
    assert outcome.detail["field"] == field
    assert stack.tags("user", "alice") == {}
    [note] = stack.notifications()
    assert note["attributes"]["event_type"] == "EventRejected"


@pytest.mark.parametrize(
    "event", [None, [], "AccessApproved", {"source": "aws.ssm", "detail-type": "AccessApproved"}]
)
def test_wrong_envelope_is_rejected(stack: Stack, event: object) -> None:
    assert stack.engine().on_access_approved(event).result == "rejected"


# ------------------------------------------------------------------------------ who approved
MALLORY = f"arn:aws:iam::{ACCOUNT}:user/mallory"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"


def _as_template_says(stack: Stack, execution_id: str, **approver: Any) -> dict[str, Any]:
    """The AccessApproved an adapter that trusted the change template would emit (forged on the bus)."""
    execution = stack.ssm.executions[execution_id]
    ref = ChangeRequestRef(execution["OpsItemId"], execution_id, "Approved", None, None)
    trusting = replace(stack.settings, **approver)
    request = interpret(ref, execution, trusting, account=ACCOUNT, now=stack.clock.now())
    assert isinstance(request, AccessApproved), request
    return request.to_detail()


def test_an_approver_named_only_by_a_rewritten_change_template_is_denied_at_grant_time(stack: Stack) -> None:
    stack.user("alice")
    stack.user("mallory")
    instance = stack.instance()
    execution_id, _ = through_change_manager(
        stack, MALLORY, instance_id=instance, approver="mallory", kind="IamUser"
    )
    detail = _as_template_says(stack, execution_id, approver_type="IamUser", approver_name="mallory")

    _denied(stack, stack.engine().grant(detail), "approver_not_configured")


def test_too_few_distinct_approvers_are_denied_at_grant_time(stack: Stack) -> None:
    stack.user("alice")
    stack.approvers(CAROL)
    instance = stack.instance()
    execution_id, _ = through_change_manager(stack, CAROL, instance_id=instance, level=1)
    detail = _as_template_says(stack, execution_id, approver_type="IamUser", approver_name="carol")
    stack.settings = replace(stack.settings, min_required_approvals=2)

    _denied(stack, stack.engine().grant(detail), "approvals_insufficient")


def test_the_configured_approvers_are_granted(stack: Stack) -> None:
    stack.user("alice")
    stack.approvers(MALLORY, CAROL)
    stack.settings = replace(stack.settings, min_required_approvals=2)
    instance = stack.instance()
    _, event = through_change_manager(stack, MALLORY, CAROL, instance_id=instance, level=2)
    engine = stack.engine()
    assert stack.change_manager().on_change_request(event).result == "emitted"
    [approved] = stack.bus_events()

    assert engine.on_access_approved(approved).result == "granted"
    assert stack.tags("user", "alice") == {"SecurityAllowSessionInstance": instance}
