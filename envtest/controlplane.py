"""Starts and stops a private Kubernetes control plane: etcd plus kube-apiserver.

This is what controller-runtime's envtest does for Go: real servers, no
kubelet, scheduler or controllers. One owner process starts the control plane
and writes a kubeconfig; any number of other processes attach to it through
that kubeconfig alone. Children die with their owner (PR_SET_PDEATHSIG) and a
reaper process removes the temp directory even when the owner is SIGKILLed,
so nothing is left behind. When start-up fails, the server logs are kept and
the error names them and shows their last lines.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

import yaml

from envtest import assets
from envtest.certs import ControlPlaneCerts, write_control_plane_certs
from envtest.crds import install_crds, load_crds

_PR_SET_PDEATHSIG: Final = 1
_LOG_TAIL_LINES: Final = 25


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says which server and why."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGKILL when
    # the owner dies, so a crashed test run cannot leave servers behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_is_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def resolve_binary(name: str) -> Path:
    """Finds a server binary the way envtest does: explicit env, KUBEBUILDER_ASSETS, then the cache."""
    explicit = os.environ.get(f"TEST_ASSET_{name.upper().replace('-', '_')}")
    if explicit:
        candidate = Path(explicit)
        source = f"TEST_ASSET_{name.upper().replace('-', '_')}"
    elif os.environ.get("KUBEBUILDER_ASSETS"):
        candidate = Path(os.environ["KUBEBUILDER_ASSETS"]) / name
        source = "KUBEBUILDER_ASSETS"
    else:
        candidate = assets.control_plane_dir() / name
        source = "the asset cache"
    if not os.access(candidate, os.X_OK):
        raise ControlPlaneError(
            f"{name} not found at {candidate} (from {source}); build it with "
            "`python -m envtest assets` (or `make assets`)"
        )
    return candidate


@dataclass
class _Server:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def failure(self, reason: str) -> ControlPlaneError:
        return ControlPlaneError(
            f"{self.name} {reason}; its log is kept at {self.log}; last lines:\n{_tail(self.log)}"
        )


def _write_kubeconfig(path: Path, server: str, certs: ControlPlaneCerts) -> None:
    def inline(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {"server": server, "certificate-authority-data": inline(certs.serving_ca)},
            }
        ],
        "users": [
            {
                "name": "envtest",
                "user": {
                    "client-certificate-data": inline(certs.admin_cert),
                    "client-key-data": inline(certs.admin_key),
                },
            }
        ],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest"}}],
        "current-context": "envtest",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".partial")
    staged.write_text(yaml.safe_dump(config))
    staged.chmod(0o600)
    os.replace(staged, path)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver for one owner process; others attach via `kubeconfig`.

    Use as a context manager, or call `start()` and `stop()`. With
    `USE_EXISTING_CLUSTER=true`, nothing is started: `$KUBECONFIG` is used as is
    (and CRDs are still installed).
    """

    crd_dirs: Sequence[Path] = ()
    kubeconfig: Path | None = None
    apiserver_port: int | None = None
    start_timeout: float = 60.0
    started_in: float = field(default=0.0, init=False)
    server_url: str = field(default="", init=False)
    _workdir: Path | None = field(default=None, init=False)
    _servers: list[_Server] = field(default_factory=list, init=False)
    _reaper: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pids(self) -> list[int]:
        return [server.process.pid for server in self._servers]

    @property
    def workdir(self) -> Path | None:
        return self._workdir

    @property
    def uses_existing_cluster(self) -> bool:
        return os.environ.get("USE_EXISTING_CLUSTER", "").lower() == "true"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Path:
        """Starts the servers, installs the CRDs, and returns the kubeconfig path."""
        began = time.monotonic()
        crds = load_crds(self.crd_dirs)  # bad CRD files fail before anything starts
        if self.uses_existing_cluster:
            existing = os.environ.get("KUBECONFIG")
            if not existing:
                raise ControlPlaneError("USE_EXISTING_CLUSTER=true needs KUBECONFIG to name a kubeconfig")
            self.kubeconfig = Path(existing)
        else:
            self._start_servers()
        assert self.kubeconfig is not None
        try:
            install_crds(self.kubeconfig, crds, timeout=self.start_timeout)
        except BaseException:
            self.stop()  # start() failed, so no __exit__ will stop what it started
            raise
        self.started_in = time.monotonic() - began
        return self.kubeconfig

    def _start_servers(self) -> None:
        etcd_binary = resolve_binary("etcd")
        apiserver_binary = resolve_binary("kube-apiserver")
        if self.apiserver_port is not None and _port_is_taken(self.apiserver_port):
            raise ControlPlaneError(f"port {self.apiserver_port} for kube-apiserver is already in use")
        self._workdir = Path(tempfile.mkdtemp(prefix="envtest-"))
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "envtest._reaper"], stdin=subprocess.PIPE, start_new_session=True
        )
        self._tell_reaper(f"dir {self._workdir}")
        if self.kubeconfig is None:
            self.kubeconfig = self._workdir / "kubeconfig"
        else:
            self._tell_reaper(f"dir {self.kubeconfig}")
        try:
            certs = write_control_plane_certs(self._workdir / "certs")
            etcd_url = self._start_etcd(etcd_binary)
            self._start_apiserver(apiserver_binary, etcd_url, certs)
        except BaseException:
            self._keep_logs_and_stop()
            raise

    def _tell_reaper(self, line: str) -> None:
        assert self._reaper is not None and self._reaper.stdin is not None
        self._reaper.stdin.write(f"{line}\n".encode())
        self._reaper.stdin.flush()

    def _spawn(self, name: str, argv: list[str]) -> _Server:
        assert self._workdir is not None
        log = self._workdir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        self._tell_reaper(f"pid {process.pid}")
        server = _Server(name, process, log)
        self._servers.append(server)
        return server

    def _start_etcd(self, binary: Path) -> str:
        assert self._workdir is not None
        client_url = f"http://127.0.0.1:{free_port()}"
        server = self._spawn(
            "etcd",
            [
                str(binary),
                "--data-dir",
                str(self._workdir / "etcd"),
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{free_port()}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._wait(server, lambda: _http_ok(f"{client_url}/health"), "did not become healthy")
        return client_url

    def _start_apiserver(self, binary: Path, etcd_url: str, certs: ControlPlaneCerts) -> None:
        port = self.apiserver_port or free_port()
        self.server_url = f"https://127.0.0.1:{port}"
        server = self._spawn(
            "kube-apiserver",
            [
                str(binary),
                "--etcd-servers",
                etcd_url,
                "--cert-dir",
                str(certs.cert_dir),
                "--secure-port",
                str(port),
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--authorization-mode",
                "RBAC",
                "--client-ca-file",
                str(certs.client_ca),
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(certs.service_account_pub),
                "--service-account-signing-key-file",
                str(certs.service_account_key),
                "--disable-admission-plugins",
                "ServiceAccount",
                "--allow-privileged=true",
            ],
        )
        context = ssl.create_default_context(cafile=str(certs.serving_ca))
        context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
        # Anonymous requests get 403 while RBAC bootstraps, so readiness is asked as admin.
        self._wait(server, lambda: _http_ok(f"{self.server_url}/readyz", context), "did not become ready")
        self._wait(
            server,
            lambda: _http_ok(f"{self.server_url}/api/v1/namespaces/default", context),
            "did not create namespace 'default'",
        )
        assert self.kubeconfig is not None
        _write_kubeconfig(self.kubeconfig, self.server_url, certs)

    def _wait(self, server: _Server, is_ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if server.process.poll() is not None:
                self._keep_logs()  # before the message names the log: the temp dir is about to go
                raise server.failure(f"exited with code {server.process.returncode} during start")
            if is_ready():
                return
            if time.monotonic() > deadline:
                self._keep_logs()
                raise server.failure(f"{what} within {self.start_timeout:g}s")
            time.sleep(0.05)

    def _keep_logs(self) -> None:
        """Copies the server logs that are still in the temp dir out of it, before it is removed."""
        if self._workdir is None:
            return
        in_workdir = [s for s in self._servers if s.log.parent == self._workdir and s.log.exists()]
        if not in_workdir:
            return
        kept = Path(tempfile.mkdtemp(prefix="envtest-failed-logs-"))
        for server in in_workdir:
            shutil.copy2(server.log, kept / server.log.name)
            server.log = kept / server.log.name

    def _keep_logs_and_stop(self) -> None:
        self._keep_logs()
        self.stop()

    def stop(self) -> None:
        """Stops the servers (SIGTERM, then SIGKILL) and removes the temp directory."""
        for server in reversed(self._servers):
            _terminate(server.process)
        self._servers.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._reaper is not None:
            assert self._reaper.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._reaper.stdin.close()
            self._reaper.wait(timeout=30)
            self._reaper = None


def _terminate(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
