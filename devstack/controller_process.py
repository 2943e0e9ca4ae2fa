"""The SignalProcessing controller as a child process (`python -m controller`).

Used by `make run` and by every integration-suite worker, each with its own
namespaces, policy directory, OPA and ports. Ready means the health endpoint
answers (policies loaded, kopf started). The child dies with the thread that
started it (PR_SET_PDEATHSIG); `kill()` is there to test crash recovery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from localservers import die_with_parent, free_port

_START_TIMEOUT_SECONDS = 60.0


class ControllerStartError(RuntimeError):
    """The controller exited or did not become healthy; the message holds its log tail."""


class ControllerProcess:
    def __init__(self, *, settings: Mapping[str, str], log_path: Path) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        self._environment = {
            **os.environ,
            "METRICS_PORT": str(self.metrics_port),
            "HEALTH_PORT": str(self.health_port),
            **settings,
        }
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "controller"],
                env=self._environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._is_healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
                raise ControllerStartError(f"the controller did not start (log {self.log_path}):\n{tail}")
            time.sleep(0.05)
        return self

    def _is_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait: kopf runs its cleanup, which flushes the audit buffer."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup, as in a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
