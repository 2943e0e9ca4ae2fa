"""Starting a stack supervisor as a child process and waiting for its state file.

`make run`, the load benchmark and the suite's shared stack all start the
supervisor the same way; only what happens at the end differs (the first two
stop it themselves, the suite's last worker does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devstack.state import StackState

START_TIMEOUT_SECONDS = 180.0


class StackStartError(RuntimeError):
    """The supervisor exited or timed out before publishing its state; the message has its log."""


def start_supervisor(
    state_path: Path, log_path: Path, *, watch_pid: int, components: Sequence[str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts the supervisor in its own session (a Ctrl-C meant for the caller leaves it to stop
    cleanly) and returns once its state file exists."""
    argv = [
        sys.executable,
        "-m",
        "devstack.supervisor",
        "--state",
        str(state_path),
        "--watch-pid",
        str(watch_pid),
    ]
    if components is not None:
        argv += ["--components", ",".join(components)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not state_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise StackStartError(f"the stack did not start (log {log_path}):\n{tail}")
        time.sleep(0.1)
    return process


@contextmanager
def supervised_stack(workdir: Path) -> Iterator[StackState]:
    """The whole stack for as long as the `with` block runs; it also stops if this process dies."""
    state_path = workdir / "stack.json"
    supervisor = start_supervisor(state_path, workdir / "stack.log", watch_pid=os.getpid())
    try:
        yield StackState.read(state_path)
    finally:
        supervisor.terminate()
        try:
            supervisor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
