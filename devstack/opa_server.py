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
from typing import Self

from processes.child import ChildProcess, ProcessStartError, http_ok
from processes.ports import reserve_port


class OpaServerError(RuntimeError):
    """OPA did not start, or did not become healthy in time; the message carries its log tail."""


class OpaServer(ChildProcess):
    """`opa run --server` on 127.0.0.1:<reserved port>; use as a context manager or start()/stop().

    The parent-death signal fires when the *thread* that started the server
    ends, so start it from a long-lived thread (the main thread, a pytest
    session fixture), not from a short-lived worker thread.
    """

    def __init__(
        self, binary: str | os.PathLike[str], *, log_path: Path, startup_timeout: float = 30.0
    ) -> None:
        self._binary = Path(binary)
        reservation = reserve_port()
        self.port = reservation.port
        super().__init__(
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
            reservations=[reservation],
            is_ready=lambda: http_ok(f"http://127.0.0.1:{self.port}/health", timeout=0.25),
            start_timeout=startup_timeout,
            stop_timeout=10,
        )

    @property
    def url(self) -> str:
        if not self.is_running:
            raise OpaServerError("OPA server is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self.is_running:
            raise OpaServerError(f"OPA server already running on port {self.port}")
        if not self._binary.is_file():
            raise OpaServerError(f"OPA binary not found at {self._binary} (run `make assets`)")
        try:
            return super().start()
        except ProcessStartError as error:
            raise OpaServerError(str(error)) from None
