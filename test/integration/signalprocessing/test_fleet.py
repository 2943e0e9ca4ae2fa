"""The fleet as the SignalProcessing controller sees it: a signal's `clusterID`, the cluster registry's
labels in the policy input, degraded enrichment of a remote cluster, and `cluster_id` on the audit trail."""

from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.clusters import REGISTRY_FILE_NAME
from controller.policies import POLICY_FILE_NAME
from devstack.manifests import unique_rr_name
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from test.integration.polling import eventually
from test.integration.signalprocessing.own_controller import OwnController, own_controller
from test.integration.signalprocessing.support import (
    SHIPPED_POLICY,
    SUCCESS_TRAIL,
    audit_events,
    completed_status,
    condition,
    counter_value,
    wait_for_exact_trail,
    write_atomically,
)

PRODUCTION = {"kubernaut.ai/environment": "production"}
# The shipped policy plus a cluster rule that answers only from the registry's labels.
CLUSTER_POLICY = (
    SHIPPED_POLICY + '\ncluster := concat("-", [input.cluster.labels.region, input.cluster.labels.tier])\n'
)
REGISTRY = """\
clusters:
  prod-eu-1:
    labels: {region: eu-west-1, tier: gold}
  hub-1:
    labels: {region: eu-central-1, tier: hub}
"""


def fleet_policies(directory: Path) -> Path:
    """`directory` with the shipped policies, `CLUSTER_POLICY` and `REGISTRY`: a controller's policy dir."""
    copy_shipped_policies(directory)
    (directory / POLICY_FILE_NAME).write_text(CLUSTER_POLICY)
    (directory / REGISTRY_FILE_NAME).write_text(REGISTRY)
    return directory


def cluster_part(status: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The cluster classification, and the context's cluster id and registry section."""
    context = status["kubernetesContext"]
    return (
        status["signalClassification"].get("clusterClassification", ""),
        context.get("clusterID", ""),
        context.get("cluster", {}),
    )


@pytest.mark.br("BR-SP-090")
def test_a_registered_clusters_labels_reach_the_policy_and_its_audit_trail_carries_the_cluster_id(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    policies = fleet_policies(tmp_path / "policies")
    with own_controller(
        stack, api_client, tmp_path / "controller", worker_id, POLICY_DIR=str(policies), CLUSTER_ID="hub-1"
    ) as own:
        namespace = own.make_namespace(PRODUCTION)
        member_rr, hub_rr = unique_rr_name(), unique_rr_name()
        member = completed_status(custom_objects, namespace, rr_name=member_rr, cluster_id="prod-eu-1")
        hub = completed_status(custom_objects, namespace, rr_name=hub_rr)
        member_trail = wait_for_exact_trail(
            stack.datastorage_url, own.process.metrics_url, member_rr, SUCCESS_TRAIL
        )
        hub_trail = wait_for_exact_trail(
            stack.datastorage_url, own.process.metrics_url, hub_rr, SUCCESS_TRAIL
        )

    assert cluster_part(member) == (
        "eu-west-1-gold",
        "prod-eu-1",
        {"labels": {"region": "eu-west-1", "tier": "gold"}},
    )
    # An SP without a clusterID is the hub's, looked up under the hub's own id.
    assert cluster_part(hub) == (
        "eu-central-1-hub",
        "hub-1",
        {"labels": {"region": "eu-central-1", "tier": "hub"}},
    )
    assert {event["cluster_id"] for event in member_trail} == {"prod-eu-1"}
    assert len(audit_events(stack.datastorage_url, member_rr, cluster_id="prod-eu-1")) == len(member_trail)
    assert {event.get("cluster_id") or "" for event in hub_trail} == {""}


@pytest.mark.br("BR-SP-001")
def test_a_remote_cluster_without_a_reader_is_enriched_degraded_without_reading_the_hub(
    stack: StackState, custom_objects: client.CustomObjectsApi, sp_namespace: str, operator: Any
) -> None:
    # The hub has no such namespace: a read would fail the SP, so Completed proves nothing was read.
    elsewhere = f"only-in-the-member-{secrets.token_hex(3)}"

    status = completed_status(
        custom_objects,
        sp_namespace,
        cluster_id="prod-us-9",
        target_namespace=elsewhere,
        target_kind="Deployment",
    )

    context = status["kubernetesContext"]
    assert (context["degradedMode"], context["clusterID"]) == (True, "prod-us-9")
    assert "namespace" not in context and "deployment" not in context and "cluster" not in context
    enriched = condition(status, "EnrichmentComplete")
    assert (enriched["status"], enriched["reason"]) == ("True", "DegradedMode")
    assert "in cluster prod-us-9 (remote_reader_unavailable:" in enriched["message"]
    # Classification still ran, with what the signal says.
    assert status["signalClassification"]["severity"] == "critical"
    assert status["environmentClassification"]["environment"]
    assert (
        counter_value(
            operator.metrics_url,
            "signalprocessing_enrichment_errors_total",
            error_type="remote_reader_unavailable",
        )
        >= 1
    )


def cluster_registry_probe(own: OwnController) -> dict[str, Any]:
    """What the controller's health probe says of its cluster registry (kopf caches it 10 s)."""
    with urllib.request.urlopen(own.process.health_url, timeout=5) as answer:
        registry: dict[str, Any] = json.load(answer)["policies"]["clusterRegistry"]
    return registry


def test_the_cluster_registry_hot_reloads_and_a_bad_file_keeps_the_last_good(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    policies = fleet_policies(tmp_path / "policies")
    with own_controller(
        stack, api_client, tmp_path / "controller", worker_id, POLICY_DIR=str(policies)
    ) as own:
        namespace = own.make_namespace(PRODUCTION)
        registry = policies / REGISTRY_FILE_NAME
        before = completed_status(custom_objects, namespace, cluster_id="prod-eu-1")

        digest = write_atomically(registry, REGISTRY.replace("tier: gold", "tier: silver"))
        eventually(
            lambda: cluster_registry_probe(own)["sha256"] == digest or None,
            timeout=60,
            message="the controller did not take the new cluster registry",
        )
        after = completed_status(custom_objects, namespace, cluster_id="prod-eu-1")
        write_atomically(registry, REGISTRY.replace("tier: gold", "tier: 3"))
        rejection = eventually(
            lambda: cluster_registry_probe(own).get("lastRejection"),
            timeout=60,
            message="the controller did not report the bad cluster registry",
        )
        still = completed_status(custom_objects, namespace, cluster_id="prod-eu-1")

    assert cluster_part(before)[0] == "eu-west-1-gold"
    assert cluster_part(after)[0] == "eu-west-1-silver"
    assert "clusters.prod-eu-1.labels.tier: 3 is not a label value" in rejection
    assert cluster_part(still)[0] == "eu-west-1-silver"
