"""Reading SignalProcessings, audit events and metrics while a spec waits for them."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from test.integration.manifests import GROUP, SP_PLURAL, VERSION
from test.integration.polling import eventually

TERMINAL = ("Completed", "Failed")
# The audit events of one successful SP, each exactly this often.
SUCCESS_TRAIL = {
    "signalprocessing.enrichment.completed": 1,
    "signalprocessing.phase.transition": 4,
    "signalprocessing.signal.processed": 1,
    "signalprocessing.classification.decision": 1,
    "signalprocessing.business.classified": 1,
}


def get_sp(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, name))


def create_sp(api: client.CustomObjectsApi, manifest: dict[str, Any]) -> dict[str, Any]:
    namespace = manifest["metadata"]["namespace"]
    return dict(api.create_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, manifest))


def wait_for_phase(
    api: client.CustomObjectsApi, namespace: str, name: str, *phases: str, timeout: float = 30.0
) -> dict[str, Any]:
    wanted = phases or TERMINAL

    def probe() -> dict[str, Any] | None:
        sp = get_sp(api, namespace, name)
        return sp if (sp.get("status") or {}).get("phase") in wanted else None

    return eventually(
        probe,
        timeout=timeout,
        message=f"SignalProcessing {namespace}/{name} did not reach {' or '.join(wanted)}",
    )


def audit_events(datastorage_url: str, correlation_id: str, **filters: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"correlation_id": correlation_id, "limit": "1000", **filters})
    with urllib.request.urlopen(f"{datastorage_url}/api/v1/audit/events?{query}", timeout=10) as answer:
        return list(json.load(answer)["data"])


def wait_for_audit_types(
    datastorage_url: str, correlation_id: str, expected: dict[str, int], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Polls until the event types reach at least the expected counts; returns all events seen."""

    def probe() -> list[dict[str, Any]] | None:
        events = audit_events(datastorage_url, correlation_id)
        counts = count_types(events)
        return events if all(counts.get(k, 0) >= n for k, n in expected.items()) else None

    return eventually(
        probe, timeout=timeout, message=f"audit events for {correlation_id} did not reach {expected}"
    )


def count_types(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
    return counts


def metric_value(metrics_url: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent), read from the controller's /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
