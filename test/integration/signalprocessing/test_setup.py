"""The suite's own footing: the control plane serves the CRDs, the worker's controller and DataStorage are up.

When one of these fails, every other spec fails for a reason that has
nothing to do with its behaviour; these specs name the broken piece.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devstack.controller_process import ControllerProcess
from devstack.manifests import GROUP, SP_PLURAL, VERSION, signal_processing
from devstack.state import StackState
from test.integration.signalprocessing.support import create_sp, get_sp, metric_value


@pytest.mark.br("BR-SP-001")
def test_control_plane_serves_the_crds_and_stores_a_signalprocessing(
    api_client: client.ApiClient, custom_objects: client.CustomObjectsApi, namespace: str
) -> None:
    served = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
    resources = {r.name: r for r in served.resources}
    assert {"signalprocessings", "signalprocessings/status", "remediationrequests"} <= resources.keys()
    assert resources["signalprocessings"].namespaced is True
    assert "sp" in (resources["signalprocessings"].short_names or [])

    manifest = signal_processing(namespace)
    name = manifest["metadata"]["name"]
    create_sp(custom_objects, manifest)
    stored = get_sp(custom_objects, namespace, name)
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, name)

    assert stored["spec"]["signal"]["name"] == "HighMemoryUsage"
    assert stored["spec"]["remediationRequestRef"] == manifest["spec"]["remediationRequestRef"]
    with pytest.raises(ApiException) as gone:
        get_sp(custom_objects, namespace, name)
    assert gone.value.status == 404  # no finalizer: nothing runs in an unwatched namespace


@pytest.mark.br("BR-SP-008")
def test_worker_controller_is_healthy_and_serves_signalprocessing_metrics(
    operator: ControllerProcess,
) -> None:
    with urllib.request.urlopen(operator.health_url, timeout=5) as answer:
        assert answer.status == 200
        json.load(answer)  # kopf's probe results, as JSON

    with urllib.request.urlopen(operator.metrics_url, timeout=5) as answer:
        text = answer.read().decode()

    for family in ("signalprocessing_processing_total", "signalprocessing_enrichment_duration_seconds"):
        assert f"# TYPE {family} " in text, f"{family} missing from {operator.metrics_url}"
    assert (
        metric_value(operator.metrics_url, "signalprocessing_policy_hash_info", policy="policy.rego") == 1.0
    )


@pytest.mark.br("BR-SP-090")
def test_datastorage_is_ready(stack: StackState) -> None:
    with urllib.request.urlopen(f"{stack.datastorage_url}/health/ready", timeout=5) as answer:
        assert answer.status == 200
