"""The SignalProcessing controller as a child process (`python -m controller`).

Used by `make run` and by every integration-suite worker, each with its own
namespaces, policy directory, OPA and ports. Ready means the controller
itself listens on its reserved metrics and health ports and the health
endpoint answers (policies loaded, kopf started). `kill()` is there to test
crash recovery.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from processes.child import ChildProcess, http_ok
from processes.ports import reserve_port

_START_TIMEOUT_SECONDS = 60.0
# kopf runs its cleanup on SIGTERM, which flushes the audit buffer.
_STOP_TIMEOUT_SECONDS = 30.0


class ControllerProcess:
    def __init__(self, *, settings: Mapping[str, str], log_path: Path) -> None:
        self._metrics_port = reserve_port()
        self._health_port = reserve_port()
        self.metrics_port = self._metrics_port.port
        self.health_port = self._health_port.port
        self.log_path = log_path
        self._child = ChildProcess(
            "controller",
            [sys.executable, "-m", "controller"],
            log_path=log_path,
            listens_on=[self.metrics_port, self.health_port],
            is_ready=lambda: http_ok(self.health_url),
            environment={
                **os.environ,
                "METRICS_PORT": str(self.metrics_port),
                "HEALTH_PORT": str(self.health_port),
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
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def child(self) -> ChildProcess:
        return self._child

    def death_report(self) -> str | None:
        return self._child.death_report()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> Self:
        self._child.start()
        return self

    def stop(self) -> None:
        """SIGTERM and wait: kopf runs its cleanup, which flushes the audit buffer."""
        self._child.stop()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as in a crash."""
        self._child.kill()

    def close(self) -> None:
        """Stops the controller and gives its ports back."""
        self.stop()
        self._metrics_port.release()
        self._health_port.release()
