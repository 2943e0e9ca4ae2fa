"""Creating SignalProcessings; reading them, their audit events and metrics while a spec waits for them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.policies import POLICY_FILE_NAME
from devstack.manifests import GROUP, SP_PLURAL, VERSION, signal_processing
from devstack.policies import SHIPPED_POLICIES
from test.integration.metrics import Scrape
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
# The phase changes of one successful SP, in the order the pipeline makes them.
SUCCESS_TRANSITIONS = [
    ("Pending", "Enriching"),
    ("Enriching", "Classifying"),
    ("Classifying", "Categorizing"),
    ("Categorizing", "Completed"),
]


SHIPPED_POLICY = (SHIPPED_POLICIES / POLICY_FILE_NAME).read_text()
_SHIPPED_LABELS_RULE = re.compile(r"^labels := \{key: \[value\] \|$.*?^\}$", re.MULTILINE | re.DOTALL)


def policy_with_labels(rule: str) -> str:
    """The shipped policy with its labels rule replaced by `rule` (Rego defining `labels`)."""
    replaced, count = _SHIPPED_LABELS_RULE.subn(lambda _: rule, SHIPPED_POLICY)
    assert count == 1, "the shipped policy's labels rule moved"
    return replaced


def labels_policy(labels: dict[str, Any]) -> str:
    """The shipped policy, its labels rule answering `labels` for every signal."""
    return policy_with_labels(f"labels := {json.dumps(labels)}")


def write_policy(directory: Path, text: str) -> Path:
    """`directory` holding `text` as its policy.rego (and nothing else); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / POLICY_FILE_NAME).write_text(text)
    return directory


def write_atomically(path: Path, text: str) -> str:
    """Replaces `path` in one rename, as an editor or `kubectl cp` does; returns the text's SHA-256."""
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(text)
    os.replace(staged, path)
    return hashlib.sha256(text.encode()).hexdigest()


def get_sp(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, name))


def create_sp(api: client.CustomObjectsApi, manifest: dict[str, Any]) -> dict[str, Any]:
    namespace = manifest["metadata"]["namespace"]
    return dict(api.create_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, manifest))


def create_signals(api: client.CustomObjectsApi, namespace: str, count: int, **signal: Any) -> list[str]:
    """Creates `count` SignalProcessings, each for a RemediationRequest of its own; returns their names."""
    return [create_sp(api, signal_processing(namespace, **signal))["metadata"]["name"] for _ in range(count)]


def process_signal(
    api: client.CustomObjectsApi, namespace: str, *phases: str, timeout: float = 30.0, **signal: Any
) -> dict[str, Any]:
    """Creates one SignalProcessing, `signal_processing(namespace, **signal)`, and returns it once it is
    in one of `phases` (by default, a terminal one)."""
    created = create_sp(api, signal_processing(namespace, **signal))
    return wait_for_phase(api, namespace, created["metadata"]["name"], *phases, timeout=timeout)


def completed_status(api: client.CustomObjectsApi, namespace: str, **signal: Any) -> dict[str, Any]:
    """The status of one new SignalProcessing (see `process_signal`), which must have Completed."""
    status: dict[str, Any] = process_signal(api, namespace, **signal)["status"]
    assert status["phase"] == "Completed", status
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type `kind`."""
    return next(c for c in status["conditions"] if c["type"] == kind)


def business_fields(status: dict[str, Any]) -> tuple[str, str, str, str]:
    """Business unit, service owner, criticality and SLA of a status's business classification."""
    business = status["businessClassification"]
    return (
        business["businessUnit"],
        business["serviceOwner"],
        business["criticality"],
        business["slaRequirement"],
    )


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


def wait_for_exact_trail(
    datastorage_url: str,
    metrics_url: str,
    correlation_id: str,
    expected: dict[str, int],
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Polls until the trail has exactly `expected` events per type, failing at once on any excess;
    then waits until the controller at `metrics_url` has delivered everything and checks again."""

    def probe() -> list[dict[str, Any]] | None:
        events = audit_events(datastorage_url, correlation_id)
        counts = count_types(events)
        if any(count > expected.get(kind, 0) for kind, count in counts.items()):
            pytest.fail(f"audit trail of {correlation_id} has more than {expected}: {counts}")
        return events if counts == expected else None

    eventually(probe, timeout=timeout, message=f"audit trail of {correlation_id} did not become {expected}")
    wait_until_delivered(metrics_url, timeout)
    events = audit_events(datastorage_url, correlation_id)
    assert count_types(events) == expected, f"audit trail of {correlation_id} grew once delivery settled"
    return events


def count_types(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
    return counts


def phase_transitions(datastorage_url: str, correlation_id: str) -> list[tuple[str, str]]:
    """(from, to) of each phase.transition event of the trail, in the order DataStorage lists them."""
    return [
        (e["event_data"]["from_phase"], e["event_data"]["to_phase"])
        for e in audit_events(datastorage_url, correlation_id, event_type="signalprocessing.phase.transition")
    ]


def scrape(metrics_url: str) -> Scrape:
    """The controller's /metrics, now."""
    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        return Scrape(answer.read().decode())


def metric_value(metrics_url: str, name: str, **labels: str) -> float:
    """The value of the one series `name{labels}` on the controller's /metrics.

    Raises `MetricSeriesError` (an AssertionError, so `eventually` keeps polling) when there is no
    such series: a renamed metric or a misspelt label never reads as 0.
    """
    return scrape(metrics_url).value(name, **labels)


def counter_value(metrics_url: str, name: str, **labels: str) -> float:
    """A counter's value that is 0 when this label set was never counted (see `Scrape.counter`)."""
    return scrape(metrics_url).counter(name, **labels)


def wait_until_delivered(metrics_url: str, timeout: float = 30.0) -> None:
    """Waits until the controller at `metrics_url` holds no unsettled audit event.

    Exact audit counts are read only after this: once `audit_events_pending` is 0, every event the
    controller emitted so far has reached DataStorage, so a late duplicate cannot arrive after the check.
    """
    eventually(
        lambda: metric_value(metrics_url, "audit_events_pending") == 0,
        timeout=timeout,
        message=f"the controller at {metrics_url} still has audit events pending",
    )
