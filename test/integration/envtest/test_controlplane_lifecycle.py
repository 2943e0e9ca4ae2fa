"""A private control plane leaves nothing behind: after stop(), after its owner is killed, after Ctrl-C.

Each test here starts its own etcd + kube-apiserver (about 4 s), so they are
few and each checks everything about one way of ending.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client, config

from envtest import ControlPlane
from test.integration.envtest.processes import (
    LineReader,
    Proc,
    children,
    named,
    option,
    reaper_of,
    running,
)
from test.integration.polling import eventually

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
KUBECTL = "/usr/bin/kubectl"
START_TIMEOUT = 120.0  # generous: several control planes may start at once on two cores
SERVERS = {"etcd", "kube-apiserver"}


@pytest.fixture(autouse=True)
def _own_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about starting servers, whatever the caller's environment says."""
    monkeypatch.delenv("USE_EXISTING_CLUSTER", raising=False)


@contextmanager
def _killed_on_exit(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _kubectl_works(kubeconfig: Path) -> None:
    answer = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "get", "crd", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert set(answer.stdout.split()) >= {
        "customresourcedefinition.apiextensions.k8s.io/signalprocessings.kubernaut.ai",
        "customresourcedefinition.apiextensions.k8s.io/remediationrequests.kubernaut.ai",
    }


def test_stop_ends_every_server_and_removes_the_temp_dir() -> None:
    before = children(os.getpid())
    plane = ControlPlane(crd_dirs=[CRDS], start_timeout=START_TIMEOUT)
    try:
        plane.start()
        print(f"control plane started in {plane.started_in:.1f}s")
        servers = [Proc.of(pid) for pid in plane.pids]
        assert {Path(server.cmdline()[0]).name for server in servers} == SERVERS
        reaper = reaper_of(os.getpid())
        workdir = plane.workdir
        assert workdir is not None and workdir.is_dir()
        assert plane.kubeconfig is not None and plane.kubeconfig.is_relative_to(workdir)
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        try:
            names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
            assert "default" in names
        finally:
            api.close()
        _kubectl_works(plane.kubeconfig)
    finally:
        plane.stop()

    assert running(servers) == []
    assert not workdir.exists()
    assert not reaper.is_running()
    assert plane.pids == [] and plane.workdir is None
    assert {str(p) for p in children(os.getpid()) - before} == set()


OWNER = textwrap.dedent(
    """
    import json, sys
    from envtest import ControlPlane

    plane = ControlPlane(start_timeout={timeout})
    plane.start()
    print(json.dumps({{"pids": plane.pids, "workdir": str(plane.workdir)}}), flush=True)
    sys.stdin.read()  # blocks until killed (or until the test process goes away)
    plane.stop()
    """
)


def test_servers_and_temp_dir_go_away_when_the_owner_is_killed() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER.format(timeout=START_TIMEOUT)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with _killed_on_exit(owner):
        assert owner.stdout is not None
        output = LineReader(owner.stdout)
        started = json.loads(output.wait_for("{", timeout=START_TIMEOUT))
        servers = [Proc.of(pid) for pid in started["pids"]]
        assert {Path(server.cmdline()[0]).name for server in servers} == SERVERS
        workdir = Path(started["workdir"])
        assert workdir.is_dir()
        reaper = reaper_of(owner.pid)

        killed_at = time.monotonic()
        owner.send_signal(signal.SIGKILL)
        assert owner.wait(timeout=30) == -signal.SIGKILL

    eventually(lambda: running(servers) == [], timeout=30, message="servers still run after owner died")
    eventually(lambda: not workdir.exists(), timeout=30, message=f"reaper did not remove {workdir}")
    eventually(lambda: not reaper.is_running(), timeout=30, message="reaper did not finish")
    print(f"reaper cleaned up {time.monotonic() - killed_at:.1f}s after the owner's SIGKILL")
    output.rest(timeout=30)
    assert owner.stdin is not None
    owner.stdin.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_cli_up_serves_until_signalled_then_cleans_up(tmp_path: Path, stop_signal: signal.Signals) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        cli = subprocess.Popen(
            [sys.executable, "-m", "envtest", "up", "--kubeconfig", str(kubeconfig), "--crds", str(CRDS)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # a process group of its own, as a shell gives a foreground job
        )
    with _killed_on_exit(cli):
        assert cli.stdout is not None
        output = LineReader(cli.stdout)
        try:
            ready = output.wait_for("control plane ready in", timeout=START_TIMEOUT)
        except AssertionError as error:
            raise AssertionError(f"{error}\nstderr: {stderr_path.read_text()}") from None
        print(ready.strip())
        _kubectl_works(kubeconfig)

        spawned = children(cli.pid)
        etcd, apiserver = named(spawned, "etcd"), named(spawned, "kube-apiserver")
        reaper = reaper_of(cli.pid)
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        assert str(urlsplit(server).port) == option(apiserver.cmdline(), "--secure-port")
        workdir = Path(option(etcd.cmdline(), "--data-dir")).parent
        assert workdir.is_dir() and workdir.name.startswith("envtest-")

        if stop_signal == signal.SIGINT:
            os.killpg(cli.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        else:
            cli.send_signal(signal.SIGTERM)
        code = cli.wait(timeout=60)

    lines = output.rest(timeout=30)
    assert code == 0, f"exit {code}; stdout {lines}; stderr {stderr_path.read_text()}"
    assert lines[-1].strip() == "control plane stopped"
    assert running([etcd, apiserver, reaper]) == []
    assert not workdir.exists()
