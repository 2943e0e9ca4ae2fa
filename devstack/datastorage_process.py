"""DataStorage as a child process (`python -m datastorage serve`), for stacks and tests that need a real one.

`DataStorageProcess` starts the command line with the given URLs on a
reserved loopback port, and is ready once that very process listens there and
`/health/ready` answers 200. It stops with SIGTERM (graceful: in-flight
requests finish) or `kill()` (SIGKILL, to test crash recovery), and keeps its
port across restarts until `close()`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Self

from processes.child import ChildProcess, http_ok
from processes.ports import reserve_port

_STOP_TIMEOUT: Final = 30.0


class DataStorageProcess(ChildProcess):
    def __init__(
        self,
        *,
        database_url: str,
        redis_url: str,
        log_path: str | os.PathLike[str],
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        reservation = reserve_port()
        self.port = reservation.port
        super().__init__(
            "DataStorage",
            [
                sys.executable,
                "-m",
                "datastorage",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *extra_args,
            ],
            log_path=Path(log_path),
            reservations=[reservation],
            is_ready=lambda: http_ok(f"{self.url}/health/ready"),
            environment={
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                **(extra_env or {}),
            },
            start_timeout=start_timeout,
            stop_timeout=_STOP_TIMEOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Starts the process (same port on every start), unless it runs, and waits until it is ready."""
        if not self.is_running:
            super().start()
        return self
