"""S3 objects of the history export (issue 17) and the table scan of its backfill."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sessiongate.adapters.aws import raises_service_failures


@raises_service_failures
class HistoryStore:
    """Writes history objects to the export bucket. The bucket encrypts with its KMS key by default
    (SSE-KMS, bucket key); the request names the key as well, so an object is never written under
    another key (the bucket policy refuses puts that do not name it). A checksum is sent: S3 requires
    one on a PutObject into a bucket with a default Object Lock retention ("Using S3 Object Lock",
    Amazon S3 User Guide)."""

    def __init__(self, s3: Any, bucket: str, kms_key_arn: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key_arn = kms_key_arn

    def put(self, key: str, body: bytes) -> None:
        extra: dict[str, Any] = {}
        if self._key_arn:
            extra = {
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": self._key_arn,
                "BucketKeyEnabled": True,
            }
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType="application/x-ndjson",
            ChecksumAlgorithm="SHA256",
            **extra,
        )


@raises_service_failures
class TableScanner:
    """Every item of a table (the backfill's source: ``history.backfill_records`` keeps what it needs)."""

    def __init__(self, dynamodb: Any) -> None:
        self._db = dynamodb

    def __call__(self, table: str) -> Iterator[dict[str, Any]]:
        return iter(self.items(table))

    def items(self, table: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self._db.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            out += page.get("Items", [])
        return out
