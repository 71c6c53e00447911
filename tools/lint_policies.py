"""Audit every IAM policy of the template with parliament; fail on any finding not allowed below.

Run with the scanner venv (make scan): ``.venv-scan/bin/python tools/lint_policies.py build/policies``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# (issue, file pattern, detail pattern, reason). Nothing else may be reported.
ALLOWED = [
    (
        "UNKNOWN_CONDITION_FOR_ACTION",
        r".*AllowStartSsmSessionBasedOnIamTags.*",
        r".*ssm:SessionDocumentAccessCheck.*ssm:StartSession.*",
        "ssm:SessionDocumentAccessCheck is documented for ssm:StartSession (Session Manager: enforce a "
        "session document permission check); parliament's bundled action data predates the key.",
    ),
    (
        "RESOURCE_MISMATCH",
        r".*AllowStartSsmSessionBasedOnIamTags.*",
        r".*ssmmessages:OpenDataChannel.*",
        "AWS scopes ssmmessages:OpenDataChannel to session ARNs: the Session Manager end-user policy "
        "(Sample IAM policies for Session Manager) and AWS managed policies such as "
        "AmazonEKSLocalOutpostServiceRolePolicy (arn:aws:ssm:*:*:session/*); parliament's bundled action "
        "data predates that resource type.",
    ),
    (
        "RESOURCE_MISMATCH",
        r"(PublishEvents|ExportHistory)FunctionRole\..*",
        r".*table/\*/stream/\*.*",
        "The two streams' ARNs (GetAtt <table>.StreamArn) end in the stream label, a timestamp with colons "
        "(arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/2026-01-01T00:00:00.000, DynamoDB API "
        "Reference, StreamDescription.StreamLabel); parliament splits ARNs on every colon and so misreads "
        "them as not matching table/*/stream/*.",
    ),
    (
        "RESOURCE_STAR",
        r".*\.key-policy\.json",
        r".*",
        'In a KMS key policy, Resource "*" means the key the policy is attached to and nothing else '
        "(AWS KMS key policies); every key policy must say so.",
    ),
    (
        "INVALID_ARN",
        r"RequestApi\.resource-policy\.json",
        r".*",
        'In an API Gateway resource policy, "execute-api:/*" is the documented short form of every stage, '
        "method and path of the API the policy is attached to, made a full ARN when saved (AWS doc "
        '"API Gateway resource policy examples"); the API\'s own id cannot be written into its body.',
    ),
]


def main(argv: list[str]) -> int:
    from parliament import analyze_policy_string, config, enhance_finding

    directory = Path(argv[0] if argv else "build/policies")
    files = sorted(directory.glob("*.json"))
    if not files:
        print(f"lint_policies: no policies under {directory}", file=sys.stderr)
        return 2
    reported = allowed = 0
    for path in files:
        policy = analyze_policy_string(path.read_text(), str(path), config=config)
        for finding in map(enhance_finding, policy.findings):
            detail = str(finding.detail)
            if any(
                finding.issue == issue
                and re.fullmatch(file_re, path.name)
                and re.fullmatch(detail_re, detail)
                for issue, file_re, detail_re, _ in ALLOWED
            ):
                allowed += 1
                continue
            reported += 1
            print(f"{path.name}: {finding.severity} {finding.issue}: {detail}")
    print(f"parliament: {len(files)} policies, {reported} finding(s), {allowed} allowed with a reason")
    return 1 if reported else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
