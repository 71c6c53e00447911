"""Issue 18, per-rule limits: a ticket the rule requires (with a pattern), and live grants capped per
person and per instance (on the in-memory fakes, with the real grant core and native verifier)."""

from __future__ import annotations

from typing import Any

import pytest

from sessiongate.access_requests.errors import Conflict, InvalidInput, NotAllowed
from sessiongate.access_requests.policy import ApprovalPolicy, PolicyError
from tests.support.people import DAVE
from tests.unit.access_world import ALICE, APPROVERS, BOB, caller, create
from tests.unit.fakes.access import ACCOUNT, World, world

OPS = f"arn:aws:iam::{ACCOUNT}:role/{APPROVERS}"


def policy(**rule: Any) -> dict[str, Any]:
    """One rule ``ops`` over every instance, approved by one of the approvers' role, plus ``rule``."""
    return {
        "version": 1,
        "rules": [{"name": "ops", "levels": [{"name": "ops", "approvers": [OPS]}], **rule}],
    }


TICKETED = policy(ticket={"required": True, "pattern": "^OPS-[0-9]+$"})


# ------------------------------------------------------------------------------------------- ticket
@pytest.mark.parametrize(
    ("ticket", "code"),
    [(None, "ticket_required"), ("INC-12", "ticket_mismatch"), ("OPS-12x", "ticket_mismatch")],
)
def test_a_rule_requiring_a_ticket_refuses_a_request_without_a_matching_one(
    ticket: str | None, code: str
) -> None:
    w = world(TICKETED)
    body = {} if ticket is None else {"ticket": ticket}
    with pytest.raises(InvalidInput) as err:
        create(w, **body)
    assert err.value.code == code
    assert "rule 'ops'" in err.value.message
    assert w.store.writes == []  # refused before anything is written or notified
    assert w.notifier.types == []


def test_a_matching_ticket_is_accepted_and_granted() -> None:
    w = world(TICKETED)
    request_id = create(w, ticket="OPS-42")
    w.service.approve(caller(BOB), request_id, None)
    assert w.grant().result == "granted"


def test_the_verifier_re_checks_the_ticket_at_grant_time() -> None:
    """The policy gained a ticket requirement after the approval: the grant is denied, with its code."""
    w = world(policy())
    request_id = create(w, ticket="INC-7")
    w.service.approve(caller(BOB), request_id, None)
    w.policies.document = TICKETED
    outcome = w.grant()
    assert outcome.result == "denied"
    assert [d["code"] for d in outcome.detail["denials"]] == ["ticket_invalid"]


def test_an_extension_needs_the_ticket_its_rule_now_requires() -> None:
    w = world(policy())
    request_id = create(w)
    w.service.approve(caller(BOB), request_id, None)
    assert w.grant().result == "granted"
    w.policies.document = TICKETED
    with pytest.raises(InvalidInput) as err:
        w.service.extend(caller(ALICE), request_id, {"reason": "more", "duration_minutes": 5})
    assert err.value.code == "ticket_required"


@pytest.mark.parametrize(
    ("ticket", "message"),
    [
        ("yes", "ticket must be an object"),
        ({"required": "yes"}, "ticket.required must be true or false"),
        ({"pattern": "(unclosed"}, "ticket.pattern is not a regular expression"),
        ({"pattern": ""}, "ticket.pattern must be a string of 1..200"),
        ({"required": True, "regex": "x"}, "unknown key(s) ['regex']"),
    ],
)
def test_invalid_ticket_rules_are_refused_with_where_and_why(ticket: object, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        ApprovalPolicy.parse(policy(ticket=ticket))
    assert message in str(err.value)
    assert "rules[0].ticket" in str(err.value)


# --------------------------------------------------------------------------------------- max_active
def granted_to(w: World, who: str, instance: str, approver: str = BOB) -> str:
    request_id = create(w, who, instance_id=instance)
    w.service.approve(caller(approver), request_id, None)
    assert w.grant().result == "granted"
    return request_id


def test_per_person_refuses_a_second_live_grant_under_the_rule_at_request() -> None:
    w = world(policy(max_active={"per_person": 1}))
    first = granted_to(w, ALICE, w.instance("i-0000000000000000a"))
    with pytest.raises(Conflict) as err:
        create(w, instance_id=w.instance("i-0000000000000000b"))
    assert err.value.code == "max_active"
    assert "1 live grant(s) under rule 'ops'" in err.value.message
    assert list(w.store.items) == [first]  # no request created
    # Someone else is not counted; once Alice's grant ends she may ask again.
    create(w, DAVE, instance_id="i-0000000000000000b")
    w.service.revoke(caller(ALICE), first, None)
    create(w, instance_id="i-0000000000000000b")


def test_per_person_is_re_checked_at_the_approval_that_hands_the_request_over() -> None:
    """Two pending requests of Alice's (allowed: pending is not live); the first approval grants, the
    second approval is refused (409) and the request stays PENDING, approvable once the first ends."""
    w = world(policy(max_active={"per_person": 1}))
    one = create(w, instance_id=w.instance("i-0000000000000000a"))
    two = create(w, instance_id=w.instance("i-0000000000000000b"))
    w.service.approve(caller(BOB), one, None)
    # Approved, not in the ledger yet (the hand-over is under way): it counts already.
    with pytest.raises(Conflict) as err:
        w.service.approve(caller(BOB), two, None)
    assert err.value.code == "max_active"
    assert w.grant().result == "granted"
    with pytest.raises(Conflict):
        w.service.approve(caller(BOB), two, None)
    assert w.store.get(two).status.value == "PENDING"  # type: ignore[union-attr]
    w.service.revoke(caller(ALICE), one, None)
    assert w.service.approve(caller(BOB), two, None)["request"]["status"] == "APPROVED"


def test_per_person_counts_only_grants_made_under_the_rule() -> None:
    two_rules = policy(max_active={"per_person": 1}, instances={"tags": {"Environment": "prod"}})
    two_rules["rules"].append({"name": "other", "levels": [{"approvers": [OPS]}]})
    w = world(two_rules)
    granted_to(w, ALICE, w.instance("i-0000000000000000a"))  # under "other": not counted
    granted_to(w, ALICE, w.instance("i-0000000000000000b", Environment="prod"))
    with pytest.raises(Conflict) as err:
        create(w, instance_id=w.instance("i-0000000000000000c", Environment="prod"))
    assert err.value.code == "max_active"


def test_per_instance_counts_every_live_grant_on_the_instance() -> None:
    w = world(policy(max_active={"per_instance": 1}))
    instance = w.instance()
    granted_to(w, ALICE, instance)
    with pytest.raises(Conflict) as err:
        create(w, DAVE, instance_id=instance)
    assert err.value.code == "max_active"
    assert f"instance {instance} has 1 live grant(s)" in err.value.message
    create(w, DAVE, instance_id=w.instance("i-0000000000000000b"))  # another instance is free


def test_per_instance_counts_an_approval_whose_grant_is_under_way() -> None:
    w = world(policy(max_active={"per_instance": 1}))
    instance = w.instance()
    one, two = create(w, instance_id=instance), create(w, DAVE, instance_id=instance)
    w.service.approve(caller(BOB), one, None)  # emitted, not granted yet
    with pytest.raises(Conflict) as err:
        w.service.approve(caller(BOB), two, None)
    assert err.value.code == "max_active"


def test_an_extension_replaces_a_grant_and_is_not_capped() -> None:
    w = world(policy(max_active={"per_person": 1, "per_instance": 1}))
    request_id = granted_to(w, ALICE, w.instance())
    child = w.service.extend(caller(ALICE), request_id, {"reason": "more", "duration_minutes": 5})
    approved = w.service.approve(caller(BOB), child["request"]["request_id"], None)
    assert approved["request"]["status"] == "APPROVED"


@pytest.mark.parametrize(
    ("max_active", "message"),
    [
        ({}, "must set per_person, per_instance or both"),
        ({"per_person": 0}, "max_active.per_person must be an integer from 1 to 1000"),
        ({"per_instance": True}, "max_active.per_instance must be an integer"),
        ({"per_team": 2}, "unknown key(s) ['per_team']"),
        ([1], "max_active must be an object"),
    ],
)
def test_invalid_max_active_is_refused_with_where_and_why(max_active: object, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        ApprovalPolicy.parse(policy(max_active=max_active))
    assert message in str(err.value)
    assert "rules[0].max_active" in str(err.value)


# ---------------------------------------------------------------------------------------- documents
FORWARDING = policy(
    documents=[
        "SSM-SessionManagerRunShell",
        {"name": "AWS-StartPortForwardingSessionToRemoteHost", "hosts": ["db.internal"], "ports": [5432]},
    ]
)


def test_a_request_may_name_only_documents_its_rule_lists() -> None:
    w = world(FORWARDING)
    with pytest.raises(NotAllowed) as err:
        create(w, documents=["AWS-StartInteractiveCommand"])
    assert err.value.code == "document_not_allowed"
    assert "AWS-StartInteractiveCommand" in err.value.message
    request_id = create(w, documents=["AWS-StartPortForwardingSessionToRemoteHost"])
    [(_, payload)] = w.notifier.sent
    # Approvers see the document and the hosts and ports the rule meant it for (IAM cannot enforce them).
    assert payload["documents"] == ["AWS-StartPortForwardingSessionToRemoteHost"]
    assert payload["rule_documents"] == [
        {"name": "AWS-StartPortForwardingSessionToRemoteHost", "hosts": ["db.internal"], "ports": [5432]}
    ]
    assert w.store.get(request_id).documents == ("AWS-StartPortForwardingSessionToRemoteHost",)  # type: ignore[union-attr]


def test_a_rule_without_documents_allows_the_shell_only() -> None:
    w = world(policy())
    create(w, documents=["SSM-SessionManagerRunShell"])
    with pytest.raises(NotAllowed) as err:
        create(w, documents=["AWS-StartPortForwardingSession"], instance_id=w.instance("i-0000000000000000b"))
    assert err.value.code == "document_not_allowed"


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([], "documents must be a non-empty list"),
        (["AWS-RunShellScript"], "'AWS-RunShellScript' is not one of"),
        ([{"name": "AWS-StartInteractiveCommand", "ports": [22]}], "apply to port forwarding documents only"),
        (
            [{"name": "AWS-StartPortForwardingSession", "hosts": ["db"]}],
            "hosts apply to AWS-StartPortForwardingSessionToRemoteHost",
        ),
        ([{"name": "AWS-StartPortForwardingSession", "ports": [0]}], "ports must be a list of port numbers"),
        (["AWS-StartSSHSession", "AWS-StartSSHSession"], "names a document twice"),
        ([{"name": "AWS-StartSSHSession", "users": []}], "unknown key(s) ['users']"),
    ],
)
def test_invalid_documents_are_refused_with_where_and_why(documents: object, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        ApprovalPolicy.parse(policy(documents=documents))
    assert message in str(err.value)
    assert "rules[0].documents" in str(err.value)


def test_documents_in_a_request_are_checked_as_input() -> None:
    w = world(FORWARDING)
    with pytest.raises(InvalidInput) as err:
        create(w, documents="AWS-StartSSHSession")
    assert err.value.code == "invalid_documents"
