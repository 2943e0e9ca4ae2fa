"""The SignalProcessing controller as a child process (`python -m controller`).

Used by `make run` and by every integration-suite worker, each with its own
namespaces, policy directory, OPA and ports. Ready means the controller
itself listens on its reserved metrics, health and readiness ports and the
health endpoint answers (policies loaded, kopf started). Ready here is not
`/readyz`: a spec may start a controller whose readiness gates stay closed. `kill()` is there to test
crash recovery.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from processes.child import ChildProcess, http_ok
from processes.ports import reserve_port

_START_TIMEOUT_SECONDS = 60.0
# kopf runs its cleanup on SIGTERM, which flushes the audit buffer.
_STOP_TIMEOUT_SECONDS = 30.0


class ControllerProcess(ChildProcess):
    def __init__(self, *, settings: Mapping[str, str], log_path: Path) -> None:
        metrics, health, readiness = reserve_port(), reserve_port(), reserve_port()
        self.metrics_port = metrics.port
        self.health_port = health.port
        self.readiness_port = readiness.port
        super().__init__(
            "controller",
            [sys.executable, "-m", "controller"],
            log_path=log_path,
            reservations=[metrics, health, readiness],
            is_ready=lambda: http_ok(self.health_url),
            environment={
                **os.environ,
                "METRICS_PORT": str(self.metrics_port),
                "HEALTH_PORT": str(self.health_port),
                "READINESS_PORT": str(self.readiness_port),
                **settings,
            },
            start_timeout=_START_TIMEOUT_SECONDS,
            stop_timeout=_STOP_TIMEOUT_SECONDS,
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def readiness_url(self) -> str:
        return f"http://127.0.0.1:{self.readiness_port}/readyz"
