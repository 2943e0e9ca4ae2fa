"""Loopback ports reserved across processes and across concurrent runs on one machine.

Choosing a port by binding port 0, closing the socket and handing the number
to a server is a race: between the close and the server's bind any process
may take the number, and the kernel hands numbers from its ephemeral range to
every outgoing connection too. Servers such as etcd, kube-apiserver,
PostgreSQL and Redis take their port as a number on the command line, so a
reservation has to outlive the picking:

- numbers come from below the kernel's ephemeral range
  (`net.ipv4.ip_local_port_range`), which the kernel never hands out by itself;
- a number is ours while we hold an exclusive `flock` on its file in one
  machine-wide directory, which every process of every run of this project
  uses, so no two of them hold the same number; the kernel drops the lock when
  the holder exits, however it exits, so nothing goes stale;
- a number that some other program listens on is skipped (a test bind).

The holder keeps the reservation for as long as its server may run, restarts
included, and releases it after the server has stopped. This is the approach
of controller-runtime's envtest port cache, with the lock held for the whole
life of the server instead of a fixed time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from pathlib import Path
from types import TracebackType
from typing import Final, Self

LOOPBACK: Final = "127.0.0.1"
# Shared by every run on the machine, whatever TMPDIR each run has.
LOCK_DIRECTORY: Final = Path("/tmp/kubernaut-port-reservations")
# Low end of the range we reserve from: above the well-known service ports.
_RANGE_START: Final = 20000
_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")


class PortReservationError(RuntimeError):
    """No port could be reserved; the message says which range was searched."""


def reservable_range() -> range:
    """The ports we reserve from: from 20000 up to the start of the kernel's ephemeral range."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    if ephemeral_low - _RANGE_START >= 1000:
        return range(_RANGE_START, ephemeral_low)
    # A machine whose ephemeral range starts low: take what is below it, above 1024.
    return range(1024, max(ephemeral_low, 2048))


class PortReservation:
    """One port number held for this process until `release()` (or exit); use as a context manager."""

    def __init__(self, port: int, lock_fd: int) -> None:
        self.port = port
        self._lock_fd: int | None = lock_fd

    @property
    def is_held(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        """Gives the number back; call it only once the server using it has stopped."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def __del__(self) -> None:
        # An owner dropped without release() (e.g. a server object stopped and
        # forgotten) gives the number back when it is collected.
        self.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<PortReservation {self.port} {'held' if self.is_held else 'released'}>"


def reserve_port(
    *, lock_directory: Path = LOCK_DIRECTORY, candidates: range | None = None
) -> PortReservation:
    """Reserves a loopback port no process of this project holds and no other program listens on."""
    ports = candidates if candidates is not None else reservable_range()
    _ensure_directory(lock_directory)
    offset = secrets.randbelow(len(ports))
    for index in range(len(ports)):
        port = ports[(offset + index) % len(ports)]
        lock_fd = _try_lock(lock_directory / f"{port}.lock")
        if lock_fd is None:
            continue
        if _is_bindable(port):
            with contextlib.suppress(OSError):  # who holds it, for a reader debugging; read-only is fine
                os.ftruncate(lock_fd, 0)
                os.write(lock_fd, f"{os.getpid()}\n".encode())
            return PortReservation(port, lock_fd)
        os.close(lock_fd)
    raise PortReservationError(
        f"no free port in {ports.start}-{ports.stop - 1}: all are reserved under {lock_directory} or in use"
    )


def _ensure_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    with contextlib.suppress(FileExistsError):
        directory.mkdir(parents=True)
        # Sticky and world-writable like /tmp, so runs by other users share it.
        directory.chmod(0o1777)


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        # Another user's lock file we may not write: open it read-only, flock works on that too.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _is_bindable(port: int) -> bool:
    """Whether a server could bind the port now; SO_REUSEADDR as servers set it, so TIME_WAIT is fine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
