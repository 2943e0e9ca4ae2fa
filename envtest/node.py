"""A real node beside a private control plane: containerd, runc, CNI, kubelet and kube-proxy.

With a node the control plane is a one-node cluster: kube-controller-manager
and kube-scheduler run too, Pods start for real and reach the API server
through the `kubernetes` Service VIP with their ServiceAccount tokens.

Isolation, so that two runs on one machine each have a node:
- every node daemon runs in a network namespace of its own (held by one
  `unshare --net` process and entered with `nsenter --net`; the host's mount
  namespace is kept, or runc would not see the kubelet's tmpfs mounts). The
  node's iptables rules, its bridge and its Pods' addresses live there;
- a veth pair joins it to the host: the host end carries the API server's
  address, the node end the kubelet's. The pair's subnet and link name come
  from a node slot, held by an exclusive `flock` for the node's whole life, so
  no two nodes on the machine share one;
- containerd, the kubelet and the CNI keep every file (state, root, sockets,
  logs, IP allocations) in the control plane's temp directory;
- every process of the node, containers and shims included, runs in a cgroup
  of its own, which is how they are all found and killed at the end, also by
  the reaper when the owner is SIGKILLed.

Machine quirks, each found by a failure: root may not lower `oom_score_adj`
here (no CAP_SYS_RESOURCE), hence containerd's `restrict_oom_score_adj` and
`oom_score = 0` and the kubelet's and kube-proxy's `oomScoreAdj: 0`; the
cgroups are v1, hence `failCgroupV1: false` and the cgroupfs driver. Disk
eviction and image garbage collection are off: a test node has no images it
could pull back, and a full disk of the host is not the node's to manage.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from envtest.certs import ControlPlaneCerts, NodeIdentity, write_kubeconfig
from processes.child import ChildProcess

# Node slots: slot N owns 10.213.N.0/24 (the veth pair's host end .1 and node end .2, the node's Pods
# .128/25, which the host routes to the node end) and the host link `kn-node-N`.
_SLOT_LOCKS: Final = Path("/tmp/kubernaut-node-slots")
_SLOTS: Final = 64
_SLOT_NETWORK: Final = ipaddress.ip_network("10.213.0.0/16")
SERVICE_SUBNET: Final = "10.0.0.0/24"
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
_CNI_PLUGINS: Final = Path("/usr/lib/cni")
# Debian's packages; `make servers` installs them when missing (`python -m debian_packages install`).
NODE_PACKAGES: Final = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "buildah",
    "debootstrap",
)


class NodeError(RuntimeError):
    """The node could not be set up; the message says which step and why."""


def _run(step: str, argv: Sequence[str | os.PathLike[str]]) -> str:
    result = subprocess.run([str(part) for part in argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(
            f"{step} failed ({' '.join(map(str, argv))}), exit {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


@dataclass(frozen=True)
class NodeSlot:
    """One node's share of the machine: a subnet, a host link name, held while `lock_fd` is open."""

    index: int
    lock_fd: int

    @property
    def host_address(self) -> str:
        """The host end of the veth pair: the API server listens here; Pods reach the host here."""
        return str(_SLOT_NETWORK.network_address + self.index * 256 + 1)

    @property
    def node_address(self) -> str:
        """The node end: the kubelet's address, its InternalIP."""
        return str(_SLOT_NETWORK.network_address + self.index * 256 + 2)

    @property
    def pod_subnet(self) -> str:
        """The node's Pods: routed from the host, so the host (the API server's proxy, the specs)
        reaches a Pod at its own address."""
        return f"{_SLOT_NETWORK.network_address + self.index * 256 + 128}/25"

    @property
    def host_link(self) -> str:
        return f"kn-node-{self.index}"

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)

    @classmethod
    def acquire(cls) -> NodeSlot:
        """The first slot no other process holds and whose link is not left on the machine."""
        _SLOT_LOCKS.mkdir(mode=0o777, parents=True, exist_ok=True)
        for index in range(_SLOTS):
            descriptor = os.open(_SLOT_LOCKS / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            slot = cls(index, descriptor)
            # A link of a dead owner, still being cleaned up by its reaper: not ours to take yet.
            if Path(f"/sys/class/net/{slot.host_link}").exists():
                slot.release()
                continue
            return slot
        raise NodeError(f"all {_SLOTS} node slots are in use ({_SLOT_LOCKS})")


def cgroup_hierarchies() -> list[Path]:
    """Every cgroup v1 hierarchy: the kubelet's cgroupfs driver wants its root in each, named ones too."""
    hierarchies = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, _ = line.split(":", 2)
        if controllers:
            hierarchies.append(_CGROUP_ROOT / controllers.split(",")[0].removeprefix("name="))
    return [path for path in hierarchies if path.is_dir()]


def cgroup_mounts(name: str) -> list[Path]:
    """`/<name>` in every mounted hierarchy, whether it exists or not."""
    return [hierarchy / name for hierarchy in sorted(_CGROUP_ROOT.iterdir()) if hierarchy.is_dir()]


def create_cgroup(name: str) -> list[Path]:
    """`/<name>` in every hierarchy; cpuset needs its CPUs and memory nodes before it takes a task."""
    created = []
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        created.append(path)
        if hierarchy.name == "cpuset":
            for setting in ("cpuset.cpus", "cpuset.mems"):
                (path / setting).write_text((hierarchy / setting).read_text())
    return created


def kill_cgroup(paths: Sequence[Path], timeout: float = 30.0) -> None:
    """SIGKILLs every process in the cgroups and their children until none is left, then removes them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = {pid for path in paths for pid in _members(path)}
        if not members:
            break
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        time.sleep(0.05)
    for path in paths:
        for directory in sorted((d for d in path.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()


def _members(path: Path) -> set[int]:
    pids: set[int] = set()
    if not path.is_dir():
        return pids
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in procs.read_text().split())
    return pids


def unmount_under(directory: Path) -> None:
    """Detaches every mount at or below `directory`, deepest first (kubelet tmpfs, rootfs, netns)."""
    prefix = str(directory.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


@dataclass(frozen=True)
class NodeImages:
    """What the node's runtime is given: OCI archives to import, and the Pod sandbox ("pause") image."""

    sandbox: str
    archives: tuple[Path, ...]


@dataclass(frozen=True)
class NodeLayout:
    """Where every node file lives, all under one directory."""

    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


class Node:
    """The node's daemons for one control plane; `start()` returns once the Node is Ready.

    `start_child` starts a server the way the control plane does (registered with
    its reaper, its log kept on failure); `tell_reaper` registers more clean-up.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        slot: NodeSlot,
        name: str,
        start_child: Callable[[ChildProcess], None],
        tell_reaper: Callable[[str], None],
        start_timeout: float,
    ) -> None:
        self.slot = slot
        self.name = name
        self.layout = NodeLayout(workdir / "node")
        self._start_child = start_child
        self._tell_reaper = tell_reaper
        self._start_timeout = start_timeout
        self._cgroup_name = f"kubernaut-node-{slot.index}-{secrets.token_hex(4)}"
        self._cgroups: list[Path] = []
        self._holder: ChildProcess | None = None

    @property
    def identity(self) -> NodeIdentity:
        return NodeIdentity(self.name, self.slot.node_address)

    @property
    def cgroup_root(self) -> str:
        return f"/{self._cgroup_name}"

    # --- network ---------------------------------------------------------------

    def create_network(self) -> None:
        """The private network namespace and the veth pair; run before the API server binds its address."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._cgroups = create_cgroup(self._cgroup_name)
        # runc also makes the cgroup in the unified hierarchy of a hybrid machine: cleaned up too.
        for path in cgroup_mounts(self._cgroup_name):
            self._tell_reaper(f"cgroup {path}")
        holder = ChildProcess(
            "node-netns",
            self._in_cgroup(["unshare", "--net", "--", "sleep", "infinity"]),
            log_path=self.layout.path("node-netns.log"),
            is_ready=self._has_own_netns,
            start_timeout=self._start_timeout,
        )
        self._holder = holder
        self._start_child(holder)
        host, node, link = self.slot.host_address, self.slot.node_address, self.slot.host_link
        _run(
            "create the veth pair",
            ["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", str(holder.pid)],
        )
        _run("address the host end", ["ip", "addr", "add", f"{host}/30", "dev", link])
        _run("bring the host end up", ["ip", "link", "set", link, "up"])
        _run("route the Pods' subnet", ["ip", "route", "add", self.slot.pod_subnet, "via", node, "dev", link])
        for step, argv in (
            ("bring lo up", ["ip", "link", "set", "lo", "up"]),
            ("address the node end", ["ip", "addr", "add", f"{node}/30", "dev", "eth0"]),
            ("bring the node end up", ["ip", "link", "set", "eth0", "up"]),
            ("route through the host", ["ip", "route", "add", "default", "via", host]),
            ("forward packets", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
            ("filter bridged packets", ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]),
        ):
            _run(step, self._nsenter(argv))

    def _has_own_netns(self) -> bool:
        assert self._holder is not None and self._holder.pid is not None
        try:
            return os.readlink(f"/proc/{self._holder.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        except OSError:
            return False

    def _nsenter(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        assert self._holder is not None
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--", *map(str, argv)]

    def _in_cgroup(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """`argv` run by a shell that first moves itself into the node's cgroups, so nothing escapes."""
        joins = "; ".join(f"echo $$ > {path}/cgroup.procs" for path in self._cgroups)
        return ["sh", "-c", f'{joins}; exec "$@"', "node-daemon", *map(str, argv)]

    def _daemon(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        is_ready: Callable[[], bool],
        stop_timeout: float = 10,
    ) -> ChildProcess:
        return ChildProcess(
            name,
            self._in_cgroup(self._nsenter(argv)),
            log_path=self.layout.path(f"{name}.log"),
            is_ready=is_ready,
            start_timeout=self._start_timeout,
            stop_timeout=stop_timeout,
        )

    # --- daemons ---------------------------------------------------------------

    def start_containerd(self, sandbox_image: str) -> None:
        state = self.layout.path("containerd")
        state.mkdir(parents=True, exist_ok=True)
        config = state / "config.toml"
        config.write_text(_containerd_config(self.layout, sandbox_image))
        cni = self.layout.path("cni", "net.d")
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-kubernaut-node.conflist").write_text(json.dumps(_cni_config(self), indent=2))
        # containerd keeps some files where no setting moves them: shim sockets and FIFOs in
        # /run/containerd, the CNI plugins' results in /var/lib/cni. It runs in a mount namespace of its
        # own with private directories mounted there, so they go when it goes, however it goes. The
        # node's directory is a shared mount, so the kubelet's volume mounts reach runc in that namespace
        # and the containers' mounts reach the host (which detaches them at the end).
        _run("share the node's mounts", ["mount", "--bind", self.layout.root, self.layout.root])
        _run("share the node's mounts", ["mount", "--make-shared", self.layout.root])
        private = {Path("/run/containerd"): state / "run", Path("/var/lib/cni"): state / "cni-cache"}
        mounts = []
        for target, source in private.items():
            source.mkdir()
            mounts.append(f"mkdir -p {target} && mount --bind {source} {target}")
        in_private_mounts = ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c"]
        in_private_mounts += [" && ".join([*mounts, 'exec "$@"']), "containerd"]
        self._start_child(
            self._daemon(
                "containerd",
                [*in_private_mounts, "containerd", "--config", config, "--log-level", "warn"],
                self._containerd_answers,
                stop_timeout=15,
            )
        )

    def _containerd_answers(self) -> bool:
        socket = self.layout.containerd_socket
        if not socket.exists():
            return False
        answer = subprocess.run(
            ["ctr", "--address", str(socket), "version"], capture_output=True, timeout=10, check=False
        )
        return answer.returncode == 0

    def import_images(self, archives: Sequence[Path]) -> None:
        """Loads OCI archives into the runtime's Kubernetes namespace: Pods use them with pullPolicy Never."""
        for archive in archives:
            _run(
                f"import {archive.name} into containerd",
                [
                    "ctr",
                    "--address",
                    self.layout.containerd_socket,
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    archive,
                ],
            )

    def start_kubernetes(
        self, certs: ControlPlaneCerts, server_url: str, is_node_ready: Callable[[], bool]
    ) -> None:
        """kube-controller-manager, kube-scheduler, kube-proxy, the kubelet; until the Node is Ready."""
        from envtest.controlplane import resolve_binary

        admin = self.layout.path("admin.kubeconfig")
        kubelet_kubeconfig = self.layout.path("kubelet.kubeconfig")
        write_kubeconfig(admin, server_url, certs.serving_ca, certs.admin_cert, certs.admin_key)
        write_kubeconfig(
            kubelet_kubeconfig, server_url, certs.serving_ca, certs.file("node.crt"), certs.file("node.key")
        )
        # Both as admin, alone (no leader election), their own ports on the node's loopback.
        common: list[str | os.PathLike[str]] = [
            "--kubeconfig",
            admin,
            "--authentication-kubeconfig",
            admin,
            "--authorization-kubeconfig",
            admin,
        ]
        common += ["--leader-elect=false", "--bind-address", "127.0.0.1", "--v", "1"]
        self._start_child(
            self._daemon(
                "kube-controller-manager",
                [
                    resolve_binary("kube-controller-manager"),
                    *common,
                    "--service-account-private-key-file",
                    certs.service_account_key,
                    "--root-ca-file",
                    certs.serving_ca,
                    "--use-service-account-credentials=true",
                    "--service-cluster-ip-range",
                    SERVICE_SUBNET,
                ],
                _always,
            )
        )
        self._start_child(
            self._daemon("kube-scheduler", [resolve_binary("kube-scheduler"), *common], _always)
        )
        proxy_config = self.layout.path("kube-proxy.yaml")
        proxy_config.write_text(yaml.safe_dump(_kube_proxy_config(self, admin)))
        self._start_child(
            self._daemon(
                "kube-proxy", [resolve_binary("kube-proxy"), "--config", proxy_config, "--v", "1"], _always
            )
        )
        kubelet_config = self.layout.path("kubelet.yaml")
        kubelet_config.write_text(yaml.safe_dump(_kubelet_config(self, certs)))
        self.layout.path("resolv.conf").write_text(
            "# no DNS on the test node: Services are reached by ClusterIP\n"
        )
        self._start_child(
            self._daemon(
                "kubelet",
                [
                    resolve_binary("kubelet"),
                    "--config",
                    kubelet_config,
                    "--kubeconfig",
                    kubelet_kubeconfig,
                    "--root-dir",
                    self.layout.path("kubelet"),
                    "--cert-dir",
                    self.layout.path("kubelet", "pki"),
                    "--hostname-override",
                    self.name,
                    "--node-ip",
                    self.slot.node_address,
                    "--v",
                    "1",
                ],
                is_node_ready,
                stop_timeout=15,
            )
        )

    def stop(self) -> None:
        """Kills what is left in the node's cgroups (containers, shims) and frees every mount and the slot."""
        kill_cgroup(cgroup_mounts(self._cgroup_name))
        unmount_under(self.layout.root)
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(["ip", "link", "del", self.slot.host_link], capture_output=True, check=False)
        self.slot.release()


def _always() -> bool:
    return True


def _containerd_config(layout: NodeLayout, sandbox_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{layout.path("containerd", "root")}"
state = "{layout.path("containerd", "state")}"
oom_score = 0
# The opt plugin would install into /opt/containerd; the other snapshotters are not used.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]
[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  Root = "{layout.path("runc")}"

[{cri}.cni]
  bin_dir = "{_CNI_PLUGINS}"
  conf_dir = "{layout.path("cni", "net.d")}"
"""


def _cni_config(node: Node) -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "kubernaut-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.slot.pod_subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.layout.path("cni", "ipam")),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kube_proxy_config(node: Node, kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node.name,
        "bindAddress": node.slot.node_address,
        "clusterCIDR": node.slot.pod_subnet,
        "oomScoreAdj": 0,
        # Zeros leave the machine-wide conntrack settings alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
    }


def _kubelet_config(node: Node, certs: ControlPlaneCerts) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": f"unix://{node.layout.containerd_socket}",
        "address": node.slot.node_address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(certs.file("kubelet.crt")),
        "tlsPrivateKeyFile": str(certs.file("kubelet.key")),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(certs.client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(node.layout.path("pod-logs")),
        "resolvConf": str(node.layout.path("resolv.conf")),
        "failSwapOn": False,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "imagefs.available": "0%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerNode": True,
        "staticPodPath": "",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "serializeImagePulls": False,
        "hairpinMode": "hairpin-veth",
        "protectKernelDefaults": False,
        "localStorageCapacityIsolation": True,
    }
