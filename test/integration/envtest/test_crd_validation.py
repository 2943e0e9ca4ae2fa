"""The SignalProcessing CRD, as the API server enforces it: every bad manifest is refused by field."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devstack.manifests import (
    DELETE,
    GROUP,
    SP_PLURAL,
    VERSION,
    signal_processing,
    with_change,
)

SIGNAL = "spec.signal"
TARGET = "spec.signal.targetResource"

MALFORMED = [
    pytest.param(f"{SIGNAL}.fingerprint", "abc123", f"{SIGNAL}.fingerprint", id="fingerprint-too-short"),
    pytest.param(f"{SIGNAL}.fingerprint", "A" * 64, f"{SIGNAL}.fingerprint", id="fingerprint-upper-case"),
    pytest.param(f"{SIGNAL}.fingerprint", "g" * 64, f"{SIGNAL}.fingerprint", id="fingerprint-not-hex"),
    pytest.param(f"{SIGNAL}.fingerprint", "a" * 65, f"{SIGNAL}.fingerprint", id="fingerprint-too-long"),
    pytest.param(f"{SIGNAL}.severity", "", f"{SIGNAL}.severity", id="severity-empty"),
    pytest.param(f"{SIGNAL}.severity", "s" * 64, f"{SIGNAL}.severity", id="severity-too-long"),
    pytest.param(f"{SIGNAL}.severity", 3, f"{SIGNAL}.severity", id="severity-wrong-type"),
    pytest.param(f"{SIGNAL}.targetType", "vmware", f"{SIGNAL}.targetType", id="target-type-unknown"),
    pytest.param("spec.remediationRequestRef", DELETE, "spec.remediationRequestRef", id="missing-rr-ref"),
    pytest.param(SIGNAL, DELETE, SIGNAL, id="missing-signal"),
    pytest.param(f"{SIGNAL}.fingerprint", DELETE, f"{SIGNAL}.fingerprint", id="missing-fingerprint"),
    pytest.param(f"{SIGNAL}.name", DELETE, f"{SIGNAL}.name", id="missing-signal-name"),
    pytest.param(f"{SIGNAL}.severity", DELETE, f"{SIGNAL}.severity", id="missing-severity"),
    pytest.param(f"{SIGNAL}.type", DELETE, f"{SIGNAL}.type", id="missing-signal-type"),
    pytest.param(f"{SIGNAL}.targetType", DELETE, f"{SIGNAL}.targetType", id="missing-target-type"),
    pytest.param(TARGET, DELETE, TARGET, id="missing-target-resource"),
    pytest.param(f"{SIGNAL}.receivedTime", DELETE, f"{SIGNAL}.receivedTime", id="missing-received-time"),
    pytest.param(f"{TARGET}.kind", DELETE, f"{TARGET}.kind", id="missing-target-kind"),
    pytest.param(f"{TARGET}.name", DELETE, f"{TARGET}.name", id="missing-target-name"),
    pytest.param(
        "spec.remediationRequestRef.name", DELETE, "spec.remediationRequestRef.name", id="missing-rr-name"
    ),
    pytest.param(
        "spec.remediationRequestRef.name", "", "remediationRequestRef.name is required", id="empty-rr-name"
    ),
    pytest.param(f"{SIGNAL}.name", "x" * 254, f"{SIGNAL}.name", id="signal-name-too-long"),
    pytest.param(f"{SIGNAL}.source", "s" * 64, f"{SIGNAL}.source", id="signal-source-too-long"),
    pytest.param(f"{TARGET}.name", "n" * 254, f"{TARGET}.name", id="target-name-too-long"),
    pytest.param(f"{TARGET}.namespace", "n" * 64, f"{TARGET}.namespace", id="target-namespace-too-long"),
    pytest.param(f"{TARGET}.namespace", 7, f"{TARGET}.namespace", id="target-namespace-a-number"),
    pytest.param(f"{TARGET}.kind", "k" * 64, f"{TARGET}.kind", id="target-kind-too-long"),
    pytest.param(f"{SIGNAL}.labels", ["a", "b"], f"{SIGNAL}.labels", id="labels-not-a-map"),
    pytest.param(
        f"{SIGNAL}.receivedTime", "yesterday", f"{SIGNAL}.receivedTime", id="received-time-not-a-date"
    ),
    pytest.param(TARGET, "pod/app", TARGET, id="target-resource-not-an-object"),
    pytest.param(
        f"{SIGNAL}.providerData",
        "%%% not base64 %%%",
        f"{SIGNAL}.providerData",
        id="provider-data-not-base64",
    ),
    pytest.param("spec", DELETE, "spec", id="missing-spec"),
    pytest.param("spec.timesOutAt", "in five minutes", "spec.timesOutAt", id="times-out-at-not-a-date"),
    pytest.param("spec.timesOutAt", 300, "spec.timesOutAt", id="times-out-at-a-number"),
    pytest.param(f"{SIGNAL}.clusterID", "c" * 254, f"{SIGNAL}.clusterID", id="cluster-id-too-long"),
    pytest.param(f"{SIGNAL}.clusterID", 7, f"{SIGNAL}.clusterID", id="cluster-id-a-number"),
]


def _create(api_client: client.ApiClient, manifest: dict[str, Any]) -> Any:
    namespace = manifest["metadata"]["namespace"]
    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SP_PLURAL, manifest
    )


@pytest.mark.parametrize(("path", "value", "named_in_error"), MALFORMED)
def test_malformed_signal_processing_is_rejected_naming_the_field(
    api_client: client.ApiClient, namespace: str, path: str, value: Any, named_in_error: str
) -> None:
    manifest = with_change(signal_processing(namespace), path, value)
    with pytest.raises(ApiException) as refused:
        _create(api_client, manifest)
    assert refused.value.status == 422, refused.value.body
    assert named_in_error in refused.value.body


def _full(namespace: str) -> dict[str, Any]:
    manifest = signal_processing(namespace, labels={"alertname": "HighMemoryUsage"})
    manifest["spec"]["signal"].update(
        annotations={"summary": "memory above 90%"},
        firingTime="2026-01-01T00:00:00Z",
        providerData="eyJrIjogInYifQ==",
        clusterID="prod-eu-1",
    )
    manifest["spec"]["remediationRequestRef"]["uid"] = "6f1c1f0e-1b0a-4c55-9d1e-1f1f1f1f1f1f"
    manifest["spec"]["timesOutAt"] = "2026-01-01T00:05:00Z"
    manifest["spec"]["enrichmentConfig"] = {
        "enableClusterState": True,
        "enableMetrics": False,
        "enableHistorical": False,
        "timeout": "30s",
    }
    return manifest


VALID = [
    pytest.param(lambda ns: signal_processing(ns), id="minimal"),
    pytest.param(_full, id="full"),
    pytest.param(lambda ns: signal_processing(ns, severity="info"), id="severity-info"),
    pytest.param(lambda ns: signal_processing(ns, severity="warning"), id="severity-warning"),
    # Free text since kubernaut 2026: the policy's severity rule normalises whatever the source wrote.
    pytest.param(lambda ns: signal_processing(ns, severity="Sev1"), id="severity-free-text"),
    pytest.param(lambda ns: signal_processing(ns, severity="s" * 63), id="severity-63-characters"),
    pytest.param(lambda ns: with_change(signal_processing(ns), "spec.signal.targetType", "aws"), id="aws"),
    pytest.param(
        lambda ns: signal_processing(ns, target_kind="Node", target_namespace=""),
        id="node-target-with-an-empty-namespace",
    ),
    # Optional since kubernaut 2026: no namespace is a cluster-scoped target.
    pytest.param(
        lambda ns: with_change(signal_processing(ns, target_kind="Node"), f"{TARGET}.namespace", DELETE),
        id="node-target-without-namespace",
    ),
    pytest.param(
        lambda ns: signal_processing(ns, target_namespace="n" * 63), id="target-namespace-63-characters"
    ),
    pytest.param(lambda ns: signal_processing(ns, cluster_id="c" * 253), id="cluster-id-253-characters"),
]


@pytest.mark.parametrize("build", VALID)
def test_valid_signal_processing_is_accepted(
    api_client: client.ApiClient, namespace: str, build: Any
) -> None:
    manifest = build(namespace)
    created = _create(api_client, manifest)
    assert created["spec"] == manifest["spec"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"severity": "info"}, id="severity"),
        pytest.param({"clusterID": "prod-eu-1"}, id="cluster-id-set-later"),
    ],
)
def test_spec_cannot_change_after_creation(
    api_client: client.ApiClient, namespace: str, change: dict[str, str]
) -> None:
    created = _create(api_client, signal_processing(namespace, severity="critical"))
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            SP_PLURAL,
            created["metadata"]["name"],
            {"spec": {"signal": change}},
        )
    assert refused.value.status == 422, refused.value.body
    assert "spec is immutable" in refused.value.body


@pytest.mark.parametrize(
    ("status", "named_in_error"),
    [
        pytest.param({"phase": "Running"}, "status.phase", id="unknown-phase"),
        pytest.param(
            {"priorityAssignment": {"priority": "P5", "source": "x", "assignedAt": "2026-01-01T00:00:00Z"}},
            "status.priorityAssignment.priority",
            id="unknown-priority",
        ),
        pytest.param(
            {"failureInfo": {"consecutiveFailures": -1}},
            "status.failureInfo.consecutiveFailures",
            id="negative-failures",
        ),
        pytest.param(
            {"failureInfo": {"lastFailureTime": "just now"}},
            "status.failureInfo.lastFailureTime",
            id="last-failure-time-not-a-date",
        ),
        pytest.param(
            {"businessClassification": {"criticality": "high"}},
            "status.businessClassification.criticality",
            id="criticality-lower-case",
        ),
        pytest.param(
            {"businessClassification": {"slaRequirement": "gold"}},
            "status.businessClassification.slaRequirement",
            id="sla-lower-case",
        ),
        pytest.param(
            {"kubernetesContext": {"workload": {"kind": "Pod"}}},
            "status.kubernetesContext.workload.name",
            id="workload-without-name",
        ),
        pytest.param(
            {"kubernetesContext": {"clusterID": "c" * 254}},
            "status.kubernetesContext.clusterID",
            id="context-cluster-id-too-long",
        ),
    ],
)
def test_invalid_status_is_rejected_naming_the_field(
    api_client: client.ApiClient, namespace: str, status: dict[str, Any], named_in_error: str
) -> None:
    created = _create(api_client, signal_processing(namespace))
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, SP_PLURAL, created["metadata"]["name"], {"status": status}
        )
    assert refused.value.status == 422, refused.value.body
    assert named_in_error in refused.value.body


def test_the_2026_status_shape_is_kept_and_the_old_failure_fields_are_gone(
    api_client: client.ApiClient, namespace: str
) -> None:
    created = _create(api_client, signal_processing(namespace, target_kind="Node", target_namespace=""))
    failure = {"error": "etcd timeout", "consecutiveFailures": 2, "lastFailureTime": "2026-01-01T00:00:01Z"}
    business = {"businessUnit": "payments", "criticality": "High", "slaRequirement": "Gold"}
    context = {"degradedMode": False, "workload": {"kind": "Node", "name": "app", "labels": {"zone": "a"}}}
    written = {"failureInfo": failure, "businessClassification": business, "kubernetesContext": context}
    # The pre-2026 top-level failure fields are no longer in the schema: the API server drops them.
    old = {"error": "etcd timeout", "consecutiveFailures": 2, "lastFailureTime": "2026-01-01T00:00:01Z"}

    patched = client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SP_PLURAL, created["metadata"]["name"], {"status": written | old}
    )

    assert patched["status"] == written
