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
from types import TracebackType
from typing import Final, Self

from processes.child import ChildProcess, http_ok
from processes.ports import reserve_port

_STOP_TIMEOUT: Final = 30.0


class DataStorageProcess:
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
        self._reservation = reserve_port()
        self._port = self._reservation.port
        self._log_path = Path(log_path)
        self._child = ChildProcess(
            "DataStorage",
            [
                sys.executable,
                "-m",
                "datastorage",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self._port),
                *extra_args,
            ],
            log_path=self._log_path,
            listens_on=[self._port],
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
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def child(self) -> ChildProcess:
        return self._child

    @property
    def is_running(self) -> bool:
        return self._child.is_running

    def start(self) -> Self:
        """Starts the process (same port on every start) and waits until it is ready."""
        if not self.is_running:
            self._child.start()
        return self

    def stop(self) -> None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it takes longer than the stop timeout."""
        self._child.stop()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything (crash simulation)."""
        self._child.kill()

    def close(self) -> None:
        """Stops it and gives the port back."""
        self.stop()
        self._reservation.release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
