"""Policy hot reload (BR-SP-072) against a running controller: what a change to the policy directory does.

Most specs rewrite the policies of the worker's own controller: specs on one
worker run one after another, every worker has its own controller, OPA and
policy copy, and each spec puts the shipped policies back and waits until
they are active again before the next one starts. They count reloads from
where the controller stood when the spec began. Specs that need a controller
started differently (a Pod identity, the kubelet's ConfigMap layout, an OPA
to restart) run their own, watching a namespace prefix outside the worker's
glob. Each waits for the reported hash (`signalprocessing_policy_hash_info`)
or a reload counter to change, never for a fixed time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.hotreload import ReportedReloadResult
from controller.policies import MODULE_ID, POLICY_FILE_NAME
from devstack.controller_process import ControllerProcess
from devstack.manifests import unique_rr_name
from devstack.opa_server import OpaServer
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from envtest import assets
from test.integration.polling import eventually
from test.integration.signalprocessing.conftest import (
    NamespaceFactory,
    controller_settings,
    pod,
)
from test.integration.signalprocessing.support import (
    SHIPPED_POLICY,
    audit_events,
    business_fields,
    completed_status,
    counter_value,
    labels_policy,
    metric_value,
    scrape,
    wait_for_audit_types,
    wait_for_phase,
    wait_until_delivered,
)

HASH_METRIC = "signalprocessing_policy_hash_info"
RELOADS_METRIC = "signalprocessing_policy_reloads_total"
PRODUCTION = {"kubernaut.ai/environment": "production"}
GENERATION_ONE = "..2026_11_24_10_00_00.000000001"


SHIPPED = SHIPPED_POLICY


# A missing closing bracket: OPA refuses it at upload with policy.rego:<line>.
BROKEN_POLICY = SHIPPED + '\nbroken := {"stage": ["broken"]\n'


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ReloadingController:
    """A controller over `policy_dir`, and what it reports since the spec began."""

    process: ControllerProcess
    opa: OpaServer
    policy_dir: Path
    make_namespace: Callable[[], str]
    # Reload counts and log size when the spec began: a shared controller has a past.
    counted_from: dict[str, float] = field(default_factory=dict)
    log_from: int = 0

    def begin_spec(self) -> None:
        results = (
            ReportedReloadResult.ACTIVATED,
            ReportedReloadResult.UNCHANGED,
            ReportedReloadResult.REJECTED,
            ReportedReloadResult.MISSING,
            ReportedReloadResult.RESTORED,
        )
        self.counted_from = {
            result: counter_value(self.process.metrics_url, RELOADS_METRIC, result=result)
            for result in results
        }
        self.log_from = self.process.log_path.stat().st_size

    def write(self, text: str) -> str:
        """An in-place rewrite of policy.rego (truncate, then write), as `kubectl cp` or an editor without
        backups does."""
        (self.policy_dir / POLICY_FILE_NAME).write_text(text)
        return sha256(text)

    def active_hash(self) -> str:
        """The one hash the controller reports as active (a series of value 1)."""
        active = scrape(self.process.metrics_url).sample(HASH_METRIC, policy=POLICY_FILE_NAME)
        assert active.value == 1, active
        return active.labels["sha256"]

    def is_active(self, digest: str) -> bool:
        return self.active_hash() == digest

    def wait_until_active(self, digest: str, timeout: float = 15.0) -> None:
        eventually(
            lambda: self.is_active(digest),
            timeout=timeout,
            message=f"{POLICY_FILE_NAME} with hash {digest[:16]} never became active",
        )

    def reloads(self, result: str) -> float:
        """Reloads in this spec that ended in `result` (a `ReportedReloadResult`); fails while no reload of
        this controller ever has (no series yet)."""
        total = metric_value(self.process.metrics_url, RELOADS_METRIC, result=result)
        return total - self.counted_from.get(result, 0.0)

    def reloads_if_any(self, result: str) -> float:
        """Like `reloads`, but 0 for a result no reload has ended in, whose series does not exist."""
        total = counter_value(self.process.metrics_url, RELOADS_METRIC, result=result)
        return total - self.counted_from.get(result, 0.0)

    def wait_for_reloads(self, result: str, at_least: float) -> None:
        eventually(
            lambda: self.reloads(result) >= at_least,
            timeout=15.0,
            message=f"no policy reload with result={result} (wanted {at_least})",
        )

    def all_reloads(self) -> float:
        return sum(sample.value for sample in scrape(self.process.metrics_url).samples(RELOADS_METRIC))

    def classify(
        self, custom_objects: client.CustomObjectsApi, namespace: str, rr: str = ""
    ) -> dict[str, Any]:
        """Creates an SP (its Pod absent: degraded enrichment) and returns its status once Completed."""
        return completed_status(custom_objects, namespace, rr_name=rr or unique_rr_name())

    def log(self) -> str:
        """What the controller logged since the spec began."""
        with self.process.log_path.open("rb") as log:
            log.seek(self.log_from)
            return log.read().decode(errors="replace")

    def restore_shipped_policy(self) -> None:
        """The shipped policy back in place, and active again: the next spec finds it as shipped."""
        self.wait_until_active(self.write(SHIPPED))


def custom_labels(status: dict[str, Any]) -> dict[str, list[str]]:
    return dict(status["kubernetesContext"].get("customLabels") or {})


def kubelet_layout(root: Path) -> None:
    """The shipped policy mounted as the kubelet mounts a ConfigMap: `..data` and links through it."""
    copy_shipped_policies(root / GENERATION_ONE)
    (root / "..data").symlink_to(GENERATION_ONE)
    for name in os.listdir(root / GENERATION_ONE):
        (root / name).symlink_to(Path("..data") / name)


def swap_configmap(root: Path, generation: str, changes: dict[str, str]) -> None:
    """What the kubelet does on a ConfigMap update: new generation, `..data` renamed over, old one removed."""
    old = os.readlink(root / "..data")
    shutil.copytree(root / old, root / generation)
    for name, text in changes.items():
        (root / generation / name).write_text(text)
    (root / "..data_tmp").symlink_to(generation)
    os.replace(root / "..data_tmp", root / "..data")
    shutil.rmtree(root / old)


StartController = Callable[..., ReloadingController]


@pytest.fixture
def worker_reloading(
    operator: ControllerProcess,
    worker_opa: OpaServer,
    worker_policy_dir: Path,
    make_namespace: NamespaceFactory,
) -> Iterator[ReloadingController]:
    """The worker's own controller, whose policy the spec may rewrite; restored afterwards."""
    controller = ReloadingController(
        operator, worker_opa, worker_policy_dir, lambda: make_namespace(PRODUCTION)
    )
    controller.begin_spec()
    yield controller
    controller.restore_shipped_policy()


@pytest.fixture
def start_controller(
    stack: StackState, make_namespace: NamespaceFactory, worker_id: str, tmp_path: Path
) -> Iterator[StartController]:
    """Starts one controller (own OPA, own policy copy, own namespace prefix) per call; stops them after."""
    running: list[ReloadingController] = []

    def start(*, layout: str = "plain", **environment: str) -> ReloadingController:
        policy_dir = tmp_path / f"policies-{len(running)}"
        if layout == "kubelet":
            policy_dir.mkdir()
            kubelet_layout(policy_dir)
        else:
            copy_shipped_policies(policy_dir)
        opa = OpaServer(assets.OPA.path, log_path=tmp_path / f"opa-{len(running)}.log").start()
        prefix = f"spx-{worker_id}-{secrets.token_hex(3)}-"
        settings = controller_settings(
            stack, namespaces=f"{prefix}*", policy_dir=policy_dir, opa_url=opa.url, **environment
        )
        process = ControllerProcess(settings=settings, log_path=tmp_path / f"controller-{len(running)}.log")
        controller = ReloadingController(
            process, opa, policy_dir, lambda: make_namespace(PRODUCTION, prefix=prefix)
        )
        running.append(controller)
        process.start()
        # The watcher reloads once at start (changes made while it started); let that pass first,
        # so every reload a spec counts is its own.
        controller.wait_for_reloads(ReportedReloadResult.UNCHANGED, 1)
        controller.begin_spec()
        return controller

    yield start
    for controller in running:
        controller.process.close()
        controller.opa.close()


@pytest.mark.br("BR-SP-072")
def test_a_changed_policy_file_is_detected(
    worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    controller.wait_until_active(controller.write(labels_policy({"version": ["v1"]})))
    assert custom_labels(controller.classify(custom_objects, namespace)) == {"version": ["v1"]}

    v2 = controller.write(labels_policy({"version": ["v2"]}))
    controller.wait_until_active(v2)

    assert custom_labels(controller.classify(custom_objects, namespace)) == {"version": ["v2"]}
    assert controller.reloads(ReportedReloadResult.ACTIVATED) == 2


@pytest.mark.br("BR-SP-072")
def test_a_valid_update_applies_to_new_sps_and_leaves_finished_ones_alone(
    worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    controller.wait_until_active(controller.write(labels_policy({"status": ["alpha"]})))
    before = controller.classify(custom_objects, namespace, rr := unique_rr_name())

    controller.wait_until_active(controller.write(labels_policy({"status": ["beta"]})))
    after = controller.classify(custom_objects, namespace)

    assert custom_labels(before) == {"status": ["alpha"]}
    assert custom_labels(after) == {"status": ["beta"]}
    still = wait_for_phase(custom_objects, namespace, f"sp-{rr}")
    assert custom_labels(still["status"]) == {"status": ["alpha"]}


@pytest.mark.br("BR-SP-072")
def test_an_invalid_update_keeps_the_old_policy_and_says_so(
    start_controller: StartController,
    custom_objects: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    core.create_namespaced_pod(namespace, pod("signalprocessing-controller"))
    controller = start_controller(POD_NAME="signalprocessing-controller", POD_NAMESPACE=namespace)
    watched = controller.make_namespace()
    prod = controller.write(labels_policy({"stage": ["prod"]}))
    controller.wait_until_active(prod)
    assert custom_labels(controller.classify(custom_objects, watched)) == {"stage": ["prod"]}

    controller.write(BROKEN_POLICY)
    controller.wait_for_reloads(ReportedReloadResult.REJECTED, 1)

    assert controller.is_active(prod)
    assert not controller.is_active(sha256(BROKEN_POLICY))
    assert custom_labels(controller.classify(custom_objects, watched)) == {"stage": ["prod"]}
    assert re.search(r"policy reload rejected.*policy\.rego:\d+", controller.log())

    def rejection_event() -> Any:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=signalprocessing-controller"
        ).items
        return next((e for e in events if e.reason == "PolicyReloadRejected"), None)

    event = eventually(rejection_event, timeout=10, message="no PolicyReloadRejected Event on the Pod")
    assert event.type == "Warning"
    assert event.involved_object.kind == "Pod"
    assert "policy.rego" in event.message


@pytest.mark.br("BR-SP-072")
def test_a_valid_policy_after_an_invalid_one_is_picked_up(
    worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    controller.write(BROKEN_POLICY)
    controller.wait_for_reloads(ReportedReloadResult.REJECTED, 1)

    fixed = controller.write(labels_policy({"fixed": ["yes"]}))
    controller.wait_until_active(fixed)

    assert custom_labels(controller.classify(custom_objects, namespace)) == {"fixed": ["yes"]}


@pytest.mark.br("BR-SP-072")
def test_a_configmap_symlink_swap_is_picked_up(
    start_controller: StartController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = start_controller(layout="kubelet")
    namespace = controller.make_namespace()
    shipped = controller.classify(custom_objects, namespace)
    text = labels_policy({"mounted": ["configmap"]})

    swap_configmap(controller.policy_dir, "..2026_11_24_10_05_00.000000002", {POLICY_FILE_NAME: text})
    controller.wait_until_active(sha256(text))

    assert custom_labels(shipped) == {"environment": ["production"]}
    assert custom_labels(controller.classify(custom_objects, namespace)) == {"mounted": ["configmap"]}
    assert controller.reloads_if_any(ReportedReloadResult.REJECTED) == 0
    assert controller.reloads_if_any(ReportedReloadResult.MISSING) == 0


@pytest.mark.br("BR-SP-072")
def test_a_burst_of_writes_ends_on_the_last_content_in_few_reloads(
    worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    before = controller.all_reloads()

    texts = [labels_policy({"burst": [f"write-{n}"]}) for n in range(20)]
    for text in texts:
        controller.write(text)
    controller.wait_until_active(sha256(texts[-1]))

    reloads = controller.all_reloads() - before
    assert 1 <= reloads <= 5, f"{reloads} reloads for one burst of 20 writes"
    assert custom_labels(controller.classify(custom_objects, namespace)) == {"burst": ["write-19"]}


@pytest.mark.br("BR-SP-072")
def test_a_deleted_policy_keeps_the_last_good_until_it_is_recreated(
    worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    kept = controller.write(labels_policy({"kept": ["yes"]}))
    controller.wait_until_active(kept)

    (controller.policy_dir / POLICY_FILE_NAME).unlink()
    controller.wait_for_reloads(ReportedReloadResult.MISSING, 1)

    assert controller.is_active(kept)
    assert custom_labels(controller.classify(custom_objects, namespace)) == {"kept": ["yes"]}
    assert "policy.rego is missing" in controller.log()

    recreated = controller.write(labels_policy({"recreated": ["yes"]}))
    controller.wait_until_active(recreated)
    assert custom_labels(controller.classify(custom_objects, namespace)) == {"recreated": ["yes"]}


# Every rule answers something the shipped policy never does.
RELOADED_POLICY = """package signalprocessing

import rego.v1

severity := "info"

environment := {"environment": "staging", "source": "reloaded"}

priority := {"priority": "P3", "policy_name": "reloaded"}

labels := {"reloaded": ["yes"]}

cluster := "reloaded-cluster"

business := {
	"business_unit": "reloaded-unit", "service_owner": "reloaded-owner",
	"criticality": "low", "sla": "platinum",
}
"""


@pytest.mark.br("BR-SP-072")
def test_every_rule_of_a_reloaded_policy_applies(
    worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    reloaded = controller.write(RELOADED_POLICY)
    controller.wait_until_active(reloaded)

    status = controller.classify(custom_objects, namespace)

    environment = status["environmentClassification"]
    assert (environment["environment"], environment["source"]) == ("Staging", "reloaded")
    assert (status["priorityAssignment"]["priority"], status["priorityAssignment"]["policyName"]) == (
        "P3",
        "reloaded",
    )
    # The policy's lower-case tiers are written as the CRD's PascalCase values.
    assert business_fields(status) == ("reloaded-unit", "reloaded-owner", "Low", "Platinum")
    assert custom_labels(status) == {"reloaded": ["yes"]}
    classified = status["signalClassification"]
    assert (classified["severity"], classified["clusterClassification"], classified["policyHash"]) == (
        "info",
        "reloaded-cluster",
        reloaded,
    )
    assert controller.reloads(ReportedReloadResult.ACTIVATED) == 1


@pytest.mark.br("BR-SP-072")
def test_sps_before_and_after_a_reload_record_the_hash_that_decided_them(
    stack: StackState, worker_reloading: ReloadingController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = worker_reloading
    namespace = controller.make_namespace()
    before = controller.classify(custom_objects, namespace, rr_before := unique_rr_name())

    reloaded = controller.write(RELOADED_POLICY)
    controller.wait_until_active(reloaded)
    after = controller.classify(custom_objects, namespace, rr_after := unique_rr_name())

    assert (before["priorityAssignment"]["priority"], before["signalClassification"]["policyHash"]) == (
        "P0",
        sha256(SHIPPED),
    )
    assert (after["priorityAssignment"]["priority"], after["signalClassification"]["policyHash"]) == (
        "P3",
        reloaded,
    )
    for rr, digest in ((rr_before, sha256(SHIPPED)), (rr_after, reloaded)):
        wait_for_audit_types(stack.datastorage_url, rr, {"signalprocessing.classification.decision": 1})
        wait_until_delivered(controller.process.metrics_url)
        (decision,) = audit_events(
            stack.datastorage_url, rr, event_type="signalprocessing.classification.decision"
        )
        assert decision["event_data"]["policy_hash"] == digest


def opa_modules(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/v1/policies", timeout=5) as answer:
        return {module["id"] for module in json.load(answer)["result"]}


@pytest.mark.br("BR-SP-072")
def test_a_restarted_opa_gets_the_active_policy_again(
    start_controller: StartController, custom_objects: client.CustomObjectsApi
) -> None:
    controller = start_controller()
    namespace = controller.make_namespace()
    active = controller.write(labels_policy({"survives": ["restart"]}))
    controller.wait_until_active(active)

    controller.opa.stop()
    controller.opa.start()  # on the port it keeps reserved, where the controller expects it
    controller.wait_for_reloads(ReportedReloadResult.RESTORED, 1)

    assert opa_modules(controller.opa.url) == {MODULE_ID}
    status = controller.classify(custom_objects, namespace)
    assert custom_labels(status) == {"survives": ["restart"]}
    assert status["environmentClassification"]["environment"] == "Production"
    assert status["priorityAssignment"]["priority"] == "P0"


@pytest.mark.br("BR-SP-072")
def test_an_edit_while_opa_is_down_is_activated_once_it_is_back(
    start_controller: StartController, custom_objects: client.CustomObjectsApi
) -> None:
    """An OPA sidecar restarting while its ConfigMap is edited: the edit waits for it, and is not refused."""
    controller = start_controller()
    namespace = controller.make_namespace()

    controller.opa.stop()
    edited = controller.write(labels_policy({"edited": ["while-opa-was-down"]}))
    controller.wait_for_reloads(ReportedReloadResult.DEFERRED, 1)
    controller.opa.start()
    controller.wait_until_active(edited)

    assert controller.reloads_if_any(ReportedReloadResult.REJECTED) == 0
    status = controller.classify(custom_objects, namespace)
    assert custom_labels(status) == {"edited": ["while-opa-was-down"]}
