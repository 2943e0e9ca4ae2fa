"""DataStorage as a child process (`python -m datastorage`), for stacks and tests that need a real one.

`DataStorageProcess` starts the command line with the given URLs on a free
loopback port, waits until `/health/ready` answers 200, and stops it with
SIGTERM (graceful: in-flight requests finish) or `kill()` (SIGKILL, to test
crash recovery). The child dies with the thread that started it
(PR_SET_PDEATHSIG), and its log goes to `log_path`; a failed start raises
with the log's last lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from localservers import die_with_parent, free_port

_LOG_TAIL_LINES: Final = 30
_STOP_TIMEOUT: Final = 30.0


class DataStorageProcessError(RuntimeError):
    """The DataStorage process did not become ready; the message holds its log tail."""


class DataStorageProcess:
    def __init__(
        self,
        *,
        database_url: str,
        redis_url: str,
        log_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self._database_url = database_url
        self._redis_url = redis_url
        self._log_path = Path(log_path)
        self._host = host
        self._port = port if port is not None else free_port()
        self._extra_args = list(extra_args)
        self._extra_env = dict(extra_env or {})
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Starts the process (same port on every start) and waits until it is ready."""
        if self.is_running:
            return self
        argv = [
            sys.executable,
            "-m",
            "datastorage",
            "serve",
            "--host",
            self._host,
            "--port",
            str(self._port),
            *self._extra_args,
        ]
        environment = {
            **os.environ,
            "DATABASE_URL": self._database_url,
            "REDIS_URL": self._redis_url,
            **self._extra_env,
        }
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def stop(self) -> None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it takes longer than the stop timeout."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything (crash simulation)."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        while not self._answers_ready():
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise DataStorageProcessError(
                    f"DataStorage exited with code {code} during start-up{self._tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise DataStorageProcessError(
                    f"DataStorage was not ready after {self._start_timeout:.0f}s{self._tail()}"
                )
            time.sleep(0.05)

    def _answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _tail(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return ""
        return f"; last lines of {self._log_path}:\n" + "\n".join(lines)
