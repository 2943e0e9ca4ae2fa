"""Cleans up after a control-plane owner that died without stopping it.

The owner starts this process first and keeps a pipe to its standard input
open; it writes `pid N` and `dir PATH` lines (PATH may also be a file) as it
creates servers and temp directories, and for a node `cgroup PATH` (every
process in it is killed: containers and shims). When the pipe closes (normal
stop, crash or SIGKILL of the owner), the reaper kills any listed process still alive, detaches the mounts
under the listed directories and removes them. After a normal stop there is
nothing left for it to do. It runs in its own session so that the Ctrl-C which
interrupts the owner does not kill it before it has cleaned up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from envtest.node import kill_cgroup, unmount_under
from processes.child import is_alive


def _terminate(pids: list[int], grace_seconds: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while any(is_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pids: list[int] = []
    directories: list[str] = []
    cgroups: list[Path] = []
    for line in sys.stdin:
        kind, _, value = line.strip().partition(" ")
        if kind == "pid":
            pids.append(int(value))
        elif kind == "dir":
            directories.append(value)
        elif kind == "keep":
            directories = [d for d in directories if d != value]
        elif kind == "cgroup":
            cgroups.append(Path(value))
    _terminate([pid for pid in pids if is_alive(pid)])
    # A node's veth pair goes with its network namespace once its last process is gone: never
    # deleted by name here, as its slot (and so its name) may already be another node's.
    kill_cgroup(cgroups)
    for path in map(Path, directories):
        if path.is_dir():
            unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
