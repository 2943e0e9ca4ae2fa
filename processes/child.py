"""The one way this project runs a server as a child process: spawn, wait until ready, stop.

etcd, kube-apiserver, PostgreSQL, Redis, OPA, DataStorage, the controller and
the stack supervisor all start through `ChildProcess`:

- output goes to a log file; every failure names that file and shows its last
  lines;
- the child dies with the thread that started it (PR_SET_PDEATHSIG), so a
  killed owner leaves nothing behind;
- readiness proves identity: each port the child was given must be listened
  on by the child itself or a process it started (read from /proc) before its
  readiness probe counts, so an answer from another process that happens to
  hold the port never does; a child that exits during start-up fails the
  start at once, not at the timeout;
- stopping sends the child's graceful signal, waits, then SIGKILLs, and always
  reaps it.

Ports come from `processes.ports`; nothing here picks one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from processes.ports import PortReservation

_PR_SET_PDEATHSIG: Final = 1
LOG_TAIL_LINES: Final = 30
_LISTEN_STATE: Final = "0A"

# Resolved once in the parent: the child runs the hook between fork and exec,
# where loading a library could deadlock on a lock another thread held at fork.
_libc: Final = ctypes.CDLL(None, use_errno=True)


class ProcessStartError(RuntimeError):
    """A child did not become ready; the message names it, says why, and shows its log tail."""

    def __init__(self, name: str, reason: str, log_path: Path) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        super().__init__(f"{name} {reason}; its log is {log_path}; last lines:\n{log_tail(log_path)}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    # The last lines as they are (none for an empty log), so a message quotes the log exactly.
    return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 1.0) -> bool:
    """Whether `url` answers 200 right now (any failure is a no)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _always_ready() -> bool:
    return True


class ChildProcess:
    """One server child. `start()` returns once it is ready; `stop()` is safe to call twice.

    `reservations`: the ports the child is given, which it must be listening on,
    itself, before it counts as ready, and which `close()` gives back (a child
    stopped and started again keeps them); `listens_on`: more ports to wait
    for, held by someone else. `is_ready`: the protocol check (e.g. a health
    URL), asked only after that. `environment` replaces the inherited environment when
    given. Start it from a thread that outlives it: the parent-death signal
    fires when the starting thread ends. `dies_with_parent=False` is for a
    child that other processes share and stop, and that watches its users
    itself (the suite's stack supervisor).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        reservations: Sequence[PortReservation] = (),
        listens_on: Sequence[int] = (),
        is_ready: Callable[[], bool] = _always_ready,
        environment: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        run_as: tuple[int, int] | None = None,
        start_timeout: float = 60.0,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 30.0,
        dies_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = [str(part) for part in argv]
        self.log_path = log_path
        self._reservations = tuple(reservations)
        self.listens_on = tuple(listens_on) + tuple(reservation.port for reservation in reservations)
        self._is_ready = is_ready
        self._environment = dict(environment) if environment is not None else None
        self._cwd = cwd
        self._run_as = run_as
        self._start_timeout = start_timeout
        self._stop_signal = stop_signal
        self._stop_timeout = stop_timeout
        self._dies_with_parent = dies_with_parent
        self._process: subprocess.Popen[bytes] | None = None

    # --- state ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def death_report(self) -> str | None:
        """None while the child runs (or was never started); else how it ended and its log tail."""
        if self._process is None or self._process.poll() is None:
            return None
        return (
            f"{self.name} (pid {self._process.pid}) exited with code {self._process.returncode}; "
            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    # --- life cycle ----------------------------------------------------------

    def spawn(self) -> int:
        """Starts the child without waiting for it; returns its pid."""
        if self.is_running:
            raise ProcessStartError(self.name, f"is already running (pid {self.pid})", self.log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        user, group = self._run_as if self._run_as is not None else (None, None)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment,
                cwd=self._cwd,
                user=user,
                group=group,
                extra_groups=[] if self._run_as is not None else None,
                preexec_fn=_die_with(os.getpid()) if self._dies_with_parent else None,
                # Its own session: a Ctrl-C meant for the owner does not reach the
                # child, which the owner then stops in order.
                start_new_session=True,
            )
        return self._process.pid

    def wait_until_ready(self) -> None:
        """Polls until the child listens on its ports and `is_ready()`; raises with the log tail."""
        process = self._process
        if process is None:
            raise ProcessStartError(self.name, "was not started", self.log_path)
        deadline = time.monotonic() + self._start_timeout
        interval = 0.02
        while True:
            if process.poll() is not None:
                raise self._failure(f"exited with code {process.returncode} during start-up")
            if all(is_listening(process.pid, port) for port in self.listens_on) and self._is_ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise self._failure(f"did not become ready within {self._start_timeout:g}s")
            time.sleep(interval)
            interval = min(interval * 1.5, 0.2)

    def start(self) -> Self:
        self.spawn()
        try:
            self.wait_until_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """The graceful signal, then SIGKILL after the stop timeout; always reaps."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self._stop_signal)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        self._process = None

    def reap_when_done(self) -> None:
        """Lets go of a child that outlives this object (another process stops it, by pid).

        A daemon thread waits for the child and reaps it, so it is never left as a zombie nor as an
        unwaited `Popen`, which Python reports as a ResourceWarning; if this process exits first,
        the child is re-parented and reaped by the system.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            threading.Thread(target=process.wait, name=f"reaper of {self.name}", daemon=True).start()

    def close(self) -> None:
        """Stops the child for good and gives its reserved ports back."""
        self.stop()
        for reservation in self._reservations:
            reservation.release()

    def kill(self) -> None:
        """SIGKILL and reap: no chance to clean up, as in a crash."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ChildProcess {self.name} pid={self.pid} {'running' if self.is_running else 'stopped'}>"

    def _failure(self, reason: str) -> ProcessStartError:
        return ProcessStartError(self.name, reason, self.log_path)


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the setting took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


# --- what /proc says about a process ------------------------------------------


def is_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# --- who listens on a port ------------------------------------------------------


def is_listening(pid: int, port: int) -> bool:
    """Whether `pid`, or a process it started, holds a listening TCP socket on `port`."""
    listeners = _listening_socket_inodes(port)
    if not listeners:
        return False
    if _socket_inodes(pid) & listeners:
        return True
    return any(_socket_inodes(child) & listeners for child in descendants(pid))


def _listening_socket_inodes(port: int) -> set[int]:
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN_STATE and int(local_address.rsplit(":", 1)[1], 16) == port:
                inodes.add(int(inode))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    directory = f"/proc/{pid}/fd"
    try:
        descriptors = os.listdir(directory)
    except OSError:
        return inodes
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            target = os.readlink(f"{directory}/{descriptor}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, and so on (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (parent := parent_pid(int(entry))) is not None:
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found
