"""One stack shared by every process of a test run: first in starts it, last out stops it.

Membership is a count in a file guarded by a file lock. The supervisor runs
in its own session (so no worker's exit or Ctrl-C kills it mid-run) and
watches the run's main process, so it also goes away if the count is never
brought back to zero.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock

from devstack.launch import supervisor_process
from devstack.state import StackState
from processes.child import ChildProcess, is_alive


class SharedStack:
    def __init__(self, directory: Path, components: tuple[str, ...], watch_pid: int) -> None:
        self._directory = directory
        self._components = components
        self._watch_pid = watch_pid
        self._lock = FileLock(str(directory / "stack.lock"))
        self._state_path = directory / "stack.json"
        self._members_path = directory / "stack.members"
        self._log_path = directory / "stack.log"
        self._supervisor: ChildProcess | None = None

    def __enter__(self) -> StackState:
        with self._lock:
            if not self._state_path.exists():
                self._start_supervisor()
            members = self._members() + 1
            self._members_path.write_text(str(members))
            return StackState.read(self._state_path)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            members = self._members() - 1
            self._members_path.write_text(str(max(members, 0)))
            if members <= 0 and self._state_path.exists():
                state = StackState.read(self._state_path)
                self._state_path.unlink()
                if self._supervisor is not None:
                    self._supervisor.stop()
                else:
                    _stop(state.supervisor_pid)
            elif self._supervisor is not None:
                # Others still use the stack, and the last of them stops it by pid; the supervisor is
                # this process's child all the same, so it is reaped here once it ends.
                self._supervisor.reap_when_done()

    def _members(self) -> int:
        try:
            return int(self._members_path.read_text() or 0)
        except FileNotFoundError:
            return 0

    def _start_supervisor(self) -> None:
        # Kept for the life of this process: whichever member is last stops it, by pid.
        self._supervisor = supervisor_process(
            self._state_path, self._log_path, watch_pid=self._watch_pid, components=self._components
        ).start()


def _stop(pid: int, grace_seconds: float = 30.0) -> None:
    """Stops a supervisor another member started; its exit leaves a zombie for that member to reap,
    which counts as gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while is_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)
