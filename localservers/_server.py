"""The life cycle the private PostgreSQL and Redis servers share: a directory, a reserved port, one process.

`PrivateServer` holds what does not depend on the program: the server's
directory (a temp dir unless the caller gives one), the loopback port
reserved for as long as the object lives, the running `ChildProcess`, and
start, stop and the context-manager protocol around them. A subclass says
how its program is started (`_start_server`), through `_start_child`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Final, Self

from localservers._process import LocalServerError
from processes.child import ChildProcess
from processes.ports import PortReservation, reserve_port

LOOPBACK: Final = "127.0.0.1"


class PrivateServer(ABC):
    """A server of the caller's own on 127.0.0.1:<reserved port>, never a system service.

    `base_dir` holds whatever the server writes. Without it a temp dir is
    created at start, and removed by `stop()` unless `keep_data=True`; a
    caller's `base_dir` is never removed. The port is reserved at
    construction and held until the object is closed (`with` block) or
    collected, so a restart keeps the URL.
    """

    # The temp dir's name prefix when no base_dir is given.
    _TEMP_PREFIX: ClassVar[str]

    def __init__(
        self, base_dir: str | os.PathLike[str] | None, *, start_timeout: float, stop_timeout: float
    ) -> None:
        self._owns_base_dir = base_dir is None
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._reservation: PortReservation = reserve_port()
        self._port = self._reservation.port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: ChildProcess | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise LocalServerError(f"{type(self).__name__} has no directory before start()")
        return self._base_dir

    @property
    def child(self) -> ChildProcess:
        """The running server process."""
        if self._process is None:
            raise LocalServerError(f"{self!r} is not running")
        return self._process

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    def start(self) -> Self:
        """Starts the server in its directory (made if need be), unless it runs; returns once it is ready."""
        if self.is_running:
            return self
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix=self._TEMP_PREFIX))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._start_server()
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """Sends the stop signal, SIGKILL after the stop timeout; removes a temp dir unless `keep_data`."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._owns_base_dir and not keep_data and self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self._reservation.release()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {LOOPBACK}:{self._port} {state} dir={self._base_dir}>"

    @abstractmethod
    def _start_server(self) -> None:
        """Starts the program in the existing `base_dir` (through `_start_child`); waits until it is ready."""

    def _start_child(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        is_ready: Callable[[], bool],
        stop_signal: int,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        """Runs `argv` in `base_dir` as the server: ready once it listens on the port and `is_ready()`."""
        self._process = ChildProcess(
            f"{name} on port {self._port}",
            argv,
            log_path=log_path,
            listens_on=[self._port],
            is_ready=is_ready,
            run_as=run_as,
            cwd=self.base_dir,
            start_timeout=self._start_timeout,
            stop_signal=stop_signal,
            stop_timeout=self._stop_timeout,
        )
        self._process.start()
