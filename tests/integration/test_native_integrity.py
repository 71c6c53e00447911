"""Nobody inside the account approves their own shell by writing SessionGate's state directly.

Each test plays one attack of someone holding admin rights on SSM parameters, DynamoDB or Lambda (but
not IAM, not SessionGate's KMS keys) through the real handlers, and checks it fails closed:
(a) rewriting the approval policy parameter (break-glass on) -> every request refused, alarmed;
(a') writing back an older signed policy at a deleted and re-created parameter -> refused likewise;
(b) writing an APPROVED record and invoking the grant function -> denied (no approval MAC);
(c) approvals of record that do not satisfy the rule -> denied at grant time;
(d) re-tagging the instance between request and grant -> refused at approval and at grant.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sessiongate.access_requests.records import Approval, RequestStatus
from sessiongate.adapters.kms import Macs
from sessiongate.adapters.policy_source import POLICY_CACHE
from sessiongate.adapters.request_store import RequestStore, to_item
from sessiongate.core.model import GrantStatus
from tests.conftest import load_event
from tests.integration.test_native_api import (  # the handlers as deployed, and their helpers
    approve,
    call,
    create,
    deployed,  # noqa: F401  (the fixture)
    grant_from_bus,
    handler,
    set_policy,
)
from tests.support.native import ALICE, BOB, CAROL, CONTEXT, DAVE, POLICY, SECURITY
from tests.support.stack import APPROVAL_KEY, Stack

PROD = {"Environment": "prod"}


@pytest.fixture
def native(deployed: Stack) -> Stack:  # noqa: F811
    """The handlers with the environment template.yaml gives them, the signed policy in SSM."""
    return deployed


def sweep(stack: Stack) -> list[str]:
    """One scheduled run of the request API; the event types it notified."""
    handler("request_api")(load_event("reconcile_schedule.json"), CONTEXT)
    return [n["attributes"]["event_type"] for n in stack.notifications()]


def store(stack: Stack) -> RequestStore:
    return RequestStore(stack.client("dynamodb"), stack.settings.requests_table)


def denial_codes(outcome: dict[str, Any]) -> list[str]:
    return [d["code"] for d in outcome.get("denials", [])]


def approved_to_the_end(stack: Stack, request_id: str) -> None:
    """The prod rule: two leads, then security."""
    for approver in (BOB, CAROL, SECURITY):
        status, out = approve(request_id, approver)
        assert status == 200, out


# ---------------------------------------------------------------------------------------- (a) policy
def test_a_raw_put_parameter_turning_on_break_glass_refuses_every_request(native: Stack) -> None:
    stack = native
    instance = stack.instance(tags=PROD)
    signed = stack.ssm_parameter()
    # An SSM admin turns break-glass on for every rule, self-approval for alice, without the key.
    attack = json.loads(json.dumps(POLICY))
    attack["rules"][1]["break_glass"] = {"enabled": True, "max_duration_minutes": 60}
    attack["rules"][1]["levels"][0]["approvers"].append(ALICE)
    for value in (
        json.dumps(attack),  # the plain document, as before signing existed
        json.dumps({**json.loads(signed), "policy": attack}),  # the envelope, someone else's document
        signed,  # the deployers' own signed policy written again: a new version, so a replay
    ):
        stack.put_raw_policy(value)
        stack.clock.advance(POLICY_CACHE)
        body = {"instance_id": instance, "reason": "x" * 30, "break_glass": True, "duration_minutes": 10}
        status, out = call("POST /requests", ALICE, body=body)
        assert (status, out["error"]) == (503, "policy_rejected"), value[:80]
        assert call("POST /requests", ALICE, body={"instance_id": instance, "reason": "r"})[0] == 503
        assert stack.bus_events() == []
        # The sweep alarms on every run while the parameter stays unsigned; nothing is recorded.
        assert sweep(stack) == ["PolicyRejected"]
    assert stack.tags("user", "alice") == {}

    # A deployer signs a policy again: it takes effect, and its change is notified exactly once.
    changed = json.loads(json.dumps(POLICY))
    changed["rules"][1]["levels"][0]["approvers"] = [SECURITY]
    set_policy(stack, changed)
    assert sweep(stack) == ["PolicyChanged"]
    assert sweep(stack) == []
    assert call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "r"})[0] == 201
    # The POST finds the change recorded already.
    assert [n["attributes"]["event_type"] for n in stack.notifications()] == ["AccessRequested"]


def test_the_policy_change_is_recorded_by_the_first_write_after_it(native: Stack) -> None:
    stack = native
    changed = json.loads(json.dumps(POLICY))
    changed["rules"][0]["max_duration_minutes"] = 20
    set_policy(stack, changed)
    assert call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "r"})[0] == 201
    notes = stack.notifications()
    [note] = [n for n in notes if n["attributes"]["event_type"] == "PolicyChanged"]
    assert note["message"]["source"] == stack.settings.approval_policy_parameter
    assert note["message"]["parameter_version"] == 2
    assert [r["name"] for r in note["message"]["rules"]] == ["prod", "default"]
    assert sweep(stack) == []  # recorded once, by whoever wrote first


# ---------------------------------------------------------------------------------------- (b) forged record
def test_a_forged_approved_record_and_a_direct_grant_invocation_are_denied(native: Stack) -> None:
    stack = native
    request_id = create(stack, tags=PROD, duration_minutes=20)
    pending = store(stack).get(request_id)
    assert pending is not None
    now = stack.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    approvals = tuple(Approval(a, level, now) for a, level in ((BOB, 0), (CAROL, 0), (SECURITY, 1)))
    forged = replace(
        pending,
        status=RequestStatus.APPROVED,
        approvals=approvals,
        approver_arns=tuple(a.approver_arn for a in approvals),
        approved_at=now,
        version=pending.version + 1,
    )
    # A DynamoDB writer puts the record, then invokes the grant function with the matching event.
    stack.client("dynamodb").put_item(TableName=stack.settings.requests_table, Item=to_item(forged))
    event = stack.event(forged.to_access_approved())
    outcome = handler("grant_access")(event, CONTEXT)
    assert denial_codes(outcome) == ["approval_not_signed"]
    assert "no approval signature" in outcome["denials"][0]["message"]

    # A MAC copied from another, really approved request does not fit this record.
    other = create(stack)
    assert approve(other, BOB)[0] == 200
    real = store(stack).get(other)
    assert real is not None
    assert real.approval_mac
    second = replace(forged, request_id=create(stack, tags=PROD), approval_mac=real.approval_mac)
    stack.client("dynamodb").put_item(TableName=stack.settings.requests_table, Item=to_item(second))
    outcome = handler("grant_access")(stack.event(second.to_access_approved()), CONTEXT)
    assert denial_codes(outcome) == ["approval_not_signed"]
    assert "not signed by SessionGate's request API" in outcome["denials"][0]["message"]

    assert stack.tags("user", "alice") == {}
    grants = [stack.engine().ledger.get_grant(r.grant_id) for r in (forged, second)]
    assert [g.status for g in grants if g] == [GrantStatus.DENIED, GrantStatus.DENIED]
    denied = [n for n in stack.notifications() if n["attributes"]["event_type"] == "AccessDenied"]
    assert len(denied) == 2


# ---------------------------------------------------------------------------------------- (c) re-check
def test_approvals_that_do_not_satisfy_the_rule_are_denied_at_grant(native: Stack) -> None:
    stack = native
    # Approved under today's prod rule (two leads + security); before the grant runs, the deployers
    # sign a stricter rule (a second security approval): the approvals of record no longer suffice.
    request_id = create(stack, tags=PROD, duration_minutes=20)
    approved_to_the_end(stack, request_id)
    stricter = json.loads(json.dumps(POLICY))
    stricter["rules"][0]["levels"][1]["min_approvals"] = 2
    set_policy(stack, stricter)
    [outcome] = grant_from_bus(stack)
    assert denial_codes(outcome) == ["approval_insufficient"]
    assert "level 2 (security)" in outcome["denials"][0]["message"]
    assert stack.tags("user", "alice") == {}


def test_a_signed_record_with_too_few_approvers_is_denied_at_grant(native: Stack) -> None:
    """Even a record the request API signed (a bug, or a policy it read wrongly) must satisfy the rule."""
    stack = native
    request_id = create(stack, tags=PROD, duration_minutes=20)
    pending = store(stack).get(request_id)
    assert pending is not None
    now = stack.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    one = replace(
        pending,
        status=RequestStatus.APPROVED,
        approvals=(Approval(DAVE, 0, now),),
        approver_arns=(DAVE,),
        approved_at=now,
        version=pending.version + 1,
    )
    one = replace(one, approval_mac=Macs(stack.client("kms")).generate(APPROVAL_KEY, one.approval_message()))
    stack.client("dynamodb").put_item(TableName=stack.settings.requests_table, Item=to_item(one))
    outcome = handler("grant_access")(stack.event(one.to_access_approved()), CONTEXT)
    assert denial_codes(outcome) == ["approval_insufficient"]
    assert "level 1 (leads)" in outcome["denials"][0]["message"]


# ---------------------------------------------------------------------------------------- (d) re-tagging
@pytest.mark.parametrize(
    ("tags", "code"),
    [({"Environment": "dev"}, "rule_changed"), ({"SessionGate": "deny"}, "instance_excluded")],
)
def test_retagging_between_approval_and_grant_is_refused_at_grant(
    native: Stack, tags: dict[str, str], code: str
) -> None:
    stack = native
    request_id = create(stack, tags=PROD, duration_minutes=20)
    approved_to_the_end(stack, request_id)
    record = store(stack).get(request_id)
    assert record is not None
    assert dict(record.instance_tags) == PROD  # the snapshot the rule was chosen from
    stack.client("ec2").create_tags(
        Resources=[record.instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )
    [outcome] = grant_from_bus(stack)
    assert code in denial_codes(outcome)
    assert stack.tags("user", "alice") == {}


def test_a_deny_tag_refuses_the_request_and_its_approval(native: Stack) -> None:
    stack = native
    denied = stack.instance(tags={**PROD, "SessionGate": "deny"})
    status, out = call("POST /requests", ALICE, body={"instance_id": denied, "reason": "r"})
    assert (status, out["error"]) == (403, "instance_excluded")

    request_id = create(stack, tags=PROD, duration_minutes=20)
    record = store(stack).get(request_id)
    assert record is not None
    stack.client("ec2").create_tags(
        Resources=[record.instance_id], Tags=[{"Key": "SessionGate", "Value": "deny"}]
    )
    status, out = approve(request_id, BOB)
    assert (status, out["error"]) == (403, "instance_excluded")
    assert call("GET /requests/{id}", ALICE, request_id=request_id)[1]["request"]["status"] == "PENDING"


def test_a_change_back_to_an_earlier_policy_is_notified_by_the_sweep(native: Stack) -> None:
    """Another container recorded policy B meanwhile; this one, which recorded A, sees A again."""
    from sessiongate.access_requests.policy import ApprovalPolicy, VerifiedPolicy, policy_digest

    stack = native
    other = json.loads(json.dumps(POLICY))
    other["rules"][0]["max_duration_minutes"] = 20
    b = VerifiedPolicy(ApprovalPolicy.parse(other), policy_digest(other), "elsewhere", 3)
    assert store(stack).record_policy(b, now=stack.clock.now())
    assert sweep(stack) == ["PolicyChanged"]
    assert sweep(stack) == []


# ----------------------------------------------------------------------------- approval time is the record's
def test_a_direct_invocation_cannot_revive_a_stale_approval(native: Stack) -> None:
    """A signed approval never granted (its hand-over lost) goes stale after ApprovalStartWindowMinutes.
    A hand-made AccessApproved event that claims a fresh approval time must not revive it: the time is
    the record's (approval_stale then applies), never the event's."""
    stack = native
    request_id = create(stack, tags=PROD)
    approved_to_the_end(stack, request_id)
    [handed_over] = stack.bus_events()  # ... and lost: never delivered to the grant function
    record = store(stack).get(request_id)
    assert record is not None
    assert record.approval_mac
    stack.clock.advance(timedelta(minutes=stack.settings.approval_start_window_minutes + 5))

    detail = dict(handed_over["detail"])
    detail["not_before"] = detail["approved_at"] = stack.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    outcome = handler("grant_access")({**handed_over, "detail": detail}, CONTEXT)
    assert denial_codes(outcome) == ["origin_mismatch"]
    assert "approved_at" in outcome["denials"][0]["message"]
    assert stack.tags("user", "alice") == {}


# ------------------------------------------------------------------- (a') replay, re-created parameter
def recorded_serial(stack: Stack) -> int | None:
    return store(stack).policy_serial()


def recreate(stack: Stack, *values: str) -> None:
    """What an SSM admin can do: delete the parameter (SSM numbers versions from 1 again), then write
    ``values`` as its versions 1, 2, ..."""
    stack.native_client("ssm").delete_parameter(Name=stack.settings.approval_policy_parameter)
    for value in values:
        stack.put_raw_policy(value)
    stack.clock.advance(POLICY_CACHE)


def test_an_older_signed_policy_written_back_after_junk_versions_is_refused(native: Stack) -> None:
    stack = native
    instance = stack.instance(tags=PROD)
    # Once, the deployers signed a weaker policy (break-glass on, alice an approver): version 2.
    weaker = json.loads(json.dumps(POLICY))
    weaker["rules"][1]["break_glass"] = {"enabled": True, "max_duration_minutes": 60}
    weaker["rules"][1]["levels"][0]["approvers"].append(ALICE)
    set_policy(stack, weaker)
    old = stack.ssm_parameter()
    assert json.loads(old)["version"] == 2
    assert sweep(stack) == ["PolicyChanged"]
    # Then they signed today's policy (version 3); the first write records it.
    set_policy(stack, POLICY)
    status, out = call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "r"})
    assert status == 201
    pending = out["request"]["request_id"]
    assert call("GET /requests/{id}", BOB, request_id=pending)[0] == 200  # bob approves it
    current_serial = recorded_serial(stack)
    assert current_serial == json.loads(stack.ssm_parameter())["serial"]
    notified = [n["attributes"]["event_type"] for n in stack.notifications()]
    assert notified == ["PolicyChanged", "AccessRequested"]

    # An SSM admin deletes the parameter, writes one junk version, then the envelope signed for
    # version 2: its name, version and MAC all verify, but it is older than the policy in effect.
    recreate(stack, "junk", old)
    body = {"instance_id": instance, "reason": "x" * 30, "break_glass": True, "duration_minutes": 10}
    status, out = call("POST /requests", ALICE, body=body)
    assert (status, out["error"]) == (503, "policy_rejected")
    assert call("POST /requests", ALICE, body={"instance_id": instance, "reason": "r"})[0] == 503
    # Reads do not use it either (no rule: bob is nobody's approver now), and write nothing.
    assert call("GET /requests/{id}", BOB, request_id=pending)[0] == 403
    assert sweep(stack) == ["PolicyRejected"]
    assert recorded_serial(stack) == current_serial
    assert stack.bus_events() == []
    assert stack.tags("user", "alice") == {}

    # A deployer signs today's policy again (version 3 of the new parameter): accepted.
    set_policy(stack, POLICY)
    assert call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "r"})[0] == 201


def test_a_fresh_signature_after_a_re_create_is_accepted_and_the_older_one_is_not(native: Stack) -> None:
    stack = native
    first = stack.ssm_parameter()  # the fixture's policy, signed for version 1 and recorded
    assert recorded_serial(stack) == json.loads(first)["serial"]
    # The deployers delete and re-create the parameter: their new signature is for version 1 again,
    # with a higher serial; it is accepted (the SSM version is lower than nothing recorded).
    changed = json.loads(json.dumps(POLICY))
    changed["rules"][0]["max_duration_minutes"] = 20
    stack.native_client("ssm").delete_parameter(Name=stack.settings.approval_policy_parameter)
    set_policy(stack, changed)
    assert json.loads(stack.ssm_parameter())["version"] == 1
    assert call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "r"})[0] == 201
    assert recorded_serial(stack) == json.loads(stack.ssm_parameter())["serial"]
    assert json.loads(first)["serial"] < json.loads(stack.ssm_parameter())["serial"]

    # The envelope signed for version 1 of the old parameter, written back at version 1 of a
    # re-created one: refused on every use, including the grant-time re-check.
    request_id = create(stack, tags=PROD, duration_minutes=20)
    approved_to_the_end(stack, request_id)
    recreate(stack, first)
    [outcome] = grant_from_bus(stack)
    assert denial_codes(outcome) == ["policy_rejected"]
    assert "serial" in outcome["denials"][0]["message"]
    assert call("POST /requests", ALICE, body={"instance_id": stack.instance(), "reason": "r"})[0] == 503
    assert stack.tags("user", "alice") == {}


def test_the_recorded_serial_only_goes_up(native: Stack) -> None:
    """Another container's write path, with an older policy cached, cannot lower the recorded serial."""
    from sessiongate.access_requests.policy import (
        ApprovalPolicy,
        PolicyRejected,
        VerifiedPolicy,
        policy_digest,
    )

    stack = native
    highest = recorded_serial(stack)
    assert highest is not None
    name = stack.settings.approval_policy_parameter
    older = VerifiedPolicy(ApprovalPolicy.parse(POLICY), policy_digest(POLICY), name, 1, serial=highest - 1)
    with pytest.raises(PolicyRejected, match="serial"):
        store(stack).record_policy(older, now=stack.clock.now())
    # The same policy signed again later raises it, without a PolicyChanged (same document).
    again = replace(older, serial=highest + 1)
    assert not store(stack).record_policy(again, now=stack.clock.now())
    assert recorded_serial(stack) == highest + 1
    assert not store(stack).record_policy(again, now=stack.clock.now())


# ------------------------------------------------------------------ (e) the record at grant time
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("delete", "origin_not_found"),
        ("status", "origin_not_approved"),
        ("mac", "approval_not_signed"),
    ],
)
def test_the_request_record_still_decides_when_the_event_carries_the_signed_approval(
    native: Stack, change: str, code: str
) -> None:
    """The grant verifies the approval facts the event carries (no read of the record), and its one
    TransactWriteItems checks the record (ConditionCheck: still APPROVED, the same MAC). A record deleted,
    moved out of APPROVED or rewritten after the hand-over cancels the grant: denied, recorded, notified,
    nothing tagged, no slot lock, no schedule."""
    stack = native
    request_id = create(stack)
    assert approve(request_id, BOB)[0] == 200
    [event] = stack.bus_events()
    assert event["detail"]["approval"]["mac"]
    table, key = stack.settings.requests_table, {"request_id": {"S": request_id}}
    ddb = stack.client("dynamodb")
    if change == "delete":
        ddb.delete_item(TableName=table, Key=key)
    elif change == "status":
        ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "CANCELLED"}},
        )
    else:
        ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET approval_mac = :m",
            ExpressionAttributeValues={":m": {"S": "00"}},
        )
    stack.notifications()

    outcome = handler("grant_access")(event, CONTEXT)

    assert denial_codes(outcome) == [code]
    assert stack.tags("user", "alice") == {}
    ledger = stack.engine().ledger
    grant = ledger.get_grant(f"rq-{request_id}")
    assert grant is not None
    assert grant.status is GrantStatus.DENIED
    assert ledger.slot_holder(grant.principal_arn, 1) is None
    types = [n["attributes"]["event_type"] for n in stack.notifications()]
    assert "AccessDenied" in types
    assert "AccessGranted" not in types


def test_the_native_grant_reads_no_request_record(native: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = native
    request_id = create(stack)
    assert approve(request_id, BOB)[0] == 200
    reads: list[str] = []
    real_get = RequestStore.get

    def get(self: RequestStore, wanted: str) -> Any:
        reads.append(wanted)
        return real_get(self, wanted)

    monkeypatch.setattr(RequestStore, "get", get)
    [outcome] = grant_from_bus(stack)
    assert outcome["result"] == "granted", outcome
    assert reads == []
