"""An OPA server as a child process, for tests and local runs (in a cluster OPA is a sidecar).

Each controller needs its own OPA: OPA merges modules that declare the same
package, so two controllers on one server would mix policies. `OpaServer`
starts `opa run --server` on a reserved loopback port and is ready once that
very process listens there and answers `/health`. It keeps its port across a
stop and start, until the `with` block ends or `close()`.

Boundary: process management only; policies are loaded through
`policy_engine.OpaServerEngine(server.url)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from processes.child import ChildProcess, ProcessStartError, http_ok
from processes.ports import reserve_port


class OpaServerError(RuntimeError):
    """OPA did not start, or did not become healthy in time; the message carries its log tail."""


class OpaServer:
    """`opa run --server` on 127.0.0.1:<reserved port>; use as a context manager or start()/stop().

    The parent-death signal fires when the *thread* that started the server
    ends, so start it from a long-lived thread (the main thread, a pytest
    session fixture), not from a short-lived worker thread.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        log_path: Path,
        startup_timeout: float = 30.0,
    ) -> None:
        self._binary = Path(binary)
        self._reservation = reserve_port()
        self.port = self._reservation.port
        self._child = ChildProcess(
            "OPA",
            [
                self._binary,
                "run",
                "--server",
                f"--addr=127.0.0.1:{self.port}",
                "--skip-version-check",
                "--log-level=error",
                "--shutdown-grace-period=1",
            ],
            log_path=log_path,
            listens_on=[self.port],
            is_ready=lambda: http_ok(f"http://127.0.0.1:{self.port}/health", timeout=0.25),
            start_timeout=startup_timeout,
            stop_timeout=10,
        )

    @property
    def url(self) -> str:
        if not self._child.is_running:
            raise OpaServerError("OPA server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._child.pid is None:
            raise OpaServerError("OPA server is not running")
        return self._child.pid

    @property
    def log_path(self) -> Path:
        return self._child.log_path

    def death_report(self) -> str | None:
        return self._child.death_report()

    def start(self) -> OpaServer:
        if self._child.is_running:
            raise OpaServerError(f"OPA server already running on port {self.port}")
        if not self._binary.is_file():
            raise OpaServerError(f"OPA binary not found at {self._binary} (run `make assets`)")
        try:
            self._child.start()
        except ProcessStartError as error:
            raise OpaServerError(str(error)) from None
        return self

    def stop(self) -> None:
        """Terminate and reap OPA (SIGKILL after 10 s); safe to call twice. The port stays reserved."""
        self._child.stop()

    def kill(self) -> None:
        self._child.kill()

    def close(self) -> None:
        self.stop()
        self._reservation.release()

    def __enter__(self) -> OpaServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
