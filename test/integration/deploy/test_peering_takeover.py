"""High availability: two peered controllers, one working and one standing by, and a takeover after a crash.

Both run as the chart's ServiceAccount (replicaCount=2, so its RBAC includes
the kopf peering rules) and peer through the chart's ClusterKopfPeering. The
one with the higher PEERING_PRIORITY works; it is killed during a burst of
SignalProcessings, and the standby must finish every one of them exactly
once: Completed, with exactly one audit trail each.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devstack.charts import SIGNALPROCESSING_CHART
from devstack.controller_process import ControllerProcess
from devstack.manifests import signal_processing, unique_rr_name
from devstack.state import StackState
from test.integration.deploy.charts import Release, install, service_account_controller_settings, unique_name
from test.integration.deploy.peering import ensure_peering_crd
from test.integration.polling import eventually
from test.integration.signalprocessing.conftest import pod
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    audit_events,
    count_types,
    create_sp,
    wait_for_audit_types,
    wait_for_phase,
)

BURST = 20
KILLED_AFTER = 8  # SPs created before the active controller is killed
# A crashed peer counts as alive this long; short so the takeover takes seconds, not kopf's 60.
PEERING_LIFETIME_SECONDS = 4
RESUMED = "Resuming operations"  # what kopf logs when a paused operator starts working


@pytest.fixture
def peered_release(stack: StackState, api_client: client.ApiClient) -> Iterator[Release]:
    ensure_peering_crd(stack.kubeconfig)
    release = install(
        SIGNALPROCESSING_CHART,
        kubeconfig=stack.kubeconfig,
        values=(f"dataStorageUrl={stack.datastorage_url}", "replicaCount=2"),
    )
    yield release
    release.uninstall()
    client.CoreV1Api(api_client).delete_namespace(release.namespace)


def processed_total(metrics_url: str) -> float:
    """Signals this controller took through the pipeline, whatever their outcome."""
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "signalprocessing_processing_total"
    )


@pytest.mark.br("BR-SP-090")
def test_standby_takes_over_a_burst_and_every_signal_completes_exactly_once(
    stack: StackState, api_client: client.ApiClient, peered_release: Release, tmp_path: Path
) -> None:
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    prefix = f"{unique_name('ha')}-"
    namespace = f"{prefix}a"
    core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"kubernaut.ai/environment": "production"}}}
    )
    core.create_namespaced_pod(namespace, pod("api"))
    peering_name = f"{peered_release.namespace}-{peered_release.name}-signalprocessing"
    logged_in = service_account_controller_settings(
        stack, peered_release, tmp_path, watch_namespaces=f"{prefix}*"
    )

    def replica(identity: str, priority: int) -> ControllerProcess:
        settings = {
            **logged_in,
            "PEERING": peering_name,
            "PEERING_PRIORITY": str(priority),
            "PEERING_LIFETIME": str(PEERING_LIFETIME_SECONDS),
            "POD_ID": f"{prefix}{identity}",
        }
        return ControllerProcess(settings=settings, log_path=tmp_path / f"{identity}.log")

    def peers() -> set[str]:
        peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering_name)
        return set(peering.get("status") or {})

    active, standby = replica("active", 200), replica("standby", 100)
    rr_names = [unique_rr_name() for _ in range(BURST)]
    try:
        with active, standby:
            eventually(
                lambda: peers() >= {f"{prefix}active", f"{prefix}standby"},
                timeout=20,
                message="both replicas did not register in the ClusterKopfPeering",
            )
            for rr in rr_names[:KILLED_AFTER]:
                create_sp(custom, signal_processing(namespace, rr_name=rr, target_name="api"))
            wait_for_phase(custom, namespace, f"sp-{rr_names[0]}", "Completed")
            assert processed_total(standby.metrics_url) == 0, "the standby worked while the active one ran"
            assert RESUMED not in standby.log_path.read_text()

            active.kill()
            killed_at = time.monotonic()
            for rr in rr_names[KILLED_AFTER:]:
                create_sp(custom, signal_processing(namespace, rr_name=rr, target_name="api"))
            eventually(
                lambda: RESUMED in standby.log_path.read_text(),
                timeout=PEERING_LIFETIME_SECONDS + 20,
                message="the standby did not resume after the active controller was killed",
            )
            takeover = time.monotonic() - killed_at
            print(f"\ntakeover: standby resumed {takeover:.2f}s after the active controller was killed")

            for rr in rr_names:
                done = wait_for_phase(custom, namespace, f"sp-{rr}", timeout=60)
                assert done["status"]["phase"] == "Completed", (rr, done["status"])
            for rr in rr_names:
                wait_for_audit_types(stack.datastorage_url, rr, SUCCESS_TRAIL)
            assert processed_total(standby.metrics_url) >= BURST - KILLED_AFTER
    finally:
        core.delete_namespace(namespace)

    assert takeover <= PEERING_LIFETIME_SECONDS + 5
    trails = {rr: count_types(audit_events(stack.datastorage_url, rr)) for rr in rr_names}
    assert {rr: trail for rr, trail in trails.items() if trail != SUCCESS_TRAIL} == {}
