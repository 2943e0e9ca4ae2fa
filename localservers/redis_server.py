"""A private Redis server for tests, benchmarks and the local run.

Each `RedisServer` listens on a loopback port of its own and a unix socket in
its own directory, and is never a system service. It saves a snapshot only on
a graceful stop, so a stop and start on the same directory keeps the data
while a running test pays no disk cost.

On loopback alone it needs no password. With extra addresses it has one:
Redis's protected mode turns away every password-less client that does not
come through loopback, and an address that a test node's Pods reach is one
every other node on the machine reaches too. The password is made at the
first start, kept in the directory, and set through a config file there
(not the command line, which every user of the machine can read); the URLs
carry it, as DataStorage's `redis_url` takes it (`redis://:password@host`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
from collections.abc import Sequence
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
    """One private Redis server; `url` is `redis://127.0.0.1:<port>/0`, with a password if exposed.

    `base_dir` holds the socket, the snapshot and the log; `PrivateServer` says
    how long it and the port are kept.
    """

    _TEMP_PREFIX = "localredis-"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        extra_addresses: Sequence[str] = (),
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        binary = redis_binary()
        if binary is None:
            raise LocalServerError("redis-server is not installed; run `python -m localservers install`")
        self._binary = binary
        super().__init__(
            base_dir, extra_addresses=extra_addresses, start_timeout=start_timeout, stop_timeout=stop_timeout
        )

    @property
    def password(self) -> str | None:
        """The password every client gives, once started with extra addresses; None without them."""
        if not self._extra_addresses:
            return None
        return self._password_path.read_text().strip()

    def url_at(self, address: str) -> str:
        """`redis://[:password@]address:port/0`; `url` is at 127.0.0.1."""
        host = self._url_host(address)
        password = self.password
        credentials = f":{password}@" if password is not None else ""
        return f"redis://{credentials}{host}:{self._port}/0"

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "redis.log"

    @property
    def _password_path(self) -> Path:
        return self.base_dir / "password"

    @property
    def _config_path(self) -> Path:
        return self.base_dir / "redis.conf"

    def _start_server(self) -> None:
        """Starts the server (reloading its snapshot, if any) and waits until it answers PING."""
        argv = [
            str(self._binary),
            str(self._write_config()),
            "--bind",
            *self.listen_addresses,
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

    def _write_config(self) -> Path:
        """The config file: the password, if there is one; the other settings are on the command line."""
        lines = ["# Written by localservers at every start of the server."]
        if self._extra_addresses:
            if not self._password_path.exists():
                self._password_path.write_text(secrets.token_urlsafe(18))
                self._password_path.chmod(0o600)
            lines.append(f"requirepass {self.password}")
        self._config_path.write_text("\n".join(lines) + "\n")
        self._config_path.chmod(0o600)
        return self._config_path

    def _answers_ping(self) -> bool:
        password = self.password
        request = (f"AUTH {password}\r\n" if password is not None else "") + "PING\r\n"
        try:
            with socket.create_connection((LOOPBACK, self._port), timeout=1.0) as connection:
                connection.sendall(request.encode())
                answers = connection.makefile("rb")
                if password is not None and not answers.readline().startswith(b"+OK"):
                    return False
                return answers.readline().startswith(b"+PONG")
        except OSError:
            return False
