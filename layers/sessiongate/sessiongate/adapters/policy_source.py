"""The approval policy in effect, read from SSM Parameter Store and verified (signed envelope, serial).

Not Powertools' ``SSMProvider``: its ``get`` answers the value only, and the MAC binds the parameter's
``Version`` (GetParameter's ``Parameter.Version``) as well; its cache also runs on the wall clock, while
the re-read interval here follows the injected :class:`Clock` (the sandbox and tests move it). The cache
below is one verified result per read (at most one GetParameter a minute), the recorded serial is
checked on every use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sessiongate.access_requests.groups import Membership, bind
from sessiongate.access_requests.policy import (
    ApprovalPolicy,
    Envelope,
    PolicyError,
    PolicyRejected,
    VerifiedPolicy,
    check_serial,
    default_document,
    new_serial,
    open_envelope,
    policy_digest,
)
from sessiongate.adapters.kms import Macs, MacUnavailable
from sessiongate.adapters.request_store import RequestStore
from sessiongate.clock import Clock

POLICY_CACHE = timedelta(seconds=60)
STACK_DEFAULT = "stack default"


class PolicySource:
    """The approval policy in effect, verified, re-read at most once a minute.

    No parameter configured: the stack's default policy (``default_approvers``, from the stack's
    NativeApproverArns), which changes only by a deploy. A parameter: it must hold a signed envelope
    whose MAC KMS verifies with ``key_id`` (ApprovalPolicyKey, which only the deployers can sign with),
    and whose signed serial is not below the highest the request API recorded in ``store`` (re-read at
    most once a minute too, and checked on every use, cached or not: a replay of an older signed policy
    at a deleted and re-created parameter); anything else raises :class:`PolicyRejected` (every request
    refused). Reading the recorded serial never writes (GET requests use this too).
    """

    def __init__(
        self,
        ssm: Any,
        parameter_name: str,
        clock: Clock,
        *,
        macs: Macs | None = None,
        key_id: str = "",
        default_approvers: tuple[str, ...] = (),
        store: RequestStore | None = None,
        groups: Membership | None = None,
    ) -> None:
        self._groups = groups
        self._ssm = ssm
        self._store = store
        self._highest: tuple[datetime, int | None] | None = None
        self._name = parameter_name
        self._clock = clock
        self._macs = macs
        self._key_id = key_id
        self._default = default_approvers
        self._cached: tuple[datetime, VerifiedPolicy] | None = None

    def get(self) -> ApprovalPolicy:
        """The current policy; raises :class:`PolicyError` when it is missing or invalid (fail closed)."""
        return self.verified().policy

    def verified(self) -> VerifiedPolicy:
        now = self._clock.now()
        if self._cached is not None and now - self._cached[0] < POLICY_CACHE:
            verified = self._cached[1]
        else:
            verified = self._load()
            self._cached = (now, verified)
        if verified.serial is not None and self._store is not None:
            if self._highest is None or now - self._highest[0] >= POLICY_CACHE:
                self._highest = (now, self._store.policy_serial())
            highest = self._highest[1]
            if highest is not None:
                check_serial(verified.source, verified.serial, highest)
        return verified

    def _bound(self, document: object) -> ApprovalPolicy:
        """The parsed policy, its Identity Center groups answered by the identity store (if any)."""
        return bind(ApprovalPolicy.parse(document), self._groups)

    def _load(self) -> VerifiedPolicy:
        if not self._name:
            document: Any = default_document(self._default)
            return VerifiedPolicy(self._bound(document), policy_digest(document), STACK_DEFAULT)
        try:
            parameter = self._ssm.get_parameter(Name=self._name)["Parameter"]
        except self._ssm.exceptions.ParameterNotFound:
            raise PolicyError(f"the approval policy parameter {self._name} does not exist") from None
        signed = open_envelope(parameter["Value"])
        version = int(parameter["Version"])
        if (signed.parameter, signed.version) != (self._name, version):
            raise PolicyRejected(
                f"the approval policy was signed for {signed.parameter} version {signed.version}, but it is "
                f"{self._name} version {version} (written again outside `sessiongate policy sign --put`?)"
            )
        if self._macs is None or not self._key_id:
            raise PolicyRejected("no key to verify the approval policy (SESSIONGATE_APPROVAL_POLICY_KEY)")
        try:
            # Always our key: the envelope's key_id only tells a reader which key signed it.
            valid = self._macs.verify(self._key_id, signed.message(), signed.mac)
        except MacUnavailable as exc:
            raise PolicyRejected(f"the approval policy cannot be verified: {exc}") from None
        if not valid:
            raise PolicyRejected(
                f"the approval policy parameter {self._name} is not signed with SessionGate's policy key "
                "(changed outside `sessiongate policy sign`?)"
            )
        return VerifiedPolicy(
            self._bound(signed.policy),
            policy_digest(signed.policy),
            self._name,
            version,
            serial=signed.serial,
        )


def sign_policy(
    document: object, macs: Macs, key_id: str, *, parameter: str, version: int, serial: int | None = None
) -> Envelope:
    """The signed envelope of ``document`` for ``parameter`` at ``version`` (a deployer's ``sessiongate
    policy sign``; the sandbox and the tests sign through here too), with ``serial`` (default: the
    signer's clock, :func:`sessiongate.access_requests.policy.new_serial`). The document is validated with the
    parser the API uses first, so a signed policy is always usable."""
    ApprovalPolicy.parse(document)
    assert isinstance(document, Mapping)
    serial = new_serial(time.time()) if serial is None else serial
    unsigned = Envelope(document, parameter, version, "", key_id, serial)
    return replace(unsigned, mac=macs.generate(key_id, unsigned.message()))


def next_version(ssm: Any, parameter_name: str) -> int:
    """The version SSM will give the parameter's next write."""
    try:
        return int(ssm.get_parameter(Name=parameter_name)["Parameter"]["Version"]) + 1
    except ssm.exceptions.ParameterNotFound:
        return 1


def put_signed(ssm: Any, signed: Envelope) -> None:
    """Write a signed envelope to its parameter; if another write got there first the versions differ
    (and the API would refuse the policy), so this fails instead: check who wrote, then sign again.
    (Intelligent-Tiering: a policy over the 4 KB of a standard parameter becomes an advanced one.)"""
    answer = ssm.put_parameter(
        Name=signed.parameter, Value=signed.dumps(), Type="String", Overwrite=True, Tier="Intelligent-Tiering"
    )
    if int(answer["Version"]) != signed.version:
        raise PolicyError(
            f"{signed.parameter} was written by someone else meanwhile (now version {answer['Version']}, "
            f"signed for {signed.version}): check who, then sign again"
        )


def sign_and_put(document: object, macs: Macs, key_id: str, ssm: Any, parameter_name: str) -> Envelope:
    """Sign ``document`` for the parameter's next version and write it."""
    version = next_version(ssm, parameter_name)
    signed = sign_policy(document, macs, key_id, parameter=parameter_name, version=version)
    put_signed(ssm, signed)
    return signed
