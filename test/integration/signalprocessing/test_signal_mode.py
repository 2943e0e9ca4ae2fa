"""Signal mode (BR-SP-106): a proactive signal is recorded under the incident it predicts, and the
mappings file hot-reloads with the policies beside it (kubernaut loads it once at start)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack.manifests import unique_rr_name
from devstack.state import StackState
from test.integration.polling import eventually
from test.integration.signalprocessing.own_controller import OwnController, own_controller
from test.integration.signalprocessing.support import (
    completed_status,
    wait_for_audit_types,
    write_atomically,
)

PRODUCTION = {"kubernaut.ai/environment": "production"}
DECISION = "signalprocessing.classification.decision"


def classification_decision(datastorage_url: str, rr: str) -> dict[str, Any]:
    events = wait_for_audit_types(datastorage_url, rr, {DECISION: 1})
    data: dict[str, Any] = next(e for e in events if e["event_type"] == DECISION)["event_data"]
    return data


def signal_mode(status: dict[str, Any]) -> dict[str, str]:
    """The mode part of `status.signalClassification` (the policy's answers are there too)."""
    classified: dict[str, str] = status["signalClassification"]
    return {
        key: classified[key] for key in ("signalMode", "signalName", "sourceSignalName") if key in classified
    }


@pytest.mark.br("BR-SP-106")
def test_a_proactive_signal_is_recorded_under_the_incident_it_predicts(
    stack: StackState, custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    rr = unique_rr_name()

    status = completed_status(custom_objects, sp_namespace, rr_name=rr, signal_name="PredictedOOMKill")

    assert signal_mode(status) == {
        "signalMode": "proactive",
        "signalName": "OOMKilled",
        "sourceSignalName": "PredictedOOMKill",
    }
    decision = classification_decision(stack.datastorage_url, rr)
    assert (decision["signal_mode"], decision["source_signal_name"]) == ("proactive", "PredictedOOMKill")


@pytest.mark.br("BR-SP-106")
def test_a_reactive_signal_keeps_its_own_name(
    stack: StackState, custom_objects: client.CustomObjectsApi, sp_namespace: str
) -> None:
    rr = unique_rr_name()

    status = completed_status(custom_objects, sp_namespace, rr_name=rr, signal_name="OOMKilled")

    assert signal_mode(status) == {"signalMode": "reactive", "signalName": "OOMKilled"}
    decision = classification_decision(stack.datastorage_url, rr)
    assert decision["signal_mode"] == "reactive"
    assert "source_signal_name" not in decision


def signal_modes_probe(own: OwnController) -> dict[str, Any]:
    """What the controller's health probe says of its signal mode mappings (kopf caches it 10 s)."""
    with urllib.request.urlopen(own.process.health_url, timeout=5) as answer:
        modes: dict[str, Any] = json.load(answer)["policies"]["signalModes"]
    return modes


@pytest.mark.br("BR-SP-106")
def test_the_mappings_hot_reload_and_a_bad_file_keeps_the_last_good_mappings(
    stack: StackState,
    api_client: client.ApiClient,
    custom_objects: client.CustomObjectsApi,
    tmp_path: Path,
    worker_id: str,
) -> None:
    with own_controller(stack, api_client, tmp_path, worker_id) as own:
        namespace = own.make_namespace(PRODUCTION)
        mappings = tmp_path / "policies" / "proactive-signal-mappings.yaml"
        before = completed_status(custom_objects, namespace, signal_name="PredictedQueueBacklog")

        digest = write_atomically(
            mappings, "proactive_signal_mappings:\n  PredictedQueueBacklog: QueueBacklog\n"
        )
        eventually(
            lambda: signal_modes_probe(own)["sha256"] == digest or None,
            timeout=60,
            message="the controller did not take the new mappings",
        )
        after = completed_status(custom_objects, namespace, signal_name="PredictedQueueBacklog")
        write_atomically(mappings, "proactive_signal_mappings: [not, a, mapping]\n")
        rejection = eventually(
            lambda: signal_modes_probe(own).get("lastRejection"),
            timeout=60,
            message="the controller did not report the bad mappings file",
        )
        still = completed_status(custom_objects, namespace, signal_name="PredictedQueueBacklog")

    assert before["signalClassification"]["signalMode"] == "reactive"
    assert signal_mode(after) == {
        "signalMode": "proactive",
        "signalName": "QueueBacklog",
        "sourceSignalName": "PredictedQueueBacklog",
    }
    assert "must map signal names" in rejection
    assert still["signalClassification"]["signalName"] == "QueueBacklog"
