"""A private Redis server for tests, benchmarks and the local run.

Each `RedisServer` listens on a loopback port of its own and a unix socket in
its own directory, and is never a system service. It saves a snapshot only on
a graceful stop, so a stop and start on the same directory keeps the data
while a running test pays no disk cost.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from localservers._process import LocalServerError
from processes.child import ChildProcess
from processes.ports import PortReservation, reserve_port

LOOPBACK: Final = "127.0.0.1"
# Snapshot at shutdown; the long interval keeps a running server off the disk.
_SAVE_POINTS: Final = "3600 1"
# Numbered databases (16 by default): the test suite's shared server gives each
# worker a block of its own. An empty database costs a few hundred bytes.
DATABASES: Final = 256


def redis_binary() -> Path | None:
    """The `redis-server` executable, or None when Redis is not installed."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    return Path(found) if found else None


class RedisServer:
    """One private Redis server; `url` is `redis://127.0.0.1:<port>/0`.

    `base_dir` holds the socket, the snapshot and the log. Without it a temp
    dir is created, and removed by `stop()` unless `keep_data=True`; a caller's
    `base_dir` is never removed. The port is reserved at construction and held
    until the object is closed (`with` block) or collected, so a restart keeps it.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        binary = redis_binary()
        if binary is None:
            raise LocalServerError("redis-server is not installed; run `python -m localservers install`")
        self._binary = binary
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
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self._port}/0"

    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise LocalServerError("RedisServer has no directory before start()")
        return self._base_dir

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "redis.log"

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
        """Starts the server (reloading its snapshot, if any) and waits until it answers PING."""
        if self.is_running:
            return self
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="localredis-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self._binary),
            "--bind",
            LOOPBACK,
            "--port",
            str(self._port),
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.base_dir),
            "--save",
            _SAVE_POINTS,
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--loglevel",
            "warning",
            "--databases",
            str(DATABASES),
        ]
        self._process = ChildProcess(
            f"Redis on port {self._port}",
            argv,
            log_path=self.log_path,
            listens_on=[self._port],
            is_ready=self._answers_ping,
            cwd=self.base_dir,
            start_timeout=self._start_timeout,
            stop_signal=signal.SIGTERM,
            stop_timeout=self._stop_timeout,
        )
        self._process.start()
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """SIGTERM (Redis snapshots and exits), SIGKILL after the stop timeout; removes a temp dir."""
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
        return f"<RedisServer {LOOPBACK}:{self._port} {state} dir={self._base_dir}>"

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self._port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False
