"""EC2 and Systems Manager facts about the target instance, and its slot tags (instance binding)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from sessiongate.adapters.aws import error_code, raises_service_failures
from sessiongate.core.guardrails import InstanceFacts
from sessiongate.core.ports import InstanceGone as InstanceGone
from sessiongate.core.ports import TagLimitExceeded as TagLimitExceeded

_MISSING = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
# EC2 answers TagLimitExceeded when a resource would carry more than 50 user tags (EC2 API Reference,
# "Common client error codes": TagLimitExceeded; "Tag your Amazon EC2 resources": 50 tags per resource).
_TAG_LIMIT = "TagLimitExceeded"
# Every instance that can still be started a session on, or soon could be (the sweep's read).
_NOT_TERMINATED = ["pending", "running", "stopping", "stopped", "shutting-down"]


@raises_service_failures
class Inventory:
    def __init__(self, ec2: Any, ssm: Any | None) -> None:
        self._ec2 = ec2
        self._ssm = ssm

    def describe(self, instance_id: str, *, check_managed: bool) -> InstanceFacts | None:
        try:
            reservations = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                return None
            raise
        instances = [i for r in reservations for i in r.get("Instances", [])]
        if not instances:
            return None
        instance = instances[0]
        managed = self._is_managed(instance_id) if check_managed else None
        return InstanceFacts(
            instance_id=instance_id,
            state=instance.get("State", {}).get("Name", "unknown"),
            tags={t["Key"]: t["Value"] for t in instance.get("Tags", [])},
            ssm_managed=managed,
        )

    def tag_instance(self, instance_id: str, tags: Mapping[str, str]) -> None:
        """CreateTags (overwrites a key's value). Raises InstanceGone or TagLimitExceeded."""
        try:
            self._ec2.create_tags(
                Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                raise InstanceGone(instance_id) from exc
            if error_code(exc) == _TAG_LIMIT:
                raise TagLimitExceeded(instance_id) from exc
            raise

    def untag_instance(self, instance_id: str, tags: Mapping[str, str]) -> bool:
        """DeleteTags of each key *with its value*: EC2 deletes a tag given with a value only if the
        tag's value matches (EC2 API Reference, "DeleteTags": "If you specify a tag key with a tag
        value, we delete the tag only if its value matches"), so a slot tag that names someone else by
        now is left alone. ``False`` when the instance no longer exists."""
        try:
            self._ec2.delete_tags(
                Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                return False
            raise
        return True

    def tagged_instances(self) -> list[InstanceFacts]:
        """Every instance not terminated, with its tags (DescribeInstances pages of up to 1,000). Not a
        ``tag-key`` filter: filter values are case-sensitive and a drifted key may be spelled in any case."""
        found: list[InstanceFacts] = []
        pages = self._ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": _NOT_TERMINATED}],
            PaginationConfig={"PageSize": 1000},
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                found += [
                    InstanceFacts(
                        instance_id=i["InstanceId"],
                        state=i.get("State", {}).get("Name", "unknown"),
                        tags={t["Key"]: t["Value"] for t in i.get("Tags", [])},
                    )
                    for i in reservation.get("Instances", [])
                ]
        return found

    def _is_managed(self, instance_id: str) -> bool:
        if self._ssm is None:
            return False
        try:
            info = self._ssm.describe_instance_information(
                Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
            ).get("InstanceInformationList", [])
        except ClientError as exc:
            # SSM answers InvalidInstanceId for an instance whose SSM Agent never registered (or is not
            # running, or that the caller may not see): not a managed node (botocore SSM model,
            # "InvalidInstanceId"; DescribeInstanceInformation in the SSM API Reference).
            if error_code(exc) == "InvalidInstanceId":
                return False
            raise
        return any(i.get("InstanceId") == instance_id for i in info)
