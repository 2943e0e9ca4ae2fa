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
from pathlib import Path
from typing import Final

from localservers._process import LocalServerError
from localservers._server import LOOPBACK, PrivateServer

# Snapshot at shutdown; the long interval keeps a running server off the disk.
_SAVE_POINTS: Final = "3600 1"
# Numbered databases (16 by default): the test suite's shared server gives each
# worker a block of its own. An empty database costs a few hundred bytes.
DATABASES: Final = 256


def redis_binary() -> Path | None:
    """The `redis-server` executable, or None when Redis is not installed."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    return Path(found) if found else None


class RedisServer(PrivateServer):
    """One private Redis server; `url` is `redis://127.0.0.1:<port>/0`.

    `base_dir` holds the socket, the snapshot and the log; `PrivateServer` says
    how long it and the port are kept.
    """

    _TEMP_PREFIX = "localredis-"

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
        super().__init__(base_dir, start_timeout=start_timeout, stop_timeout=stop_timeout)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self._port}/0"

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "redis.log"

    def _start_server(self) -> None:
        """Starts the server (reloading its snapshot, if any) and waits until it answers PING."""
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
        self._start_child(
            "Redis",
            argv,
            log_path=self.log_path,
            is_ready=self._answers_ping,
            stop_signal=signal.SIGTERM,  # Redis saves its snapshot, then exits
        )

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self._port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False
