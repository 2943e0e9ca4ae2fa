"""`make run`, as a newcomer runs it: everything starts, the demo signals complete, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

from test.integration.polling import eventually

REPOSITORY = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, frontier = set(), [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.add(child)
            frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_make_run_completes_the_demo_and_stops_cleanly_on_ctrl_c() -> None:
    run = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout or []), daemon=True)
    reader.start()
    try:
        eventually(
            lambda: any("all demo SignalProcessings completed" in line for line in output),
            timeout=240,
            interval=0.2,
            message="make run did not complete the demo signals",
        )
        table = "".join(output)
        assert "demo-production  checkout-oom      Completed  production   P0" in table
        assert "export KUBECONFIG=" in table
        started = _descendants(run.pid)
        assert any(
            "kube-apiserver" in Path(f"/proc/{pid}/cmdline").read_text() for pid in started if _alive(pid)
        )
    finally:
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    run.wait(timeout=90)  # make itself reports the interrupt (exit 2), as it does in a terminal
    reader.join(timeout=5)
    assert "==> stopped" in "".join(output), "".join(output[-30:])
    eventually(
        lambda: not [pid for pid in started if _alive(pid)],
        timeout=30,
        message="processes started by make run are still running",
    )
