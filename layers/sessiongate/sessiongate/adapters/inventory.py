"""EC2 and Systems Manager facts about the target instance."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from sessiongate.adapters.aws import error_code, raises_service_failures
from sessiongate.core.guardrails import InstanceFacts

_MISSING = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}


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
