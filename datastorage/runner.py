"""Runs DataStorage under uvicorn: in the foreground (`run`) or in a thread (`DataStorageServer`).

`run` is what `python -m datastorage` runs. `DataStorageServer` is for
tests, benchmarks and other suites that need a real instance in their own
process: it binds the listening socket itself (on a port its caller
reserved, or port 0 for any free one), starts uvicorn with its own event loop
in a thread, waits until the app has started, and on failure raises the app's
startup error rather than a timeout. Given a `log_path`, everything the
instance logs goes to that file and nowhere else. Both run uvicorn's server
in an event loop of the kind `settings.event_loop` names (uvloop by default):
uvicorn picks its loop only under `uvicorn.run`, which neither uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import uvicorn
import uvloop

from datastorage.app import DataStorageApp, create_app
from datastorage.config import Settings
from datastorage.logs import json_file_handler, logging_to
from datastorage.service import StartupError, preflight
from datastorage.timestamps import Clock, utc_now

GRACEFUL_SHUTDOWN_SECONDS: Final = 10
_EVENT_LOOPS: Final[dict[str, Callable[[], asyncio.AbstractEventLoop]]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def new_event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """A new event loop of the kind `settings.event_loop` names."""
    return _EVENT_LOOPS[settings.event_loop]()


def _uvicorn_server(app: DataStorageApp, settings: Settings, *, access_log: bool) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=access_log,
        lifespan="on",
        http=settings.http,
        # The client is the TCP peer; X-Forwarded-For is for the rate limit alone to weigh, from the
        # proxies it is told to trust (uvicorn's own rewrite would trust any local process).
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


def run(settings: Settings, *, clock: Clock = utc_now) -> None:
    """Serves until SIGINT/SIGTERM, in an event loop of the configured kind; raises StartupError if the
    app could not start."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings)) as runner:
        runner.run(serve(settings, clock=clock))


async def serve(settings: Settings, *, clock: Clock = utc_now) -> None:
    """Serves in the running event loop until SIGINT/SIGTERM; raises StartupError if the app could not
    start."""
    await preflight(settings)
    app = create_app(settings, clock=clock)
    server = _uvicorn_server(app, settings, access_log=True)
    await server.serve()
    if not server.started:
        raise app.state.startup_error or StartupError("DataStorage did not start; see the log above")


class DataStorageServer:
    """One DataStorage instance in a background thread; `url` is `http://host:port`.

    `settings.port` 0 binds a free port (see `port` after start). `stop()` shuts
    down gracefully: in-flight requests finish, background tasks stop.
    `log_path`: the file for the instance's JSON log lines, and those of the
    libraries it runs on (see `logs.logging_to`); without it they go to the
    host's logging.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        start_timeout: float = 60.0,
        log_path: Path | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._start_timeout = start_timeout
        self._log_path = log_path
        self._log_handler: logging.Handler | None = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._app: DataStorageApp | None = None
        self._crash: BaseException | None = None
        self._port = settings.port

    @property
    def host(self) -> str:
        return self._settings.host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def app(self) -> DataStorageApp:
        if self._app is None:
            raise RuntimeError("DataStorageServer has no app before start()")
        return self._app

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._settings.host, self._port))
        self._port = listener.getsockname()[1]
        self._socket = listener
        if self._log_path is not None:
            self._log_handler = json_file_handler(self._log_path, self._settings.log_level)
        settings = dataclasses.replace(self._settings, port=self._port)
        self._app = create_app(settings, clock=self._clock)
        self._server = _uvicorn_server(self._app, settings, access_log=False)
        self._crash = None
        self._thread = threading.Thread(target=self._run, name=f"datastorage-{self._port}", daemon=True)
        self._thread.start()
        self._wait_started()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(GRACEFUL_SHUTDOWN_SECONDS + 20)
        if self._socket is not None:
            self._socket.close()
        if self._log_handler is not None:
            self._log_handler.close()
        self._thread = None
        self._server = None
        self._socket = None
        self._log_handler = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        routed = logging_to(self._log_handler) if self._log_handler is not None else contextlib.nullcontext()
        try:
            with routed, asyncio.Runner(loop_factory=lambda: new_event_loop(self._settings)) as runner:
                runner.run(self._server.serve(sockets=[self._socket]))
        except BaseException as crash:  # reported to the starting thread, which re-raises it
            self._crash = crash

    def _wait_started(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self.stop()
                error = self.app.state.startup_error or self._crash
                raise StartupError(f"DataStorage did not start: {error}") from error
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(f"DataStorage did not start within {self._start_timeout:.0f}s")
            time.sleep(0.01)
