"""KMS HMAC keys: SessionGate signs what only it (or its deployers) may say, and checks it later.

Two keys (template.yaml), each with a key policy that names exactly who may do what:
- ``ApprovalPolicyKey``: the deployers GenerateMac (``sessiongate policy sign``); the request API and
  grant roles only VerifyMac the approval policy parameter;
- ``ApprovalKey``: only the request API role GenerateMacs an approval; only the grant role VerifyMacs it.

KMS takes messages of at most 4096 bytes (GenerateMac ``Message``, botocore's model), so callers MAC a
short domain-separated digest of what they bind (:func:`sessiongate.access_requests.records.signed_message`).
"""

from __future__ import annotations

import base64
from typing import Any

from botocore.exceptions import ClientError

from sessiongate.adapters.aws import error_code

ALGORITHM = "HMAC_SHA_256"
# The key cannot be used at all (wrong key, disabled, deleted, not allowed): nothing it would sign is
# trustworthy, so callers fail closed. (VerifyMac errors: AWS KMS API Reference, "VerifyMac".)
UNUSABLE = frozenset(
    {
        "AccessDeniedException",
        "DisabledException",
        "InvalidKeyUsageException",
        "KMSInvalidStateException",
        "NotFoundException",
        "InvalidArnException",
    }
)


class MacUnavailable(Exception):
    """The key cannot produce or check a MAC (permanent: the caller refuses what it would bind)."""


class Macs:
    def __init__(self, kms: Any) -> None:
        self._kms = kms

    def generate(self, key_id: str, message: bytes) -> str:
        """The base64 HMAC-SHA-256 of ``message`` under ``key_id``."""
        try:
            mac = self._kms.generate_mac(KeyId=key_id, Message=message, MacAlgorithm=ALGORITHM)["Mac"]
        except ClientError as exc:
            if error_code(exc) in UNUSABLE:
                raise MacUnavailable(f"KMS key {key_id} cannot generate a MAC: {error_code(exc)}") from None
            raise
        return base64.b64encode(mac).decode()

    def verify(self, key_id: str, message: bytes, mac: str) -> bool:
        """``True`` only if KMS says ``mac`` is ``message``'s MAC under ``key_id``."""
        try:
            raw = base64.b64decode(mac.encode(), validate=True)
        except (ValueError, UnicodeEncodeError):
            return False
        if not raw:
            return False
        try:
            answer = self._kms.verify_mac(KeyId=key_id, Message=message, Mac=raw, MacAlgorithm=ALGORITHM)
        except ClientError as exc:
            if error_code(exc) == "KMSInvalidMacException":
                return False
            if error_code(exc) in UNUSABLE:
                raise MacUnavailable(f"KMS key {key_id} cannot verify a MAC: {error_code(exc)}") from None
            raise
        return answer.get("MacValid") is True
