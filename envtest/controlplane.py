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

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from envtest import assets
from envtest.certs import ControlPlaneCerts, write_control_plane_certs, write_kubeconfig
from envtest.crds import install_crds, load_crds
from envtest.node import SERVICE_SUBNET, Node, NodeImages, NodeSlot
from processes.child import ChildProcess, ProcessStartError, http_ok, log_tail
from processes.ports import PortReservation, reserve_port

_LOG_TAIL_LINES = 25
# With a node the API server has an address of its own (the node slot's), so one port number serves.
_NODE_APISERVER_PORT = 6443
NODE_NAME = "kubernaut-node"
# The harness runs from the source tree (it is not part of the wheel): the reaper it starts with
# `python -m` must find the tree's packages whatever the owner's working directory.
_SOURCE_TREE = Path(__file__).resolve().parent.parent


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says which server and why."""


def _port_is_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


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
class ControlPlane:
    """etcd + kube-apiserver for one owner process; others attach via `kubeconfig`.

    Use as a context manager, or call `start()` and `stop()`. With
    `USE_EXISTING_CLUSTER=true`, nothing is started: `$KUBECONFIG` is used as is
    (and CRDs are still installed). With `node`, a one-node cluster (envtest.node):
    `start()` returns once the Node is Ready with `node.archives` loaded.
    """

    crd_dirs: Sequence[Path] = ()
    kubeconfig: Path | None = None
    apiserver_port: int | None = None
    start_timeout: float = 60.0
    node: NodeImages | None = None
    started_in: float = field(default=0.0, init=False)
    server_url: str = field(default="", init=False)
    _node: Node | None = field(default=None, init=False)
    _workdir: Path | None = field(default=None, init=False)
    _servers: list[ChildProcess] = field(default_factory=list, init=False)
    _ports: list[PortReservation] = field(default_factory=list, init=False)
    _kept_logs: Path | None = field(default=None, init=False)
    _reaper: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self._servers if server.pid is not None]

    @property
    def servers(self) -> list[ChildProcess]:
        """etcd and kube-apiserver, for an owner that wants to notice when one of them dies."""
        return list(self._servers)

    @property
    def node_host_address(self) -> str:
        """With a node: the host's address as the node and its Pods reach it (the API server's too)."""
        if self._node is None:
            raise ControlPlaneError("this control plane has no node")
        return self._node.slot.host_address

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
            [sys.executable, "-m", "envtest._reaper"],
            stdin=subprocess.PIPE,
            start_new_session=True,
            cwd=_SOURCE_TREE,
        )
        self._tell_reaper(f"dir {self._workdir}")
        if self.kubeconfig is None:
            self.kubeconfig = self._workdir / "kubeconfig"
        else:
            self._tell_reaper(f"dir {self.kubeconfig}")
        try:
            if self.node is None:
                certs = write_control_plane_certs(self._workdir / "certs")
                etcd_url = self._start_etcd(etcd_binary)
                self._start_apiserver(apiserver_binary, etcd_url, certs)
            else:
                self._start_with_node(etcd_binary, apiserver_binary, self.node)
        except BaseException:
            self._keep_logs_and_stop()
            raise

    def _start_with_node(self, etcd_binary: Path, apiserver_binary: Path, images: NodeImages) -> None:
        assert self._workdir is not None
        if self.apiserver_port is not None:
            raise ControlPlaneError("a control plane with a node listens on its slot's address, port 6443")
        node = self._node = Node(
            workdir=self._workdir,
            slot=NodeSlot.acquire(),
            name=NODE_NAME,
            start_child=self._start,
            tell_reaper=self._tell_reaper,
            start_timeout=self.start_timeout,
        )
        node.create_network()
        certs = write_control_plane_certs(
            self._workdir / "certs", addresses=[node.slot.host_address], node=node.identity
        )
        etcd_url = self._start_etcd(etcd_binary)
        node.start_containerd(images.sandbox)
        self._start_apiserver(apiserver_binary, etcd_url, certs)
        node.import_images(images.archives)
        node.start_kubernetes(certs, self.server_url, lambda: self._node_is_ready(certs))

    def _node_is_ready(self, certs: ControlPlaneCerts) -> bool:
        context = ssl.create_default_context(cafile=str(certs.serving_ca))
        context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
        url = f"{self.server_url}/api/v1/nodes/{NODE_NAME}"
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                conditions = json.load(answer).get("status", {}).get("conditions", [])
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _tell_reaper(self, line: str) -> None:
        assert self._reaper is not None and self._reaper.stdin is not None
        self._reaper.stdin.write(f"{line}\n".encode())
        self._reaper.stdin.flush()

    def _reserve_port(self) -> int:
        reservation = reserve_port()
        self._ports.append(reservation)
        return reservation.port

    def _start(self, server: ChildProcess) -> None:
        """Spawns `server`, tells the reaper its pid at once, then waits until it is ready."""
        self._servers.append(server)
        self._tell_reaper(f"pid {server.spawn()}")
        try:
            server.wait_until_ready()
        except ProcessStartError as error:
            self._keep_logs()  # before the message names the log: the temp dir is about to go
            kept = self._kept_log(server)
            raise ControlPlaneError(
                f"{server.name} {error.reason}; its log is kept at {kept}; last lines:\n"
                f"{log_tail(kept, _LOG_TAIL_LINES)}"
            ) from None

    def _start_etcd(self, binary: Path) -> str:
        assert self._workdir is not None
        client_port = self._reserve_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_port = self._reserve_port()
        self._start(
            ChildProcess(
                "etcd",
                [
                    binary,
                    "--data-dir",
                    self._workdir / "etcd",
                    "--listen-client-urls",
                    client_url,
                    "--advertise-client-urls",
                    client_url,
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync",
                    "--log-level",
                    "warn",
                ],
                log_path=self._workdir / "etcd.log",
                listens_on=[client_port, peer_port],
                is_ready=lambda: http_ok(f"{client_url}/health"),
                start_timeout=self.start_timeout,
                stop_timeout=10,
            )
        )
        return client_url

    def _start_apiserver(self, binary: Path, etcd_url: str, certs: ControlPlaneCerts) -> None:
        if self._node is not None:
            address, port = self._node.slot.host_address, _NODE_APISERVER_PORT
        else:
            address, port = "127.0.0.1", self.apiserver_port or self._reserve_port()
        self.server_url = f"https://{address}:{port}"
        context = ssl.create_default_context(cafile=str(certs.serving_ca))
        context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))

        def is_ready() -> bool:
            # Anonymous requests get 403 while RBAC bootstraps, so readiness is asked as admin;
            # ready once /readyz says so and the bootstrap created namespace 'default'.
            return http_ok(f"{self.server_url}/readyz", context=context, timeout=2) and http_ok(
                f"{self.server_url}/api/v1/namespaces/default", context=context, timeout=2
            )

        assert self._workdir is not None
        argv = [
            str(binary),
            "--etcd-servers",
            etcd_url,
            "--cert-dir",
            str(certs.cert_dir),
            "--secure-port",
            str(port),
            "--bind-address",
            address,
            "--advertise-address",
            address,
            "--service-cluster-ip-range",
            SERVICE_SUBNET,
            "--client-ca-file",
            str(certs.client_ca),
            "--service-account-issuer",
            "https://kubernetes.default.svc",
            "--service-account-key-file",
            str(certs.service_account_pub),
            "--service-account-signing-key-file",
            str(certs.service_account_key),
            "--allow-privileged=true",
        ]
        if self._node is None:
            # No controller-manager makes the ServiceAccounts that admission would demand.
            argv += ["--authorization-mode", "RBAC", "--disable-admission-plugins", "ServiceAccount"]
        else:
            argv += [
                "--authorization-mode",
                "Node,RBAC",
                "--enable-admission-plugins",
                "NodeRestriction",
                "--kubelet-preferred-address-types",
                "InternalIP",
                "--kubelet-certificate-authority",
                str(certs.serving_ca),
                "--kubelet-client-certificate",
                str(certs.file("apiserver-kubelet-client.crt")),
                "--kubelet-client-key",
                str(certs.file("apiserver-kubelet-client.key")),
            ]
        self._start(
            ChildProcess(
                "kube-apiserver",
                argv,
                log_path=self._workdir / "kube-apiserver.log",
                listens_on=[port],
                is_ready=is_ready,
                start_timeout=self.start_timeout,
                # It has been seen to hang for over 40 s on SIGTERM; its state is throw-away.
                stop_timeout=10,
            )
        )
        assert self.kubeconfig is not None
        write_kubeconfig(
            self.kubeconfig, self.server_url, certs.serving_ca, certs.admin_cert, certs.admin_key
        )

    def _keep_logs(self) -> None:
        """Copies the server logs that are still in the temp dir out of it, before it is removed."""
        if self._workdir is None or self._kept_logs is not None:
            return
        logs = [s.log_path for s in self._servers if s.log_path.exists()]
        if not logs:
            return
        self._kept_logs = Path(tempfile.mkdtemp(prefix="envtest-failed-logs-"))
        for log in logs:
            shutil.copy2(log, self._kept_logs / log.name)

    def _kept_log(self, server: ChildProcess) -> Path:
        return self._kept_logs / server.log_path.name if self._kept_logs else server.log_path

    def _keep_logs_and_stop(self) -> None:
        self._keep_logs()
        self.stop()

    def stop(self) -> None:
        """Stops the servers (SIGTERM, then SIGKILL) and the node's containers; removes the temp directory."""
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._node is not None:
            self._node.stop()
            self._node = None
        for reservation in self._ports:
            reservation.release()
        self._ports.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._reaper is not None:
            assert self._reaper.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._reaper.stdin.close()
            self._reaper.wait(timeout=30)
            self._reaper = None
