"""What the run created, written after every creation so a later ``--teardown-only`` can clean up."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class State:
    stack_name: str
    region: str
    account: str
    sam: str
    stack: bool = False  # sam deploy was started: the stack may exist
    user_name: str | None = None
    queue_url: str | None = None
    subscription_arn: str | None = None
    # DynamoDB tables with DeletionPolicy Retain: CloudFormation keeps them, the teardown deletes them.
    retained_tables: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.stack or self.user_name or self.queue_url or self.subscription_arn or self.retained_tables
        )


def save(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, path)


def load(path: Path) -> State | None:
    if not path.exists():
        return None
    return State(**json.loads(path.read_text()))


def forget(path: Path, state: State) -> None:
    """Keep the file while anything is left to delete; remove it once everything is gone."""
    if state.empty():
        path.unlink(missing_ok=True)
    else:
        save(path, state)
