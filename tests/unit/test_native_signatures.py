"""Pure parts of the signed policy and signed approvals, and the KMS adapter against botocore's model."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sessiongate.access_requests import policy as ap
from sessiongate.access_requests.records import Approval, RequestStatus
from sessiongate.adapters.kms import ALGORITHM, Macs, MacUnavailable
from sessiongate.core.identity import PrincipalType
from tests.support.people import BOB, CAROL, DAVE, POLICY, SECURITY, make_request
from tests.support.values import ACCOUNT, BREAK_GLASS_APPROVER

APPROVED = make_request(
    status=RequestStatus.APPROVED,
    approvals=(
        Approval(BOB, 0, "2026-11-24T09:01:00Z"),
        Approval(CAROL, 0, "2026-11-24T09:02:00Z"),
        Approval(SECURITY, 1, "2026-11-24T09:03:00Z"),
    ),
    approver_arns=(BOB, CAROL, SECURITY),
    approved_at="2026-11-24T09:03:00Z",
    instance_tags=(("Environment", "prod"),),
)

# Every fact the grant uses: changing any of them must change what the approval MAC binds.
BOUND = {
    "request_id": "fedcba9876543210fedcba9876543210",
    "account": "210987654321",
    "instance_id": "i-0ffffffffffffffff",
    "principal_type": PrincipalType.ROLE,
    "principal_name": "bob",
    "principal_arn": BOB,
    "requester_arn": BOB,
    "approver_arns": (BOB, CAROL),
    "approvals": (Approval(DAVE, 0, "2026-11-24T09:01:00Z"),),
    "duration_minutes": 60,
    "approved_at": "2026-11-24T09:04:00Z",
    "break_glass": True,
    "rule": "default",
    "instance_tags": (("Environment", "dev"),),
    "extends": "0123456789abcdef0123456789abcdef",
}


@pytest.mark.parametrize("name", sorted(BOUND))
def test_the_approval_mac_binds_every_fact_the_grant_uses(name: str) -> None:
    assert replace(APPROVED, **{name: BOUND[name]}).approval_message() != APPROVED.approval_message()


def test_the_approval_mac_ignores_what_the_grant_does_not_use() -> None:
    later = replace(APPROVED, version=7, emitted_at="2026-11-24T09:05:00Z", comment="ok", history=())
    assert later.approval_message() == APPROVED.approval_message()
    assert APPROVED.approval_message().startswith(b"sessiongate-approval-v2\n")


def test_policy_and_approval_macs_are_domain_separated() -> None:
    assert ap.policy_message(POLICY, "/p", 1, 5).startswith(b"sessiongate-approval-policy-v1\n")
    assert ap.policy_message(POLICY, "/p", 1, 5) != ap.policy_message(POLICY, "/p", 2, 5)
    assert ap.policy_message(POLICY, "/p", 1, 5) != ap.policy_message(POLICY, "/q", 1, 5)
    # The signer's serial is bound too (an older signature cannot pass for a newer one).
    assert ap.policy_message(POLICY, "/p", 1, 5) != ap.policy_message(POLICY, "/p", 1, 6)
    # The same document in another key order or spacing is the same policy.
    shuffled = json.loads(json.dumps(POLICY, indent=3), object_pairs_hook=lambda kv: dict(reversed(kv)))
    assert ap.policy_message(shuffled, "/p", 1, 5) == ap.policy_message(POLICY, "/p", 1, 5)


def _envelope(**changes: object) -> str:
    value = {"policy": POLICY, "parameter": "/p", "version": 1, "serial": 1, "mac": "AAAA", "key_id": "k"}
    value.update(changes)
    return json.dumps({k: v for k, v in value.items() if v is not None})


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        json.dumps(POLICY),  # a bare policy: unsigned
        json.dumps({"policy": POLICY, "mac": "AAAA"}),  # no parameter, version, key
        _envelope(version="1"),
        _envelope(version=True),
        _envelope(policy=[]),
        _envelope(x=1),
        _envelope(serial=None),  # no serial: signed before replays were refused (or not signed)
        _envelope(serial="1"),
        _envelope(serial=True),
    ],
)
def test_anything_but_a_signed_envelope_is_rejected(value: str) -> None:
    with pytest.raises(ap.PolicyRejected):
        ap.open_envelope(value)


def test_a_well_formed_envelope_opens() -> None:
    assert ap.open_envelope(_envelope(serial=7)).serial == 7


def test_the_default_policy_names_nobody_without_approvers() -> None:
    assert ap.ApprovalPolicy.parse(ap.default_document(())).rules[0].levels[0].approvers == (ap.NOBODY,)


def prod() -> ap.Rule:
    rule = ap.ApprovalPolicy.parse(POLICY).rule_named("prod")
    assert rule is not None
    return rule


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({}, None),
        ({"approvals": APPROVED.approvals[:2]}, "level 2 (security)"),
        ({"approvals": (*APPROVED.approvals[:1], APPROVED.approvals[2])}, "level 1 (leads)"),
        ({"duration_minutes": 31}, "at most 30 minutes"),
        (
            {
                "approvals": (
                    APPROVED.approvals[0],
                    replace(APPROVED.approvals[0], at="x"),
                    APPROVED.approvals[2],
                )
            },
            "twice",
        ),
        ({"break_glass": True, "approver_arns": (BREAK_GLASS_APPROVER,)}, None),
        ({"break_glass": True, "approver_arns": (BREAK_GLASS_APPROVER,), "duration_minutes": 16}, "capped"),
        ({"break_glass": True, "approver_arns": (BOB,)}, "approver of record"),
    ],
)
def test_approvals_of_record_must_satisfy_the_rule(changes: dict[str, Any], why: str | None) -> None:
    found = ap.approvals_satisfy(
        prod(), replace(APPROVED, **changes), break_glass_approver=BREAK_GLASS_APPROVER
    )
    assert (found is None) if why is None else (found is not None and why in found)


# ---------------------------------------------------------------------------------------- KMS adapter
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0b0c0d0e-1111-2222-3333-444455556666"


@pytest.fixture
def kms() -> Any:
    return boto3.client("kms", region_name="us-east-1")


def _error(stub: Stubber, method: str, code: str) -> None:
    stub.add_client_error(method, service_error_code=code, http_status_code=400)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("KMSInvalidMacException", False),  # VerifyMac's answer to a wrong MAC
        ("DisabledException", MacUnavailable),
        ("NotFoundException", MacUnavailable),
        ("KMSInvalidStateException", MacUnavailable),
        ("InvalidKeyUsageException", MacUnavailable),
        ("AccessDeniedException", MacUnavailable),
        ("KMSInternalException", "raised"),  # transient: retried by Lambda
    ],
)
def test_verify_classifies_kms_errors(kms: Any, code: str, outcome: object) -> None:
    with Stubber(kms) as stub:
        _error(stub, "verify_mac", code)
        macs = Macs(kms)
        mac = base64.b64encode(b"m" * 32).decode()
        if outcome is False:
            assert macs.verify(KEY, b"message", mac) is False
        elif outcome is MacUnavailable:
            with pytest.raises(MacUnavailable):
                macs.verify(KEY, b"message", mac)
        else:
            with pytest.raises(kms.exceptions.KMSInternalException):
                macs.verify(KEY, b"message", mac)


def test_generate_and_verify_send_what_the_model_declares(kms: Any) -> None:
    with Stubber(kms) as stub:
        params = {"KeyId": KEY, "Message": b"m", "MacAlgorithm": ALGORITHM}
        stub.add_response(
            "generate_mac", {"Mac": b"\x01" * 32, "MacAlgorithm": ALGORITHM, "KeyId": KEY}, params
        )
        stub.add_response(
            "verify_mac",
            {"KeyId": KEY, "MacValid": True, "MacAlgorithm": ALGORITHM},
            {**params, "Mac": b"\x01" * 32},
        )
        macs = Macs(kms)
        mac = macs.generate(KEY, b"m")
        assert macs.verify(KEY, b"m", mac) is True
        # Not base64, or empty: never sent to KMS.
        assert macs.verify(KEY, b"m", "%%%") is False
        assert macs.verify(KEY, b"m", "") is False


def test_key_settings_are_checked_at_cold_start() -> None:
    from sessiongate.errors import ConfigError
    from sessiongate.settings import Settings
    from sessiongate.wiring import REQUIRED, build_engine

    assert {"approval_key_id", "approval_policy_key_id"} <= set(REQUIRED["requests"])
    with pytest.raises(ConfigError, match="SESSIONGATE_APPROVAL_KEY must be a KMS key"):
        Settings.from_env({"SESSIONGATE_APPROVAL_KEY": "alias/mine"})
    with pytest.raises(ConfigError, match="default approvers must be ARN patterns"):
        Settings.from_env({"SESSIONGATE_DEFAULT_APPROVERS": "bob"})
    # The grant function verifies native approvals: without the keys it refuses to start.
    native = Settings(account_id=ACCOUNT, requests_table="t", break_glass_approver_arn=BREAK_GLASS_APPROVER)
    with pytest.raises(ConfigError, match="SESSIONGATE_APPROVAL_KEY and SESSIONGATE_APPROVAL_POLICY_KEY"):
        build_engine(native, client=lambda service: None)


def test_policy_notifications_are_readable() -> None:
    from sessiongate.core.notifications import render

    changed = {
        "at": "2026-11-24T09:00:00Z",
        "account": ACCOUNT,
        "digest": "ab" * 32,
        "source": "/sessiongate/approval-policy",
        "parameter_version": 4,
        "rules": [
            {"name": "prod", "levels": [{"approvers": [BOB, CAROL], "min_approvals": 2}], "break_glass": True}
        ],
    }
    email = render("PolicyChanged", changed)["email"]
    assert "SessionGate - Approval policy changed" in email
    assert "(/sessiongate/approval-policy, version 4, sha256 abab" in email
    assert f"  - prod: 2 of {BOB}, {CAROL}, break-glass allowed" in email
    rejected = {"at": "x", "account": ACCOUNT, "parameter": "/p", "problem": "not signed"}
    email = render("PolicyRejected", rejected)["email"]
    assert "The approval policy parameter /p failed verification:\n  not signed" in email
    assert "sessiongate policy sign POLICY.json" in email
    assert "None" not in email
