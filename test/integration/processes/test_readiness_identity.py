"""Readiness proves identity: an answer from another process on a server's port never counts.

Each spec puts an impostor on the port a starter is about to hand its child:
a thread answering 200 to every request, as another worker's controller did
when a port race made a worker believe its dead controller was up. The start
must fail, clearly and fast (the child's own exit, not a timeout), naming the
child's log.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.controller_process import ControllerProcess
from devstack.state import StackState
from envtest import assets
from processes.child import ChildProcess, ProcessStartError, http_ok
from processes.ports import reserve_port
from test.integration.signalprocessing.conftest import REPOSITORY, controller_settings

# Far below every start timeout used here: a start that fails only at its timeout is too slow.
FAILS_WITHIN_SECONDS = 20.0


class _AlwaysHealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def impostor_on(port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _AlwaysHealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def impostor_port() -> Iterator[int]:
    """A reserved port on which another process already answers 200 to everything."""
    with reserve_port() as reservation:
        impostor = impostor_on(reservation.port)
        try:
            assert http_ok(f"http://127.0.0.1:{reservation.port}/health"), "the impostor must answer"
            yield reservation.port
        finally:
            impostor.shutdown()
            impostor.server_close()


def test_opa_whose_port_is_taken_fails_at_once_naming_its_log(impostor_port: int, tmp_path: Path) -> None:
    log = tmp_path / "opa.log"
    opa = ChildProcess(
        "OPA",
        [assets.OPA.path, "run", "--server", f"--addr=127.0.0.1:{impostor_port}", "--skip-version-check"],
        log_path=log,
        listens_on=[impostor_port],
        is_ready=lambda: http_ok(f"http://127.0.0.1:{impostor_port}/health"),
        start_timeout=120,
    )
    began = time.monotonic()
    with pytest.raises(ProcessStartError) as failed:
        opa.start()
    assert time.monotonic() - began < FAILS_WITHIN_SECONDS
    message = str(failed.value)
    assert message.startswith("OPA exited with code "), message
    assert f"its log is {log}" in message
    assert "address already in use" in message


def test_a_child_that_never_listens_is_not_ready_however_its_port_answers(
    impostor_port: int, tmp_path: Path
) -> None:
    sleeper = ChildProcess(
        "sleeper",
        ["sleep", "300"],
        log_path=tmp_path / "sleeper.log",
        listens_on=[impostor_port],
        is_ready=lambda: http_ok(f"http://127.0.0.1:{impostor_port}/"),
        start_timeout=1.0,
    )
    with pytest.raises(ProcessStartError, match=r"^sleeper did not become ready within 1s; its log is "):
        sleeper.start()
    assert not sleeper.is_running


def test_a_child_that_dies_at_start_fails_the_start_with_its_last_words(tmp_path: Path) -> None:
    log = tmp_path / "dies.log"
    with reserve_port() as never_listened:
        dies = ChildProcess(
            "short-lived",
            ["sh", "-c", "echo cannot open the widget; exit 3"],
            log_path=log,
            listens_on=[never_listened.port],
            start_timeout=120,
        )
        began = time.monotonic()
        with pytest.raises(ProcessStartError) as failed:
            dies.start()
    assert time.monotonic() - began < FAILS_WITHIN_SECONDS
    assert str(failed.value) == (
        f"short-lived exited with code 3 during start-up; its log is {log}; last lines:\n"
        "cannot open the widget"
    )


def test_a_controller_whose_health_port_is_taken_fails_to_start_naming_its_log(
    stack: StackState, tmp_path: Path
) -> None:
    settings = controller_settings(
        stack, namespaces="identity-never-*", policy_dir=REPOSITORY / "policies", opa_url=None
    )
    log = tmp_path / "controller.log"
    process = ControllerProcess(settings=settings, log_path=log)
    impostor = impostor_on(process.health_port)
    try:
        assert http_ok(process.health_url), "the impostor must answer on the controller's health URL"
        began = time.monotonic()
        with pytest.raises(ProcessStartError) as failed:
            process.start()
        assert time.monotonic() - began < FAILS_WITHIN_SECONDS
        message = str(failed.value)
        assert message.startswith("controller exited with code "), message
        assert f"its log is {log}" in message
    finally:
        impostor.shutdown()
        impostor.server_close()
        process.close()
