"""An OPA server as a child process, for tests and local runs (in a cluster OPA is a sidecar).

Each controller needs its own OPA: OPA merges modules that declare the same
package, so two controllers on one server would mix policies. `OpaServer`
starts `opa run --server` on a free loopback port, waits until that very
process answers `/health`, and stops and reaps it. The child is tied to its
parent with PR_SET_PDEATHSIG, so a killed test worker or controller leaves no
OPA behind.

Boundary: process management only; policies are loaded through
`policy_engine.OpaServerEngine(server.url)`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final

_PR_SET_PDEATHSIG: Final = 1
# Another process may take the port between our probe and OPA's bind; that many fresh tries.
_PORT_ATTEMPTS: Final = 5
# OPA answers /health in milliseconds; a short probe keeps a silent port from stalling start-up.
_PROBE_TIMEOUT: Final = 0.25


class OpaServerError(RuntimeError):
    """OPA did not start, or did not become healthy in time; the message carries its log tail."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when the forking thread ends (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork: the child should do as little as possible before exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class OpaServer:
    """`opa run --server` on 127.0.0.1:<free port, or `port`>; use as a context manager or start()/stop().

    The parent-death signal fires when the *thread* that started the server
    ends, so start it from a long-lived thread (the main thread, a pytest
    session fixture), not from a short-lived worker thread.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._binary = Path(binary)
        self._host = host
        self._port = port  # None: a free one; a fixed one, e.g. to restart OPA where a controller expects it
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise OpaServerError("OPA server is not running")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        if self._process is None:
            raise OpaServerError("OPA server is not running")
        return self._process.pid

    def start(self) -> OpaServer:
        if self._process is not None:
            raise OpaServerError(f"OPA server already running at {self._url}")
        if not self._binary.is_file():
            raise OpaServerError(f"OPA binary not found at {self._binary} (run `make assets`)")
        deadline = time.monotonic() + self._startup_timeout
        if self._port is not None:
            refused = self._try_start(self._port, deadline)
            if refused:
                raise OpaServerError(f"OPA could not bind port {self._port}:\n{refused}")
            return self
        refused = ""
        for _ in range(_PORT_ATTEMPTS):
            refused = self._try_start(_free_port(self._host), deadline)
            if not refused:
                return self
        raise OpaServerError(f"OPA could not bind a free port in {_PORT_ATTEMPTS} tries:\n{refused}")

    def _try_start(self, port: int, deadline: float) -> str:
        """Empty once this OPA serves /health; its log if the port was taken meanwhile (try another)."""
        self._close_log()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in stop()
        instance = secrets.token_hex(8)
        # `--disable-telemetry` is deprecated in OPA 1.x in favour of this flag (same effect: no
        # version check phoning home).
        argv = [
            str(self._binary),
            "run",
            "--server",
            f"--addr={self._host}:{port}",
            "--skip-version-check",
            "--log-level=error",
            "--shutdown-grace-period=1",
            f"--set=labels.kubernaut_instance={instance}",
        ]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),
        )
        url = f"http://{self._host}:{port}"
        while True:
            if self._process.poll() is not None:
                tail = self._log_tail()
                self.stop()
                if "address already in use" in tail:
                    return tail
                raise OpaServerError(f"OPA exited at start-up:\n{tail}")
            # The instance label proves it is our OPA answering, not one that won the port race.
            if _serves_instance(url, instance):
                self._url = url
                return ""
            if time.monotonic() > deadline:
                self.stop()
                raise OpaServerError(
                    f"OPA not healthy at {url} within {self._startup_timeout} s:\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate and reap OPA (SIGKILL after `timeout`); safe to call twice."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()
        self._close_log()
        self._url = None

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None

    def _log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> OpaServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _serves_instance(url: str, instance: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"{url}/health", timeout=_PROBE_TIMEOUT) as health:
            if health.status != 200:
                return False
        with urllib.request.urlopen(f"{url}/v1/config", timeout=_PROBE_TIMEOUT) as config:
            labels = json.load(config).get("result", {}).get("labels", {})
            return bool(labels.get("kubernaut_instance") == instance)
    return False
