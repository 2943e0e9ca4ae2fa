"""The state file: the one place where a running stack's addresses are written down."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StackState:
    supervisor_pid: int
    kubeconfig: str = ""
    database_url: str = ""
    redis_url: str = ""
    datastorage_url: str = ""
    logs: str = ""
    start_seconds: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        staged = path.with_name(path.name + ".partial")
        staged.write_text(json.dumps(asdict(self), indent=2))
        os.replace(staged, path)

    @classmethod
    def read(cls, path: Path) -> StackState:
        return cls(**json.loads(path.read_text()))
