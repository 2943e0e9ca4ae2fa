"""Starting a stack supervisor as a child process and waiting for its state file.

`make run`, the load benchmark and the suite's shared stack all start the
supervisor the same way; only what happens at the end differs (the first two
stop it themselves, the suite's last worker does).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devstack.state import StackState
from processes.child import ChildProcess

START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 60.0


def supervisor_process(
    state_path: Path, log_path: Path, *, watch_pid: int, components: Sequence[str] | None = None
) -> ChildProcess:
    """The supervisor, ready once its state file exists. It does not die with its starter: it stops
    when `watch_pid` is gone or on SIGTERM, so any member of a shared stack can stop it."""
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
    return ChildProcess(
        "the stack supervisor",
        argv,
        log_path=log_path,
        is_ready=state_path.exists,
        # devstack runs from the source tree (it is not part of the wheel), whatever the caller's cwd.
        cwd=Path(__file__).resolve().parent.parent,
        start_timeout=START_TIMEOUT_SECONDS,
        stop_timeout=STOP_TIMEOUT_SECONDS,
        dies_with_parent=False,
    )


@contextmanager
def supervised_stack(workdir: Path, components: Sequence[str] | None = None) -> Iterator[StackState]:
    """The stack (by default, all but the node) for as long as the `with` block runs; it also stops
    if this process dies."""
    state_path = workdir / "stack.json"
    with supervisor_process(state_path, workdir / "stack.log", watch_pid=os.getpid(), components=components):
        yield StackState.read(state_path)
