"""Process plumbing shared by the local PostgreSQL and Redis servers.

Everything here is about one child process on this machine: picking a free
loopback port, making the child die with its owner, waiting for it to become
ready with a deadline, and stopping it gracefully before killing it. Nothing
here knows about PostgreSQL or Redis.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Final

_PR_SET_PDEATHSIG: Final = 1
_LOG_TAIL_LINES: Final = 30

# Resolved once in the parent: the child runs the hook between fork and exec,
# where loading a library could deadlock on a lock held by another thread.
_libc: Final = ctypes.CDLL(None, use_errno=True)


class LocalServerError(RuntimeError):
    """A local server could not be installed, started or stopped; the message says which and why."""


def die_with_parent() -> None:
    """Makes the kernel SIGKILL this process when the thread that started it dies.

    Runs as `preexec_fn`, after subprocess has switched user (the setting is
    cleared by credential changes, so it must come after them), and survives
    the exec of a normal binary. A killed test run then leaves no server behind.
    """
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def spawn(
    argv: Sequence[str],
    *,
    log: IO[bytes],
    run_as: tuple[int, int] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a server child that dies with its parent; `run_as` is (uid, gid) when dropping root."""
    user, group = run_as if run_as is not None else (None, None)
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        user=user,
        group=group,
        extra_groups=[] if run_as is not None else None,
        preexec_fn=die_with_parent,
        # Its own process group, so the Ctrl-C that stops a test run reaches
        # the owner only, which then shuts the server down in order.
        start_new_session=True,
    )


def wait_until_ready(
    *,
    name: str,
    process: subprocess.Popen[bytes],
    is_ready: Callable[[], bool],
    timeout: float,
    log_path: Path,
) -> None:
    """Polls `is_ready` until it says yes; raises with the log tail on timeout or early exit."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while True:
        if process.poll() is not None:
            raise LocalServerError(
                f"{name} exited with code {process.returncode} during start-up; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if is_ready():
            return
        if time.monotonic() > deadline:
            raise LocalServerError(
                f"{name} was not ready after {timeout:.0f}s; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def terminate(process: subprocess.Popen[bytes], *, graceful_signal: int, timeout: float) -> None:
    """Sends `graceful_signal`, waits up to `timeout` seconds, then SIGKILLs; always reaps."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(graceful_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def run_checked(argv: Sequence[str], *, what: str, run_as: tuple[int, int] | None = None) -> str:
    """Runs a short helper command to completion; raises naming `what` and showing its output."""
    user, group = run_as if run_as is not None else (None, None)
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        user=user,
        group=group,
        extra_groups=[] if run_as is not None else None,
        check=False,
    )
    if result.returncode != 0:
        raise LocalServerError(
            f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def is_root() -> bool:
    return os.geteuid() == 0
