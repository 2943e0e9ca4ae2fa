"""`make run`, as a newcomer runs it: everything starts, the demo signals complete, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

from processes.child import descendants, is_alive
from test.integration.polling import eventually

REPOSITORY = Path(__file__).resolve().parents[2]


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
        started = set(descendants(run.pid))
        assert any(
            "kube-apiserver" in Path(f"/proc/{pid}/cmdline").read_text() for pid in started if is_alive(pid)
        )
    finally:
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    run.wait(timeout=90)  # make itself reports the interrupt (exit 2), as it does in a terminal
    reader.join(timeout=5)
    assert "==> stopped" in "".join(output), "".join(output[-30:])
    eventually(
        lambda: not [pid for pid in started if is_alive(pid)],
        timeout=30,
        message="processes started by make run are still running",
    )
