"""Write what the scanners read: the SAM-transformed template and every IAM policy, resolved.

    python -m tools.render_template build/
- ``build/template.cfn.json``: template.yaml after the SAM transform (offline), for checkov;
- ``build/policies/<resource>.<policy>.json``: each IAM policy (identity policies, KMS key policies,
  SNS topic, SQS queue, DynamoDB table and REST API resource policies) with intrinsics resolved for a
  sample stack (with deployers, an organization and an identity store, so every statement is present),
  and the SCP samples under docs/, for parliament.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from sandbox import cfn

ACCOUNT, REGION = "123456789012", "us-east-1"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or ["build"])[0])
    (out / "policies").mkdir(parents=True, exist_ok=True)
    (out / "template.cfn.json").write_text(
        json.dumps(cfn.transform({}, ACCOUNT, REGION), indent=1, default=str)
    )
    stack = cfn.load(
        "sessiongate",
        ACCOUNT,
        REGION,
        {
            "DeployerArns": f"arn:aws:iam::{ACCOUNT}:role/deployer",
            # An organization: the request API's resource policy has its Allow statement too.
            "OrganizationId": "o-exampleorg1",
            # Approver groups of IAM Identity Center: the identity-store statements are present too.
            "IdentityStoreId": "d-1234567890",
            "IdentityStoreRoleArn": f"arn:aws:iam::{ACCOUNT}:role/sessiongate/SessionGateIdentityStoreReader",
            # Session logging (issue 17): the preferences reads, the log key and the log writer policy.
            "RequireSessionLogging": "true",
            "CreateSessionLogging": "true",
        },
    )
    count = 0
    for resource in stack.resources.values():
        documents = []
        if resource.type == "AWS::IAM::Role":
            documents = [
                (p["PolicyName"], p["PolicyDocument"]) for p in resource.properties.get("Policies", [])
            ]
        elif resource.type == "AWS::IAM::ManagedPolicy":
            documents = [("policy", resource.properties["PolicyDocument"])]
        elif resource.type == "AWS::KMS::Key":
            documents = [("key-policy", resource.properties["KeyPolicy"])]
        elif resource.type in ("AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
            documents = [("resource-policy", resource.properties["PolicyDocument"])]
        elif resource.type == "AWS::ApiGateway::RestApi" and "Body" in resource.properties:
            # (the chat API has none: Slack's signature is checked by its function, issue 19)
            policy = resource.properties["Body"].get("x-amazon-apigateway-policy")
            documents = [("resource-policy", policy)] if policy else []
        elif resource.type == "AWS::SecretsManager::ResourcePolicy":
            documents = [("resource-policy", resource.properties["ResourcePolicy"])]
        elif resource.type == "AWS::DynamoDB::Table" and "ResourcePolicy" in resource.properties:
            documents = [("resource-policy", resource.properties["ResourcePolicy"]["PolicyDocument"])]
        for name, document in documents:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{resource.logical_id}.{name}")
            (out / "policies" / f"{safe}.json").write_text(
                json.dumps({"Version": "2012-10-17", **document}, indent=1)
            )
            count += 1
    for sample in sorted((cfn.ROOT / "docs").glob("scp-*.json")):
        (out / "policies" / f"docs.{sample.name}").write_text(sample.read_text())
        count += 1
    print(f"wrote {out / 'template.cfn.json'} and {count} policies under {out / 'policies'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
