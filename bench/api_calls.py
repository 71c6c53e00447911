"""AWS API calls per grant and per revoke, counted with botocore ``before-call`` hooks in the sandbox.

One Change Manager request goes the whole way (adapter -> grant -> Scheduler -> revoke); the calls
each handler invocation made are tallied by operation (SSM calls are served by the sandbox's fake
and counted there). Goals: grant <= 7, revoke <= 5.

    python -m bench.api_calls
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from datetime import timedelta

GOALS = {"GrantAccessFunction": 7, "RevokeAccessFunction": 5}


def measure() -> dict[str, Counter[str]]:
    warnings.filterwarnings("ignore")
    from sandbox.world import ACCOUNT, REGION, World

    with World() as world:
        iam, ssm = world.client("iam"), world.ssm
        iam.create_user(UserName="alice")
        approver = iam.create_user(UserName="bob")["User"]["Arn"]
        iam.create_group(GroupName="SessionGateApprovers")  # the change template's approver group
        iam.add_user_to_group(GroupName="SessionGateApprovers", UserName="bob")
        instance = world.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[
            "Instances"
        ][0]["InstanceId"]
        ssm.managed.add(instance)
        execution = ssm.start_change_request_execution(
            requester_arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
            now=world.clock.now(),
            DocumentName="AllowSsmSessionStartTemplate",
            Runbooks=[
                {
                    "DocumentName": "AllowSsmSessionStartRunbook",
                    "Parameters": {
                        "InstanceId": [instance],
                        "PrincipalType": ["User"],
                        "PrincipalName": ["alice"],
                        "ValidityMinutes": ["10"],
                    },
                }
            ],
        )["AutomationExecutionId"]
        ssm.send_automation_signal(
            signer_arn=approver, now=world.clock.now(), AutomationExecutionId=execution, SignalType="Approve"
        )
        event = ssm.status_event(execution, account=ACCOUNT, region=REGION, now=world.clock.now())
        world.put_event(event)
        world.settle()
        world.advance(timedelta(minutes=11))
        # The same approval delivered again, then the same revocation.
        world.put_event(event)
        world.settle()
        payload = {"grant_id": f"cm-{execution}", "reason": "expired"}
        world.invoke(world.function_arn("RevokeAccessFunction"), payload, trigger="duplicate")
        per: dict[str, Counter[str]] = {}
        seen: Counter[str] = Counter()
        for invocation in world.invocations:
            seen[invocation.function] += 1
            label = (
                invocation.function if seen[invocation.function] == 1 else f"{invocation.function} (again)"
            )
            per[label] = invocation.calls
        return per


def main() -> int:
    per = measure()
    ok = True
    for function, calls in per.items():
        total = sum(calls.values())
        goal = GOALS.get(function)
        mark = "" if goal is None else f" (goal <= {goal})"
        print(f"{function}: {total} calls{mark}")
        for operation, n in sorted(calls.items()):
            print(f"    {operation:<44}{n:>3}")
        if goal is not None and total > goal:
            ok = False
    grant = sum(per["GrantAccessFunction"].values())
    revoke = sum(per["RevokeAccessFunction"].values())
    dup = sum(per.get("GrantAccessFunction (again)", Counter()).values())
    print(
        f"api calls: grant {grant} (goal 7), revoke {revoke} (goal 5), duplicate delivery {dup} "
        f"-> {'OK' if ok else 'GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
