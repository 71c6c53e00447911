"""The grant path of the core on in-memory fakes: no moto, no template."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.core.identity import PrincipalType
from sessiongate.core.model import AccessApproved, Denial, GrantStatus, Result
from sessiongate.core.ports import ServiceFailure, TagLimitExceeded
from sessiongate.errors import TransientError
from tests.unit.fakes.core import ACCOUNT, INSTANCE, MEMBER, CoreWorld

SLOT1 = "SecurityAllowSessionInstance"


@pytest.fixture
def world() -> CoreWorld:
    return CoreWorld()


def test_granted_tags_the_principal_claims_a_slot_and_schedules_the_revocation(world: CoreWorld) -> None:
    request = world.approved(minutes=15)
    outcome = world.grant(request)

    assert outcome.result is Result.GRANTED
    assert outcome.result == "granted"
    assert outcome.as_dict()["result"] == "granted"
    assert world.directory.tags_of("user", "alice") == {SLOT1: INSTANCE}
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert (grant.status, grant.slot, grant.expires_at) == (GrantStatus.ACTIVE, 1, "2026-11-24T09:15:00Z")
    assert world.ledger.slot_holder(world.alice, 1) == request.grant_id
    schedule = world.schedules.schedules[f"sg-revoke-{request.grant_id}"]
    assert schedule.when == world.clock.now() + timedelta(minutes=15)
    assert schedule.payload == {
        "grant_id": request.grant_id,
        "reason": "expired",
        "principal_type": "user",
        "principal_name": "alice",
        "principal_arn": world.alice,
        "account": ACCOUNT,
        "instance_id": INSTANCE,
        "slot": 1,
        "expires_at": "2026-11-24T09:15:00Z",
    }
    assert grant.schedule_name == f"sg-revoke-{request.grant_id}"
    assert world.notifier.types() == ["AccessGranted"]
    assert world.verifier.verified == [request.grant_id]


def test_a_second_grant_of_the_same_principal_takes_the_next_slot(world: CoreWorld) -> None:
    world.inventory.add("i-0fedcba9876543210")
    assert world.grant(world.approved()).detail["slot"] == 1
    assert world.grant(world.approved(instance="i-0fedcba9876543210")).detail["slot"] == 2
    assert world.directory.tags_of("user", "alice") == {
        SLOT1: INSTANCE,
        "SecurityAllowSessionInstance2": "i-0fedcba9876543210",
    }


def test_duplicate_delivery_changes_nothing(world: CoreWorld) -> None:
    request = world.approved()
    world.grant(request)
    writes, published = list(world.directory.writes), list(world.notifier.published)

    again = world.grant(request)

    assert again.result == "duplicate"
    assert again.detail == {"status": "ACTIVE"}
    assert world.directory.writes == writes
    assert world.notifier.published == published
    assert len(world.schedules.schedules) == 1
    assert world.ledger.slots.keys() == {(world.alice, 1)}


def _principal_missing(w: CoreWorld) -> dict[str, Any]:
    w.directory.delete("user", "alice")
    return {}


def _excluded(w: CoreWorld) -> dict[str, Any]:
    w.directory.add("user", "Admin1")
    return {"principal": "Admin1"}


def _engine_role(w: CoreWorld) -> dict[str, Any]:
    w.directory.add("role", "sg-grant", path="/sessiongate/")
    return {"principal": "sg-grant", "kind": "role"}


def _identity_center_role(w: CoreWorld) -> dict[str, Any]:
    w.directory.add("role", "Ops", path="/aws-reserved/sso.amazonaws.com/")
    return {"principal": "Ops", "kind": "role"}


def _shared_role(w: CoreWorld) -> dict[str, Any]:
    w.directory.add("role", "AWSReservedSSO_Ops_0123")
    return {"principal": "AWSReservedSSO_Ops_0123", "kind": "role"}


def _stopped(w: CoreWorld) -> dict[str, Any]:
    w.inventory.add(INSTANCE, state="stopped")
    return {}


def _deny_tagged(w: CoreWorld) -> dict[str, Any]:
    w.inventory.add(INSTANCE, tags={"SessionGate": "deny"})
    return {}


def _origin_denies(w: CoreWorld) -> dict[str, Any]:
    w.verifier.denials = [Denial("origin_mismatch", "the change request says otherwise")]
    return {}


def _no_verifier(w: CoreWorld) -> dict[str, Any]:
    w.engine.verifiers = {}
    return {}


def _member_unavailable(w: CoreWorld) -> dict[str, Any]:
    w.engine.settings = w.settings = type(w.settings)(**{**w.settings.__dict__, "member_accounts": (MEMBER,)})
    w.accounts.unavailable.add(MEMBER)
    return {"account": MEMBER}


DENIALS: dict[str, tuple[Callable[[CoreWorld], dict[str, Any]], str]] = {
    "principal missing": (_principal_missing, "principal_not_found"),
    "principal excluded": (_excluded, "principal_excluded"),
    "SessionGate's own role": (_engine_role, "principal_is_engine"),
    "Identity Center role": (_identity_center_role, "principal_unmodifiable"),
    "shared role": (_shared_role, "shared_role_refused"),
    "self approval": (lambda w: {"requester": "arn:aws:iam::123456789012:user/approver"}, "self_approval"),
    "too long": (lambda w: {"minutes": 61}, "duration_exceeds_max"),
    "unknown instance": (lambda w: {"instance": "i-0aaaaaaaaaaaaaaaa"}, "instance_not_found"),
    "stopped instance": (_stopped, "instance_not_usable"),
    "instance deny tag": (_deny_tagged, "instance_excluded"),
    "origin disagrees": (_origin_denies, "origin_mismatch"),
    "no origin verifier": (_no_verifier, "origin_unverifiable"),
    "foreign account": (lambda w: {"account": "999999999999"}, "account_not_allowed"),
    "member role unavailable": (_member_unavailable, "member_role_unavailable"),
}


@pytest.mark.parametrize("case", list(DENIALS))
def test_each_guardrail_denies_records_and_notifies_without_touching_iam(world: CoreWorld, case: str) -> None:
    arrange, code = DENIALS[case]
    request = world.approved(**arrange(world))

    outcome = world.grant(request)

    assert outcome.result == "denied"
    assert code in world.codes(outcome)
    record = world.ledger.get_grant(request.grant_id)
    assert record is not None
    assert record.status is GrantStatus.DENIED
    assert code in [d["code"] for d in record.denials]
    assert world.directory.writes == []
    assert world.ledger.slots == {}
    assert world.schedules.schedules == {}
    assert world.notifier.types() == ["AccessDenied"]
    assert world.grant(request).result == "duplicate"  # the denial is final


def test_stale_and_future_approvals_are_denied(world: CoreWorld) -> None:
    stale = world.approved()
    world.clock.advance(timedelta(minutes=61))
    future = world.approved()
    future = type(future)(**{**future.__dict__, "not_before": world.clock.now() + timedelta(minutes=5)})
    assert "approval_stale" in world.codes(world.grant(stale))
    assert "not_yet_valid" in world.codes(world.grant(future))


def test_no_free_slot_denies_and_leaves_the_other_grants_alone() -> None:
    world = CoreWorld(slot_count=2)
    for n in range(3):
        world.inventory.add(f"i-0{n}{'0' * 15}")
    first, second, third = (world.approved(instance=f"i-0{n}{'0' * 15}") for n in range(3))
    assert world.grant(first).result == world.grant(second).result == "granted"

    outcome = world.grant(third)

    assert world.codes(outcome) == ["no_free_slot"]
    assert world.status(third.grant_id) is GrantStatus.DENIED
    assert {world.ledger.slot_holder(world.alice, s) for s in (1, 2)} == {first.grant_id, second.grant_id}
    assert len(world.directory.tags_of("user", "alice")) == 2


def test_no_room_for_two_more_tags_is_denied_before_any_write(world: CoreWorld) -> None:
    world.directory.add("user", "alice", tags={f"team{n}": "x" for n in range(49)})
    request = world.approved()

    assert world.codes(world.grant(request)) == ["tag_limit"]
    assert world.directory.writes == []
    assert world.ledger.slots == {}


def test_iam_refusing_the_tag_at_the_limit_undoes_the_claim(world: CoreWorld) -> None:
    # 48 foreign tags pass the pre-check; two drifted slot-2 tags make IAM's 50 overflow.
    drift = {"SecurityAllowSessionInstance2": "i-0ffffffffffffffff", "SecurityAllowSessionUser2": "x:y"}
    tags = {f"team{n}": "x" for n in range(48)} | drift
    world.directory.add("user", "alice", tags=tags)
    request = world.approved()

    outcome = world.grant(request)

    assert world.codes(outcome) == ["tag_limit"]
    assert "IAM refused" in outcome.detail["denials"][0]["message"]
    assert world.status(request.grant_id) is GrantStatus.DENIED
    assert world.ledger.slots == {}
    assert world.directory.tags_of("user", "alice") == tags
    # The schedule was created before the tag: it fires on a DENIED grant, a no-op.
    schedule = world.schedules.schedules[f"sg-revoke-{request.grant_id}"]
    assert world.engine.on_revoke_schedule(schedule.payload).result == "duplicate"


def test_a_role_iam_will_not_modify_is_denied_and_its_claim_released(world: CoreWorld) -> None:
    world.directory.add("role", "ServiceOwned", path="/service-role/", unmodifiable=True)
    request = world.approved(principal="ServiceOwned", kind="role")

    outcome = world.grant(request)

    assert world.codes(outcome) == ["principal_unmodifiable"]
    assert world.status(request.grant_id) is GrantStatus.DENIED
    assert world.ledger.slots == {}


def test_a_principal_deleted_while_granting_is_denied(
    world: CoreWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = world.directory.get_principal

    def read_then_deleted(*args: Any) -> Any:
        facts = read(*args)
        world.directory.delete("user", "alice")
        return facts

    monkeypatch.setattr(world.directory, "get_principal", read_then_deleted)
    request = world.approved()

    assert world.codes(world.grant(request)) == ["principal_not_found"]
    assert world.ledger.slots == {}


def test_revoked_before_it_was_granted_records_revoked_and_never_tags(world: CoreWorld) -> None:
    request = world.approved()
    world.ledger.request_revoke(request.grant_id, at="2026-11-24T08:59:00Z", reason="done", by="alice")

    outcome = world.grant(request)

    assert outcome.result == "revoked"
    assert outcome.detail == {"reason": "done", "untagged": False}
    grant = world.ledger.get_grant(request.grant_id)
    assert grant is not None
    assert (grant.status, grant.revoke_reason, grant.revoked_by) == (GrantStatus.REVOKED, "done", "alice")
    assert world.directory.writes == []
    assert world.ledger.slots == {}
    assert world.notifier.types() == ["AccessRevoked"]
    assert world.grant(request).result == "duplicate"


def test_a_revocation_between_transaction_and_tag_is_never_outlived_by_the_tag(world: CoreWorld) -> None:
    """The re-tag race: the revocation runs after the grant's transaction, before its tag. It waits out
    the bind window (virtual time), revokes, and the grant, now past its window, refuses to tag."""
    request = world.approved()
    create = world.schedules.create_once

    def revocation_meanwhile(*args: Any) -> bool:
        assert world.engine.revoke(request.grant_id, reason="revoked", by="bob").result == "revoked"
        return create(*args)

    world.schedules.create_once = revocation_meanwhile  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="bind window"):
        world.grant(request)
    del world.schedules.create_once

    assert world.status(request.grant_id) is GrantStatus.REVOKED
    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}
    assert world.grant(request).result == "duplicate"  # the redelivery cannot resume a REVOKED grant
    assert world.directory.tags_of("user", "alice") == {}


def test_a_resumed_grant_racing_a_revocation_is_revoked_again_after_it_tagged(world: CoreWorld) -> None:
    """A revocation read the grant, then a redelivery resumed (rebound) it and tagged: the revocation's
    transaction fails on activated_at, it reads again, waits, untags, and the grant ends REVOKED."""
    request = world.approved()
    world.schedules.create_once = lambda *a: (_ for _ in ()).throw(ServiceFailure("down"))  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    del world.schedules.create_once
    world.clock.advance(timedelta(minutes=1))
    untag = world.directory.untag

    def redelivery_meanwhile(*args: Any) -> bool:
        world.directory.untag = untag  # type: ignore[method-assign]
        done = untag(*args)
        assert world.grant(request).result == "granted"  # resumed: tags again
        return done

    world.directory.untag = redelivery_meanwhile  # type: ignore[method-assign]
    assert world.engine.revoke(request.grant_id, reason="revoked", by="bob").result == "revoked"

    assert world.status(request.grant_id) is GrantStatus.REVOKED
    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}


def test_a_grant_interrupted_before_its_schedule_is_resumed_on_redelivery(world: CoreWorld) -> None:
    request = world.approved()
    create = world.schedules.create_once

    def throttled(*args: Any) -> bool:
        raise ServiceFailure("Rate exceeded", code="ThrottlingException")

    world.schedules.create_once = throttled  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    half = world.ledger.get_grant(request.grant_id)
    assert half is not None
    # Fail-closed: ACTIVE in the ledger, but no tag (nothing opens) and no schedule.
    assert (half.status, half.slot) == (GrantStatus.ACTIVE, 1)
    assert world.directory.tags_of("user", "alice") == {}

    world.schedules.create_once = create  # type: ignore[method-assign]
    world.clock.advance(timedelta(seconds=30))
    outcome = world.grant(request)

    assert outcome.result == "granted"
    assert outcome.detail["slot"] == 1
    assert outcome.detail["expires_at"] == half.expires_at  # the first claim's expiry stays
    assert world.status(request.grant_id) is GrantStatus.ACTIVE
    assert world.ledger.slots.keys() == {(world.alice, 1)}
    assert world.directory.tags_of("user", "alice") == {SLOT1: INSTANCE}
    assert f"sg-revoke-{request.grant_id}" in world.schedules.schedules
    assert world.grant(request).result == "duplicate"  # now tagged: a duplicate


def test_a_grant_interrupted_between_schedule_and_tag_is_resumed_on_redelivery(world: CoreWorld) -> None:
    request = world.approved()
    tag = world.directory.tag
    world.directory.tag = lambda *a: (_ for _ in ()).throw(ServiceFailure("down"))  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    assert f"sg-revoke-{request.grant_id}" in world.schedules.schedules  # the revocation is there first
    assert world.directory.tags_of("user", "alice") == {}
    world.directory.tag = tag  # type: ignore[method-assign]
    world.clock.advance(timedelta(minutes=2))

    assert world.grant(request).result == "granted"
    assert world.directory.tags_of("user", "alice") == {SLOT1: INSTANCE}


def test_an_expired_untagged_grant_is_not_resumed(world: CoreWorld) -> None:
    request = world.approved(minutes=15)
    world.directory.tag = lambda *a: (_ for _ in ()).throw(ServiceFailure("down"))  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    del world.directory.tag
    world.clock.advance(timedelta(minutes=16))
    assert world.grant(request).result in ("duplicate", "denied")
    assert world.directory.tags_of("user", "alice") == {}


def test_a_denied_redelivery_of_an_untagged_grant_changes_nothing(world: CoreWorld) -> None:
    """The redelivery is denied now (instance stopped): the transaction is not even tried; the record
    stays ACTIVE without a tag (fail-closed) until its schedule or the reconciler revokes it."""
    request = world.approved()
    world.directory.tag = lambda *a: (_ for _ in ()).throw(ServiceFailure("boom"))  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    del world.directory.tag
    world.inventory.add(INSTANCE, state="stopped")

    assert world.grant(request).result == "duplicate"
    assert world.directory.tags_of("user", "alice") == {}
    world.clock.advance(timedelta(minutes=10))
    schedule = world.schedules.schedules[f"sg-revoke-{request.grant_id}"]
    assert world.engine.on_revoke_schedule(schedule.payload).result == "revoked"
    assert world.ledger.slots == {}


def test_a_taken_slot_makes_the_transaction_try_the_next_one(world: CoreWorld) -> None:
    """The tags said slot 1 was free but another grant's lock holds it (tags are a hint): the next slot."""
    assert world.ledger.lock_free_slot(world.alice, 1, "cm-other")
    outcome = world.grant(world.approved())
    assert (outcome.result, outcome.detail["slot"]) == ("granted", 2)
    assert world.ledger.slot_holder(world.alice, 1) == "cm-other"


def test_a_duplicate_delivery_is_told_by_the_transaction_and_writes_nothing(world: CoreWorld) -> None:
    request = world.approved()
    world.grant(request)
    before = (dict(world.ledger.grants), dict(world.ledger.slots), len(world.directory.writes))
    assert world.grant(request).result == "duplicate"
    assert (dict(world.ledger.grants), dict(world.ledger.slots), len(world.directory.writes)) == before
    assert world.notifier.types() == ["AccessGranted"]


def test_an_unmanaged_instance_is_not_asked_about_at_grant_time(world: CoreWorld) -> None:
    """Whether the node is managed is asked when the request is made (the front doors): at grant time
    the instance is read once, without the SSM check (a tag opens nothing on an unmanaged node)."""
    world.inventory.add(INSTANCE, managed=False)
    assert world.grant(world.approved()).result == "granted"


def test_a_member_account_grant_tags_the_member_principal() -> None:
    world = CoreWorld(member_accounts=(MEMBER,))
    directory, inventory, _ = world.accounts.add(MEMBER)
    directory.add("user", "alice")
    inventory.add(INSTANCE)

    outcome = world.grant(world.approved(account=MEMBER))

    assert outcome.result == "granted"
    assert outcome.detail["principal_arn"] == f"arn:aws:iam::{MEMBER}:user/alice"
    assert directory.tags_of("user", "alice") == {SLOT1: INSTANCE}
    assert world.directory.tags_of("user", "alice") == {}  # not the engine account's alice
    assert ACCOUNT != MEMBER


def test_malformed_detail_is_rejected_and_notified(world: CoreWorld) -> None:
    outcome = world.engine.grant({"schema_version": "1", "grant_id": "x"})
    assert outcome.result == "rejected"
    assert world.notifier.types() == ["EventRejected"]
    assert world.ledger.grants == {}


def _abandoned_with_a_failed_undo(world: CoreWorld) -> AccessApproved:
    """Delivery 1: IAM refuses the tag (the grant is abandoned: DENIED), a late tag of it is there, and
    the undo's UntagUser fails (throttled past the retries): the delivery raises, the lock and tag stay."""
    request = world.approved()
    tag, untag = world.directory.tag, world.directory.untag

    def refused(kind: PrincipalType, name: str, tags: Any) -> None:
        world.directory.tag = tag  # type: ignore[method-assign]
        tag(kind, name, tags)  # landed after all (a concurrent delivery's call, or one IAM ran late)
        raise TagLimitExceeded(name)

    def throttled(*args: Any) -> bool:
        world.directory.untag = untag  # type: ignore[method-assign]
        raise ServiceFailure("Rate exceeded", code="Throttling")

    world.directory.tag = refused  # type: ignore[method-assign]
    world.directory.untag = throttled  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    assert world.status(request.grant_id) is GrantStatus.DENIED
    assert world.ledger.slot_holder(world.alice, 1) == request.grant_id
    assert world.directory.tags_of("user", "alice") == {SLOT1: INSTANCE}
    world.clock.advance(timedelta(minutes=1))  # Lambda's retry of the event
    return request


def test_a_failed_undo_of_an_abandoned_grant_is_done_by_the_redelivery(world: CoreWorld) -> None:
    request = _abandoned_with_a_failed_undo(world)

    assert world.grant(request).result == "duplicate"

    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}
    assert world.grant(request).result == "duplicate"  # nothing left to do: no write
    assert [w[0] for w in world.directory.writes] == ["tag", "untag"]


def test_a_failed_undo_is_done_by_a_redelivery_the_checks_now_deny(world: CoreWorld) -> None:
    """The retry never reaches the transaction (the instance stopped meanwhile): still undone."""
    request = _abandoned_with_a_failed_undo(world)
    world.inventory.add(INSTANCE, state="stopped")

    assert world.grant(request).result == "duplicate"

    assert world.directory.tags_of("user", "alice") == {}
    assert world.ledger.slots == {}


def test_an_undo_that_fails_again_raises_again(world: CoreWorld) -> None:
    """Fail closed: the retry does not report success while the tag is still there."""
    request = _abandoned_with_a_failed_undo(world)
    world.directory.untag = lambda *a: (_ for _ in ()).throw(ServiceFailure("down"))  # type: ignore[method-assign]
    with pytest.raises(ServiceFailure):
        world.grant(request)
    assert world.ledger.slot_holder(world.alice, 1) == request.grant_id
