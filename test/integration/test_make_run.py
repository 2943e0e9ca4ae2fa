"""`make run`, as a newcomer runs it: everything starts, the demo signals complete, Ctrl-C stops it all.

`make run` is its set-up steps (the same ones `make test` has just run, so
running make again inside the suite would only repeat them) followed by
`python -m demo`. The spec checks that this is what the Makefile runs, then
runs that command itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from processes.child import descendants, is_alive
from test.integration.polling import ConditionNotMet, eventually

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("variables", "demo", "images"),
    [([], ".venv/bin/python -m demo", False), (["NODE=1"], ".venv/bin/python -m demo --node", True)],
    ids=["plain", "node"],
)
def test_make_run_is_the_set_up_then_the_demo(variables: list[str], demo: str, images: bool) -> None:
    planned = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "run", *variables],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert planned[-1] == demo, planned
    assert any("-m envtest assets" in line for line in planned), planned
    assert any("-m localservers install" in line for line in planned), planned
    assert any("-m envtest images" in line for line in planned) is images, planned


@pytest.mark.parametrize(
    ("arguments", "server"),
    [
        pytest.param([], "kube-apiserver", id="plain"),
        # The controller and DataStorage run as Pods: the demo's descendants include the kubelet.
        pytest.param(["--node"], "kubelet", id="node", marks=[pytest.mark.node, pytest.mark.timeout(900)]),
    ],
)
def test_make_run_completes_the_demo_and_stops_cleanly_on_ctrl_c(arguments: list[str], server: str) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "demo", *arguments],
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
        # Two suites with their nodes on 2 cores: the node's start and two chart rollouts take minutes.
        eventually(
            lambda: any("all demo SignalProcessings completed" in line for line in output),
            timeout=600 if arguments else 240,
            interval=0.2,
            message="the demo did not complete its signals",
        )
        table = "".join(output)
        assert "demo-production  checkout-oom      Completed  Production   P0" in table
        assert "export KUBECONFIG=" in table
        started = set(descendants(run.pid))
        assert any(server in Path(f"/proc/{pid}/cmdline").read_text() for pid in started if is_alive(pid))
    except ConditionNotMet as error:
        raise ConditionNotMet(f"{error}; the demo printed:\n{''.join(output[-40:])}") from None
    finally:
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    run.wait(timeout=90)
    reader.join(timeout=5)
    if run.stdout is not None and not reader.is_alive():
        run.stdout.close()  # read to the end: nothing the demo started holds the pipe any more
    assert "==> stopped" in "".join(output), "".join(output[-30:])
    eventually(
        lambda: not [pid for pid in started if is_alive(pid)],
        timeout=30,
        message="processes started by the demo are still running",
    )
