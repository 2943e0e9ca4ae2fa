"""A pytest plugin that charges each test module the CPU its worker's process tree used while it ran.

Loaded by `bench.suite_cost` (`-p bench.module_cpu`). For each test it reads
the CPU time of this worker and of every process it started (the ones that
exited are in the worker's children's time, /proc stat fields 16-17; the
live ones are read one by one), before and after, and adds the difference to
the test's module. The shared stack's supervisor and its servers are left
out: they serve every worker, and `bench.suite_cost` reports them as the rest
of the machine's CPU. Each worker writes `<worker>.json` into
`$MODULE_CPU_DIR`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes.child import descendants

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_charged: defaultdict[str, float] = defaultdict(float)
_tests: defaultdict[str, int] = defaultdict(int)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the command name.
    return sum(int(value) for value in fields[11:15]) / _TICKS_PER_SECOND


def _tree_cpu_seconds() -> float:
    me = os.getpid()
    shared = {pid for pid in descendants(me) if b"devstack.supervisor" in _cmdline(pid)}
    excluded = shared | {child for pid in shared for child in descendants(pid)}
    return _cpu_seconds(me) + sum(_cpu_seconds(pid) for pid in descendants(me) if pid not in excluded)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    before = _tree_cpu_seconds()
    yield
    module = item.nodeid.split("::", 1)[0]
    _charged[module] += _tree_cpu_seconds() - before
    _tests[module] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    directory = os.environ.get("MODULE_CPU_DIR")
    if not directory:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    report = {module: {"cpu_seconds": _charged[module], "tests": _tests[module]} for module in _charged}
    (Path(directory) / f"{worker}.json").write_text(json.dumps(report))
