"""`OpaServer`: a free port, its own health, a reaped child, and no orphan when the parent dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import opa_server
from controller.opa_server import OpaServer, OpaServerError
from test.integration.polling import eventually


def is_gone(pid: int) -> bool:
    """No such process, or a zombie waiting for a reaper that is not us."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_serves_health_and_stops_reaped(opa_binary: Path) -> None:
    server = OpaServer(opa_binary).start()
    pid = server.pid
    with urllib.request.urlopen(f"{server.url}/health", timeout=2) as health:
        assert health.status == 200
    server.stop()
    server.stop()
    assert is_gone(pid)
    with pytest.raises(OpaServerError):
        _ = server.url


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_taken_port_is_retried_with_another(
    opa_binary: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([busy_port, opa_server._free_port("127.0.0.1")])
    monkeypatch.setattr(opa_server, "_free_port", lambda host: next(ports))
    with OpaServer(opa_binary) as server:
        assert not server.url.endswith(f":{busy_port}")


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OpaServerError, match="make assets"):
        OpaServer(tmp_path / "opa").start()


def test_opa_dies_with_its_parent(opa_binary: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import signal
                from controller.opa_server import OpaServer
                server = OpaServer({str(opa_binary)!r}).start()
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
