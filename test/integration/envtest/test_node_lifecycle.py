"""A one-node cluster (`python -m envtest up --node`) says it is ready only when it is, and leaves nothing.

Each spec starts its own node: a control plane, containerd with the project's images, the kubelet and
the rest (about 30 s alone, longer beside other nodes), so they are few and each checks everything about
one way of ending. What a node holds on the machine is recorded while a Pod runs on it: its cgroup in
every hierarchy and every process in it (containers and shims included) or started by `up`, its host
link, the mounts under its temp dir and the dir itself. Every piece of it must be gone once the node is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from envtest import images
from envtest.controlplane import NODE_NAME
from test.integration.envtest.processes import (
    LineReader,
    Proc,
    children,
    descendants,
    in_cgroups,
    mentioning,
    named,
    option,
)
from test.integration.polling import eventually

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
UP_NODE = (sys.executable, "-m", "envtest", "up", "--node", "--crds", str(CRDS))
KUBECTL = "/usr/bin/kubectl"
CGROUPS = Path("/sys/fs/cgroup")
READY = f"one-node cluster (node {NODE_NAME} Ready, images loaded) ready in"
# Generous: a node alone starts in about 30 s, but several may start at once on two cores.
START_TIMEOUT = 180.0
POD_START_TIMEOUT = 120.0
# `up` stops each daemon in turn, giving the kubelet and containerd 15 s each before SIGKILL.
STOP_TIMEOUT = 120.0
# How the CRI lists an image a second time: by its id, beside the name it was imported under.
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(autouse=True)
def _own_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about starting servers, whatever the caller's environment says."""
    monkeypatch.delenv("USE_EXISTING_CLUSTER", raising=False)


@pytest.fixture(scope="module")
def project() -> images.ProjectImages:
    """The project's images, already built on this machine (`python -m envtest images`)."""
    return images.project_images()


def _link_index(name: str) -> int | None:
    try:
        return int(Path("/sys/class/net", name, "ifindex").read_text())
    except OSError:
        return None


def _mounts_under(directory: Path) -> list[str]:
    """The mount points at or below `directory` in this mount namespace, the host's."""
    prefix = str(directory)
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    points = [line.split()[4].encode().decode("unicode_escape") for line in lines]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


def _cgroup_of(process: Proc) -> str:
    """The top-level cgroup `process` is in, the same one in every hierarchy that has controllers."""
    lines = Path(f"/proc/{process.pid}/cgroup").read_text().splitlines()
    tops = {
        path.split("/")[1] for _, controllers, path in (line.split(":", 2) for line in lines) if controllers
    }
    assert len(tops) == 1, f"{process} is in different cgroups: {lines}"
    return tops.pop()


def _called(processes: set[Proc], name: str) -> list[Proc]:
    return [p for p in processes if (argv := p.cmdline()) and Path(argv[0]).name == name]


def _conditions(body: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in body.get("status", {}).get("conditions", [])}


def _pause_pod_spec(image: str) -> dict[str, Any]:
    # The image is loaded on the node and in no registry: never pull.
    return {"containers": [{"name": "pause", "image": image, "imagePullPolicy": "Never"}]}


@dataclass(frozen=True)
class Footprint:
    """What a running node holds on the machine; `left()` says what of it is still there."""

    workdir: Path
    cgroup: str
    link: str
    link_index: int  # a later node of the same slot gets a link of the same name, never this one
    processes: frozenset[Proc]

    def left(self) -> list[str]:
        left = [f"cgroup {path}" for path in sorted(CGROUPS.glob(f"*/{self.cgroup}"))]
        still = {p for p in self.processes | mentioning(str(self.workdir)) if p.is_running()}
        left += sorted(f"process {p}" for p in still)
        if _link_index(self.link) == self.link_index:
            left.append(f"link {self.link}")
        left += [f"mount {point}" for point in _mounts_under(self.workdir)]
        if self.workdir.exists():
            left.append(f"dir {self.workdir}")
        return left

    def is_gone(self) -> bool:
        left = self.left()
        assert left == [], f"still there: {left}"
        return True


@dataclass(frozen=True)
class NodeUp:
    """A running `python -m envtest up --node`, its output, and the cluster it serves."""

    process: subprocess.Popen[str]
    output: LineReader
    kubeconfig: Path
    stderr: Path

    def wait_ready(self) -> str:
        try:
            return self.output.wait_for(READY, timeout=START_TIMEOUT)
        except AssertionError as error:
            raise AssertionError(f"{error}\nstderr: {self.stderr.read_text()}") from None

    def server(self) -> str:
        return str(yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])

    def slot(self) -> int:
        """The node slot: the API server listens on its host address, 10.213.<slot>.1."""
        match = re.fullmatch(r"https://10\.213\.(\d+)\.1:6443", self.server())
        assert match is not None, f"not a node slot's API server: {self.server()}"
        return int(match[1])

    def workdir(self) -> Path:
        """The control plane's temp dir, which holds the node's files (the kubelet's among them)."""
        kubelet = named(descendants(self.process.pid), "kubelet")
        root_dir = Path(option(kubelet.cmdline(), "--root-dir"))
        workdir = root_dir.parent.parent
        assert root_dir == workdir / "node" / "kubelet", root_dir
        assert workdir.parent == Path(tempfile.gettempdir()) and workdir.name.startswith("envtest-"), workdir
        return workdir

    def kubectl(self, *arguments: str, stdin: str | None = None) -> str:
        answer = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *arguments],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert answer.returncode == 0, f"kubectl {' '.join(arguments)}: {answer.stderr}"
        return answer.stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-o", "json")))

    def node_is_ready(self) -> bool:
        return _conditions(self.get("node", NODE_NAME)).get("Ready") == "True"

    def images(self) -> list[str]:
        """What the node's containerd lists in the Kubernetes namespace."""
        socket = self.workdir() / "node" / "containerd" / "containerd.sock"
        answer = subprocess.run(
            ["ctr", "-n", "k8s.io", "--address", str(socket), "images", "ls", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert answer.returncode == 0, answer.stderr
        return answer.stdout.split()

    def apply(self, manifest: dict[str, Any]) -> None:
        """Applied once the API server takes it: a Pod waits for its namespace's default ServiceAccount,
        which the controller-manager makes a moment after the Node is Ready."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        eventually(
            lambda: self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest)),
            timeout=60,
            message=f"the API server took {kind} {name}",
        )

    def run_pod(self, name: str, image: str) -> None:
        self.apply(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": _pause_pod_spec(image)}
        )

        def is_running() -> bool:
            status = self.get("pod", name)["status"]
            assert status.get("phase") == "Running", status
            return True

        eventually(is_running, timeout=POD_START_TIMEOUT, interval=1.0, message=f"Pod {name} Running")

    def pod_is_running(self, name: str) -> bool:
        return self.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}") == "Running"

    def footprint(self) -> Footprint:
        """What the node holds now; take it while a Pod runs, so that its shim and containers count."""
        spawned = descendants(self.process.pid)
        workdir = self.workdir()
        cgroup = _cgroup_of(named(spawned, "kubelet"))
        assert cgroup.startswith(f"kubernaut-node-{self.slot()}-"), cgroup
        cgroups = sorted(CGROUPS.glob(f"*/{cgroup}"))
        assert [path.parent for path in cgroups] == sorted(h for h in CGROUPS.iterdir() if h.is_dir())
        members = in_cgroups(cgroups)
        assert _called(members, "kubelet") and _called(members, "containerd-shim-runc-v2"), members
        link = f"kn-node-{self.slot()}"
        index = _link_index(link)
        assert index is not None, f"no host link {link}"
        assert _mounts_under(workdir), f"nothing mounted under {workdir}"
        return Footprint(workdir, cgroup, link, index, frozenset(spawned | members))

    def stop(self, how: signal.Signals) -> float:
        """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM; `up` must end cleanly.
        Returns how long it took."""
        began = time.monotonic()
        if how == signal.SIGINT:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(how)
        code = self.process.wait(timeout=STOP_TIMEOUT)
        lines = self.output.rest(timeout=30)
        assert code == 0, f"exit {code}; stdout {lines}; stderr {self.stderr.read_text()}"
        assert lines[-1].strip() == "one-node cluster stopped", lines
        return time.monotonic() - began


@contextmanager
def _node_up(directory: Path) -> Iterator[NodeUp]:
    """`up --node` in a session of its own, as a shell runs a foreground job; SIGKILLed if it still runs
    at the end, which leaves the clean-up of a failed spec to its reaper."""
    directory.mkdir(exist_ok=True)
    stderr_path = directory / "stderr.txt"
    kubeconfig = directory / "kubeconfig"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [*UP_NODE, "--kubeconfig", str(kubeconfig)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        yield NodeUp(process, LineReader(process.stdout), kubeconfig, stderr_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_up_node_is_ready_when_it_says_so_and_ctrl_c_leaves_nothing(
    tmp_path: Path, project: images.ProjectImages
) -> None:
    with _node_up(tmp_path) as up:
        ready = up.wait_ready()
        assert up.node_is_ready(), "the ready line came before the Node was Ready"
        listed = up.images()
        assert {ref for ref in listed if not IMAGE_ID.fullmatch(ref)} == {a.reference for a in project.all}
        assert up.server() in ready
        print(ready.strip())

        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "pause"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "pause"}},
                "template": {
                    "metadata": {"labels": {"app": "pause"}},
                    "spec": _pause_pod_spec(project.pause.reference),
                },
            },
        }
        up.apply(deployment)

        def is_available() -> bool:
            deployment = up.get("deployment", "pause")
            assert _conditions(deployment).get("Available") == "True", deployment["status"]
            assert deployment["status"].get("readyReplicas") == 1, deployment["status"]
            return True

        eventually(
            is_available, timeout=POD_START_TIMEOUT, interval=1.0, message="Deployment pause Available"
        )
        footprint = up.footprint()

        print(f"stopped by Ctrl-C in {up.stop(signal.SIGINT):.1f}s")

    assert footprint.is_gone()


def test_up_node_leaves_nothing_when_killed_while_a_pod_runs(
    tmp_path: Path, project: images.ProjectImages
) -> None:
    with _node_up(tmp_path) as up:
        print(up.wait_ready().strip())
        up.run_pod("pause", project.pause.reference)
        footprint = up.footprint()

        killed_at = time.monotonic()
        up.process.send_signal(signal.SIGKILL)
        assert up.process.wait(timeout=30) == -signal.SIGKILL

    eventually(footprint.is_gone, timeout=60, message="the reaper did not clean up the killed node")
    print(f"reaper cleaned up {time.monotonic() - killed_at:.1f}s after the owner's SIGKILL")
    up.output.rest(timeout=30)


def test_two_nodes_run_side_by_side_and_stop_apart(tmp_path: Path, project: images.ProjectImages) -> None:
    pause = project.pause.reference
    with _node_up(tmp_path / "first") as first, _node_up(tmp_path / "second") as second:
        for up in (first, second):
            print(up.wait_ready().strip())
        assert first.slot() != second.slot(), f"both nodes serve at {first.server()}"
        for up in (first, second):
            assert up.node_is_ready()
            up.run_pod("pause", pause)
        first_footprint, second_footprint = first.footprint(), second.footprint()
        assert first_footprint.workdir != second_footprint.workdir

        # The second's servers, node daemons and reaper, described now: a process that is gone has no name.
        servers = {server: str(server) for server in children(second.process.pid)}

        print(f"first stopped by SIGTERM in {first.stop(signal.SIGTERM):.1f}s")
        assert first_footprint.is_gone()
        assert [name for server, name in servers.items() if not server.is_running()] == []
        # The API server's view lags (a Node turns NotReady 40 s after its kubelet's last word): a new Pod
        # proves that the second's kubelet, runtime and Pod network still work.
        assert second.node_is_ready() and second.pod_is_running("pause")
        second.run_pod("pause-after", pause)

        print(f"second stopped by Ctrl-C in {second.stop(signal.SIGINT):.1f}s")
    assert second_footprint.is_gone()
