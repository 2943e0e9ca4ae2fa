"""Both charts installed onto a real node: the image built from deploy/Containerfile, run by the kubelet.

What a platform team's `helm install` does, checked where only a node shows it: the Deployments
become Available, the probes tell the truth, the in-Pod controller (in-cluster credentials, the
chart's ServiceAccount, the OPA sidecar) takes an SP to Completed with its exact audit trail in the
in-Pod DataStorage (on the host's PostgreSQL and Redis), the kubelet's own `..data` swap of the
policy ConfigMap is hot-reloaded, a deleted Pod loses and duplicates nothing, `helm upgrade` rolls,
`helm uninstall` leaves only the CRDs, and the runtime enforces the security context.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.policies import POLICY_FILE_NAME
from devstack import charts
from devstack.charts import SIGNALPROCESSING_CHART
from test.integration.deploy.charts import Release, controller_service_account, unique_name
from test.integration.node.cluster import (
    POD_START_SECONDS,
    NodeCluster,
    describe,
    eventually_on_node,
    install,
    pod_url,
    pods,
    selector_of,
    upgrade,
    wait_available,
)
from test.integration.node.conftest import DataStorageOnNode
from test.integration.polling import eventually
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    create_signals,
    labels_policy,
    process_signal,
    wait_for_exact_trail,
    wait_for_phase,
)

# A Pod's life on a loaded machine: pulls nothing, but installs, probes and restarts take minutes.
pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

# Liveness: three failed probes 20 s apart, then a grace period the stopped process cannot use.
_WEDGED_RESTART_SECONDS = 240.0


def _install_controller(
    cluster: NodeCluster,
    datastorage: DataStorageOnNode,
    directory: Path,
    *,
    datastorage_url: str | None = None,
    **extra: Any,
) -> Release:
    """The controller chart in a namespace of its own, which is also the only one it watches."""
    namespace = unique_name("sp")
    url = datastorage_url or datastorage.in_cluster_url
    values = charts.controller_values(cluster.state, url, watchNamespaces=[namespace], **extra)
    return install(cluster, SIGNALPROCESSING_CHART, values, directory, namespace=namespace)


def _available_controller(cluster: NodeCluster, datastorage: DataStorageOnNode, directory: Path) -> Release:
    """`_install_controller`, once its Deployment is Available."""
    controller = _install_controller(cluster, datastorage, directory)
    wait_available(cluster, controller)
    return controller


def _metrics_url(cluster: NodeCluster, controller: Release) -> str:
    return f"{pod_url(cluster, controller, 9090)}/metrics"


def _controller_pod(cluster: NodeCluster, controller: Release) -> dict[str, Any]:
    live = [pod for pod in pods(cluster, controller) if not pod["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, f"expected one controller Pod\n{describe(cluster, controller.namespace)}"
    return live[0]


def _container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


def _host_pid(container_id: str) -> int:
    """The container's first process, as the host sees it: the member of its cgroup started by the shim."""
    identifier = container_id.removeprefix("containerd://")
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cgroups = Path(f"/proc/{entry}/cgroup").read_text()
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_command = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if identifier in cgroups and b"containerd-shim" in parent_command:
            members.append(int(entry))
    assert len(members) == 1, f"expected one process of container {identifier} under its shim, got {members}"
    return members[0]


def _readyz(url: str) -> tuple[int, str]:
    """The status and body of the controller's /readyz; 0 and the reason while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def test_the_charts_become_available_and_the_in_pod_controller_completes_an_sp_with_its_exact_trail(
    node_cluster: NodeCluster,
    node_custom_objects: client.CustomObjectsApi,
    datastorage_on_node: DataStorageOnNode,
    tmp_path: Path,
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    pod = _controller_pod(node_cluster, controller)
    assert pod["spec"]["serviceAccountName"] == controller_service_account(controller)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["controller", "opa"]
    assert all(_container_status(pod, name)["ready"] for name in ("controller", "opa"))

    sp = process_signal(node_custom_objects, controller.namespace, timeout=POD_START_SECONDS)

    assert sp["status"]["phase"] == "Completed", sp["status"]
    wait_for_exact_trail(
        datastorage_on_node.url,
        _metrics_url(node_cluster, controller),
        sp["spec"]["remediationRequestRef"]["name"],
        SUCCESS_TRAIL,
        timeout=60,
    )


def test_the_controller_is_not_ready_until_datastorage_answers(
    node_cluster: NodeCluster, datastorage_on_node: DataStorageOnNode, tmp_path: Path
) -> None:
    # A Service in front of DataStorage's Pod that selects it only once the spec labels the Pod: until
    # then the controller's DataStorage has no endpoint, as while DataStorage is down.
    datastorage = datastorage_on_node.release
    (serving,) = pods(node_cluster, datastorage)
    selector = {**selector_of(node_cluster, datastorage), "node-spec/serving": "yes"}
    gate = tmp_path / "service.yaml"
    gate.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "late-datastorage", "namespace": datastorage.namespace},
                "spec": {"selector": selector, "ports": [{"port": 8080, "targetPort": 8080}]},
            }
        )
    )
    node_cluster.kubectl("apply", "-f", str(gate))
    late = node_cluster.get("service", "late-datastorage", datastorage.namespace)["spec"]["clusterIP"]
    controller = _install_controller(
        node_cluster, datastorage_on_node, tmp_path, datastorage_url=f"http://{late}:8080"
    )

    def running_but_not_ready() -> tuple[dict[str, Any], str] | None:
        pod = _controller_pod(node_cluster, controller)
        statuses = pod["status"].get("containerStatuses", [])
        running = statuses and all("running" in s["state"] for s in statuses) and pod["status"].get("podIP")
        if not running:
            return None
        status, body = _readyz(f"http://{pod['status']['podIP']}:8082")
        return (pod, body) if status == 503 and "datastorage" in body.lower() else None

    pod, body = eventually_on_node(
        node_cluster,
        controller.namespace,
        running_but_not_ready,
        message="the controller running with /readyz naming DataStorage",
    )

    def probed_not_ready() -> bool:
        # The kubelet's own verdict on /readyz, not just what /readyz says when asked.
        events = node_cluster.kubectl(
            "get", "events", "-n", controller.namespace, "-o", "json",
            "--field-selector", f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy",
        ).stdout  # fmt: skip
        messages = [event["message"] for event in json.loads(events)["items"]]
        return any("Readiness probe failed" in m and "statuscode: 503" in m for m in messages)

    eventually_on_node(
        node_cluster, controller.namespace, probed_not_ready, message="the kubelet's readiness probe got 503"
    )
    assert not _is_ready(_controller_pod(node_cluster, controller)), body

    node_cluster.kubectl(
        "label", "pod", serving["metadata"]["name"], "-n", datastorage.namespace, "node-spec/serving=yes"
    )
    wait_available(node_cluster, controller)
    assert _readyz(pod_url(node_cluster, controller, 8082))[0] == 200


def test_liveness_restarts_a_wedged_controller(
    node_cluster: NodeCluster,
    node_custom_objects: client.CustomObjectsApi,
    datastorage_on_node: DataStorageOnNode,
    tmp_path: Path,
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    wedged = _container_status(_controller_pod(node_cluster, controller), "controller")
    # Stopped, not killed: the process is there and holds its port, but answers nothing.
    os.kill(_host_pid(wedged["containerID"]), signal.SIGSTOP)

    def restarted() -> dict[str, Any] | None:
        status = _container_status(_controller_pod(node_cluster, controller), "controller")
        return status if status["restartCount"] >= 1 and status["ready"] else None

    status = eventually_on_node(
        node_cluster,
        controller.namespace,
        restarted,
        timeout=_WEDGED_RESTART_SECONDS,
        interval=2.0,
        message="the wedged controller restarted and ready",
    )
    assert status["containerID"] != wedged["containerID"]
    assert (
        process_signal(node_custom_objects, controller.namespace, timeout=POD_START_SECONDS)["status"][
            "phase"
        ]
        == "Completed"
    )


def test_editing_the_policy_configmap_reaches_the_controller_through_the_kubelets_data_swap(
    node_cluster: NodeCluster,
    node_custom_objects: client.CustomObjectsApi,
    datastorage_on_node: DataStorageOnNode,
    tmp_path: Path,
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    configmap = next(m for m in controller.manifests() if m["kind"] == "ConfigMap")["metadata"]["name"]
    edited = labels_policy({"team": ["node-reload"]})
    digest = hashlib.sha256(edited.encode()).hexdigest()

    node_cluster.kubectl(
        "patch", "configmap", configmap, "-n", controller.namespace, "--type", "merge",
        "-p", json.dumps({"data": {POLICY_FILE_NAME: edited}}),
    )  # fmt: skip

    def classified_with_the_edit() -> dict[str, Any] | None:
        sp = process_signal(node_custom_objects, controller.namespace, timeout=POD_START_SECONDS)
        return sp if sp["status"]["signalClassification"]["policyHash"] == digest else None

    # The kubelet swaps the mounted files on its next sync of the Pod: SPs classified before it keep
    # the shipped policy's hash, so new ones are made until one carries the edit's.
    sp = eventually_on_node(
        node_cluster,
        controller.namespace,
        classified_with_the_edit,
        interval=2.0,
        message=f"an SP classified by the edited policy (sha256 {digest})",
    )
    assert sp["status"]["phase"] == "Completed"
    pod = _controller_pod(node_cluster, controller)
    assert _container_status(pod, "controller")["restartCount"] == 0  # reloaded, not restarted


def test_deleting_the_controller_pod_mid_burst_loses_and_duplicates_nothing(
    node_cluster: NodeCluster,
    node_custom_objects: client.CustomObjectsApi,
    datastorage_on_node: DataStorageOnNode,
    tmp_path: Path,
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    first = _controller_pod(node_cluster, controller)["metadata"]["name"]
    names = create_signals(node_custom_objects, controller.namespace, 40)

    def some_completed() -> int | None:
        done = sum(
            1
            for sp in node_custom_objects.list_namespaced_custom_object(
                "kubernaut.ai", "v1alpha1", controller.namespace, "signalprocessings"
            )["items"]
            if (sp.get("status") or {}).get("phase") == "Completed"
        )
        return done if done >= 3 else None

    done_before = eventually(some_completed, timeout=POD_START_SECONDS, message="some SPs Completed")
    node_cluster.kubectl("delete", "pod", first, "-n", controller.namespace, "--wait=false")

    completed = [
        wait_for_phase(node_custom_objects, controller.namespace, name, timeout=POD_START_SECONDS)
        for name in names
    ]
    assert [sp["status"]["phase"] for sp in completed] == ["Completed"] * len(names)
    wait_available(node_cluster, controller)  # the replacement may still be starting
    replacement = _controller_pod(node_cluster, controller)
    assert replacement["metadata"]["name"] != first
    assert done_before < len(names), "the burst was over before the Pod was deleted"
    metrics = f"http://{replacement['status']['podIP']}:9090/metrics"
    for sp in completed:
        wait_for_exact_trail(
            datastorage_on_node.url,
            metrics,
            sp["spec"]["remediationRequestRef"]["name"],
            SUCCESS_TRAIL,
            timeout=60,
        )


def test_helm_upgrade_rolls_the_controller_to_the_new_settings(
    node_cluster: NodeCluster,
    node_custom_objects: client.CustomObjectsApi,
    datastorage_on_node: DataStorageOnNode,
    tmp_path: Path,
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    before = _controller_pod(node_cluster, controller)["metadata"]["name"]

    values = charts.controller_values(
        node_cluster.state,
        datastorage_on_node.in_cluster_url,
        watchNamespaces=[controller.namespace],
        config={"deadlineSeconds": 123},
    )
    upgrade(node_cluster, controller, values, tmp_path)

    def rolled() -> dict[str, Any] | None:
        wait_available(node_cluster, controller)
        live = [pod for pod in pods(node_cluster, controller) if not pod["metadata"].get("deletionTimestamp")]
        return live[0] if len(live) == 1 and live[0]["metadata"]["name"] != before else None

    pod = eventually(rolled, timeout=POD_START_SECONDS, interval=1.0, message="the upgrade rolled out")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SP_DEADLINE_SECONDS"] == "123"
    assert _is_ready(pod)
    assert (
        process_signal(node_custom_objects, controller.namespace, timeout=POD_START_SECONDS)["status"][
            "phase"
        ]
        == "Completed"
    )


def test_helm_uninstall_leaves_nothing_but_the_crds(
    node_cluster: NodeCluster, datastorage_on_node: DataStorageOnNode, tmp_path: Path
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    selector = f"app.kubernetes.io/instance={controller.name}"
    namespaced = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,leases,events"
    assert node_cluster.kubectl(
        "get", namespaced, "-n", controller.namespace, "-l", selector, "-o", "name"
    ).stdout

    controller.uninstall()

    def everything_gone() -> bool:
        left = node_cluster.kubectl("get", "pods", "-n", controller.namespace, "-o", "name").stdout
        labelled = node_cluster.kubectl(
            "get", namespaced, "-n", controller.namespace, "-l", selector, "-o", "name"
        ).stdout
        cluster_wide = node_cluster.kubectl(
            "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
        ).stdout
        assert not (left or labelled or cluster_wide), f"left: {left} {labelled} {cluster_wide}"
        return True

    eventually_on_node(
        node_cluster, controller.namespace, everything_gone, message="nothing of the release left"
    )
    crds = node_cluster.kubectl("get", "crd", "-o", "name").stdout
    assert "customresourcedefinition.apiextensions.k8s.io/signalprocessings.kubernaut.ai" in crds


def test_the_runtime_enforces_the_security_context(
    node_cluster: NodeCluster, datastorage_on_node: DataStorageOnNode, tmp_path: Path
) -> None:
    controller = _available_controller(node_cluster, datastorage_on_node, tmp_path)
    pod = _controller_pod(node_cluster, controller)

    for name in ("controller", "opa"):
        pid = _host_pid(_container_status(pod, name)["containerID"])
        status = dict(
            line.split(":\t", 1)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ":\t" in line
        )
        root = next(
            line.split()
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            if line.split()[4] == "/"
        )
        assert status["Uid"].split()[:2] == ["65532", "65532"], (name, status["Uid"])
        assert status["Gid"].split()[:2] == ["65532", "65532"], (name, status["Gid"])
        assert status["NoNewPrivs"].strip() == "1", name
        assert {status[c].strip() for c in ("CapPrm", "CapEff", "CapBnd")} == {"0000000000000000"}, name
        assert "ro" in root[5].split(","), (name, root)

    refused = node_cluster.kubectl(
        "exec", pod["metadata"]["name"], "-n", controller.namespace, "-c", "controller", "--",
        "python", "-c", "open('/written-by-the-spec', 'w')",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused
