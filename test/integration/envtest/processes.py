"""Watching the processes a control plane owns, through /proc, and reading a child's output lines.

A process is identified by its pid *and* its start time, so a pid that the
kernel hands to a later process is never mistaken for the one observed. A
zombie counts as gone: it has exited and only waits for its parent (or init)
to collect its status.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from processes.child import descendants as _descendant_pids

_PROC = Path("/proc")
# Fields of /proc/PID/stat after the parenthesised command name, counted from 0.
_STATE, _PPID, _START_TIME = 0, 1, 19


def _stat(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


@dataclass(frozen=True)
class Proc:
    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> Proc:
        stat = _stat(pid)
        assert stat is not None, f"process {pid} does not exist"
        return cls(pid, int(stat[_START_TIME]))

    def is_running(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and int(stat[_START_TIME]) == self.start_time and stat[_STATE] not in "ZX"

    def cmdline(self) -> list[str]:
        try:
            raw = (_PROC / str(self.pid) / "cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]

    def __str__(self) -> str:
        return f"{self.pid} ({' '.join(self.cmdline())[:120]})"


def children(parent: int) -> set[Proc]:
    """The running processes whose parent is `parent`."""
    found: set[Proc] = set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or int(stat[_PPID]) != parent or stat[_STATE] in "ZX":
            continue
        found.add(Proc(int(entry.name), int(stat[_START_TIME])))
    return found


def _if_running(pid: int) -> Proc | None:
    stat = _stat(pid)
    if stat is None or stat[_STATE] in "ZX":
        return None
    return Proc(pid, int(stat[_START_TIME]))


def descendants(ancestor: int) -> set[Proc]:
    """The running processes `ancestor` started, and theirs, and so on (a daemon that double-forked
    away, such as a containerd shim, is not among them: look for it in its cgroup)."""
    return {proc for pid in _descendant_pids(ancestor) if (proc := _if_running(pid)) is not None}


def in_cgroups(cgroups: Iterable[Path]) -> set[Proc]:
    """The running processes in `cgroups` and in every cgroup below them."""
    found: set[Proc] = set()
    for cgroup in cgroups:
        for members in cgroup.rglob("cgroup.procs"):
            try:
                pids = members.read_text().split()
            except OSError:
                continue
            found.update(proc for pid in pids if (proc := _if_running(int(pid))) is not None)
    return found


def mentioning(text: str) -> set[Proc]:
    """The running processes whose command line contains `text` (a path, say)."""
    found: set[Proc] = set()
    for entry in _PROC.iterdir():
        proc = _if_running(int(entry.name)) if entry.name.isdigit() else None
        if proc is not None and text in " ".join(proc.cmdline()):
            found.add(proc)
    return found


def running(processes: Iterable[Proc]) -> list[str]:
    """Descriptions of those of `processes` that still run (empty when all are gone)."""
    return [str(process) for process in processes if process.is_running()]


def named(processes: Iterable[Proc], name: str) -> Proc:
    """The one process whose executable is called `name`."""
    matches = [p for p in processes if p.cmdline() and Path(p.cmdline()[0]).name == name]
    assert len(matches) == 1, f"expected one {name} among {[str(p) for p in processes]}"
    return matches[0]


def reaper_of(owner: int) -> Proc:
    """The cleanup process (envtest._reaper) that a control-plane owner started."""
    matches = [p for p in children(owner) if "envtest._reaper" in p.cmdline()]
    assert len(matches) == 1, f"expected one reaper child of {owner}, found {[str(p) for p in matches]}"
    return matches[0]


def option(argv: list[str], flag: str) -> str:
    """The value of `--flag value` or `--flag=value` in a command line."""
    for index, argument in enumerate(argv):
        if argument == flag:
            return argv[index + 1]
        if argument.startswith(flag + "="):
            return argument.partition("=")[2]
    raise AssertionError(f"{flag} not in {argv}")


class LineReader:
    """Collects a child's output lines on a thread, so the test can wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, wanted: str, *, timeout: float) -> str:
        """The first further line containing `wanted`; fails at the deadline or at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"no line with {wanted!r} within {timeout:.0f}s; output so far: {self.seen}"
                ) from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(f"output ended without a line with {wanted!r}: {self.seen}")
            self.seen.append(line)
            if wanted in line:
                return line

    def rest(self, *, timeout: float) -> list[str]:
        """Every remaining line up to the end of output (call once the child has exited)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"output did not end within {timeout:.0f}s"
        while (line := self._lines.get_nowait()) is not None:
            self.seen.append(line)
        self._lines.put(None)
        self._stream.close()
        return self.seen
