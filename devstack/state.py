"""The state file: the one place where a running stack's addresses are written down."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from processes.child import is_alive, log_tail


@dataclass(frozen=True)
class StackState:
    supervisor_pid: int
    kubeconfig: str = ""
    database_url: str = ""
    redis_url: str = ""
    datastorage_url: str = ""
    # The "node" component: a one-node cluster of its own (envtest.node), whose Pods reach the host at
    # node_host_address, where its own PostgreSQL and Redis also listen (URLs as the Pods use them).
    node_kubeconfig: str = ""
    node_host_address: str = ""
    node_database_url: str = ""
    node_redis_url: str = ""
    node_images: dict[str, str] = field(default_factory=dict)  # "application", "opa": image references
    logs: str = ""
    start_seconds: dict[str, float] = field(default_factory=dict)
    # Every server of the stack, by name: its pid and its log, so a user can tell when one died.
    pids: dict[str, int] = field(default_factory=dict)
    log_files: dict[str, str] = field(default_factory=dict)

    def death_report(self) -> str | None:
        """None while the supervisor and every server run; else which one is gone, with its log tail."""
        watched = {"stack supervisor": self.supervisor_pid, **self.pids}
        for name, pid in watched.items():
            if not is_alive(pid):
                log = Path(self.log_files.get(name, Path(self.logs) / "stack.log"))
                return f"the shared stack's {name} (pid {pid}) is gone; last lines of {log}:\n{log_tail(log)}"
        return None

    def write(self, path: Path) -> None:
        staged = path.with_name(path.name + ".partial")
        staged.write_text(json.dumps(asdict(self), indent=2))
        os.replace(staged, path)

    @classmethod
    def read(cls, path: Path) -> StackState:
        return cls(**json.loads(path.read_text()))
