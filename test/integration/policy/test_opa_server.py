"""`OpaServer`: a reserved port, its own health, a reaped child, and no orphan when the parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from devstack.opa_server import OpaServer, OpaServerError
from processes.child import is_alive
from test.integration.polling import eventually


def is_gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a reaper that is not us."""
    return not is_alive(pid)


def test_serves_health_and_stops_reaped(opa_binary: Path, tmp_path: Path) -> None:
    server = OpaServer(opa_binary, log_path=tmp_path / "opa.log").start()
    pid = server.pid
    assert pid is not None
    with urllib.request.urlopen(f"{server.url}/health", timeout=2) as health:
        assert health.status == 200
    server.stop()
    server.stop()
    assert is_gone(pid)
    with pytest.raises(OpaServerError):
        _ = server.url


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OpaServerError, match="make assets"):
        OpaServer(tmp_path / "opa", log_path=tmp_path / "opa.log").start()


def test_opa_dies_with_its_parent(opa_binary: Path, tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import signal
                from pathlib import Path
                from devstack.opa_server import OpaServer
                server = OpaServer({str(opa_binary)!r}, log_path=Path({str(tmp_path / "opa.log")!r})).start()
                print(server.pid, flush=True)
                signal.pause()
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert parent.stdout is not None
        opa_pid = int(parent.stdout.readline())
        assert not is_gone(opa_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        eventually(lambda: is_gone(opa_pid), timeout=10, message="OPA did not die with its parent")
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
