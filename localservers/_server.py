"""The life cycle the private PostgreSQL and Redis servers share: a directory, a reserved port, one process.

`PrivateServer` holds what does not depend on the program: the server's
directory (a temp dir unless the caller gives one), the loopback port
reserved for as long as the object lives, the addresses it listens on
besides loopback and the clients' networks they admit, the running
`ChildProcess`, and start, stop and the context-manager protocol around
them. A subclass says how its program is started (`_start_server`), through
`_start_child`, and what its URL looks like (`url_at`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import shutil
import socket
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
# An extra address given without a prefix admits clients from the network around it: a test node's
# slot is a /24 (both ends of its veth pair and its Pods' subnet), an IPv6 network a /64.
_CLIENT_PREFIX_OF_A_BARE_ADDRESS: Final = {4: 24, 6: 64}

ExtraAddress = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def parse_extra_address(text: str) -> ExtraAddress:
    """`10.213.0.1/30`: listen on 10.213.0.1, admit clients from 10.213.0.0/30; a bare address, its /24."""
    try:
        parsed = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise LocalServerError(
            f"extra address {text!r} is not an IP address with an optional prefix, such as 10.213.0.1/30"
        ) from None
    if parsed.ip.is_loopback:
        raise LocalServerError(f"extra address {text!r} is a loopback one; the server is on {LOOPBACK}")
    if "/" not in text:
        prefix = _CLIENT_PREFIX_OF_A_BARE_ADDRESS[parsed.version]
        parsed = ipaddress.ip_interface(f"{parsed.ip}/{prefix}")
    return parsed


class PrivateServer(ABC):
    """A server of the caller's own on 127.0.0.1:<reserved port>, never a system service.

    `base_dir` holds whatever the server writes. Without it a temp dir is
    created at start, and removed by `stop()` unless `keep_data=True`; a
    caller's `base_dir` is never removed. The port is reserved at
    construction and held until the object is closed (`with` block) or
    collected, so a restart keeps the URL.

    `extra_addresses` are addresses of this machine the server listens on
    too, on the same port, such as the host end of a test node's veth pair
    for the node's Pods. Each may carry a prefix, `10.213.0.1/30`, which
    names the network of the clients admitted through it; a bare address
    admits its /24 (IPv6: /64). They must exist when the server starts.
    """

    # The temp dir's name prefix when no base_dir is given.
    _TEMP_PREFIX: ClassVar[str]

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None,
        *,
        extra_addresses: Sequence[str],
        start_timeout: float,
        stop_timeout: float,
    ) -> None:
        self._extra_addresses = tuple(dict.fromkeys(parse_extra_address(text) for text in extra_addresses))
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
    def listen_addresses(self) -> tuple[str, ...]:
        """Loopback first, then the extra addresses."""
        return (LOOPBACK, *dict.fromkeys(str(address.ip) for address in self._extra_addresses))

    @property
    def client_networks(self) -> tuple[str, ...]:
        """The networks whose clients the extra addresses admit (loopback's own is not among them)."""
        return tuple(dict.fromkeys(str(address.network) for address in self._extra_addresses))

    @property
    def url(self) -> str:
        """The URL through loopback, for clients on this machine."""
        return self.url_at(LOOPBACK)

    @abstractmethod
    def url_at(self, address: str) -> str:
        """The URL with `address` (loopback or an extra address) as its host, for clients that reach it."""

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
        self._check_extra_addresses_exist()
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
        addresses = ",".join(self.listen_addresses)
        return f"<{type(self).__name__} {addresses}:{self._port} {state} dir={self._base_dir}>"

    def _url_host(self, address: str) -> str:
        """`address` as a URL's host (an IPv6 one in brackets), once it is checked to be one we listen on."""
        # Spelt as listen_addresses spells it: fd00::1, not fd00:0::1.
        with contextlib.suppress(ValueError):
            address = str(ipaddress.ip_address(address))
        if address not in self.listen_addresses:
            listening = ", ".join(self.listen_addresses)
            raise LocalServerError(f"{type(self).__name__} does not listen on {address}, only on {listening}")
        return f"[{address}]" if ":" in address else address

    def _check_extra_addresses_exist(self) -> None:
        # PostgreSQL starts all the same when it can bind some of its addresses, and its clients would
        # only find out at their first connection: an address that is not there fails the start instead.
        for address in self._extra_addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((str(address.ip), 0))
                except OSError as error:
                    if error.errno != errno.EADDRNOTAVAIL:
                        raise
                    raise LocalServerError(
                        f"{type(self).__name__} cannot listen on {address.ip}: no interface of this machine "
                        "has that address (is the test node that owns it running?)"
                    ) from None

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
