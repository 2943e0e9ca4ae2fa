"""Signal mode (BR-SP-106): the mappings file, the decision, and a reload that keeps the last good file."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.signalmode import (
    ActiveSignalModes,
    SignalModeMappings,
    parse_mappings,
    read_mappings,
)
from controller.signalprocessing import SignalClassification, SignalMode
from controller.watchedfile import FileRejected, ReloadVerdict

SHIPPED = Path(__file__).resolve().parents[3] / "policies" / "proactive-signal-mappings.yaml"


@pytest.mark.parametrize(
    ("name", "classification"),
    [
        pytest.param(
            "PredictedOOMKill",
            SignalClassification(SignalMode.PROACTIVE, "OOMKilled", "PredictedOOMKill"),
            id="proactive",
        ),
        pytest.param("OOMKilled", SignalClassification(SignalMode.REACTIVE, "OOMKilled"), id="reactive"),
        pytest.param(
            "predictedoomkill",
            SignalClassification(SignalMode.REACTIVE, "predictedoomkill"),
            id="case-matters",
        ),
        pytest.param("", SignalClassification(SignalMode.REACTIVE, ""), id="no-name"),
    ],
)
def test_the_shipped_mappings_decide_each_signal_mode(
    name: str, classification: SignalClassification
) -> None:
    assert read_mappings(SHIPPED).classify(name) == classification


def test_the_shipped_mappings_are_kubernauts_four() -> None:
    assert dict(read_mappings(SHIPPED).proactive) == {
        "PredictedOOMKill": "OOMKilled",
        "PredictedCPUThrottling": "CPUThrottling",
        "PredictedDiskPressure": "DiskPressure",
        "PredictedNodeNotReady": "NodeNotReady",
    }


def test_a_missing_file_makes_every_signal_reactive(tmp_path: Path) -> None:
    mappings = read_mappings(tmp_path / "absent.yaml")

    assert mappings == SignalModeMappings()
    assert mappings.classify("PredictedOOMKill").signal_mode is SignalMode.REACTIVE


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("proactive_signal_mappings: [a, b]", "must map signal names", id="a-list"),
        pytest.param("proactive_signal_mappings: {PredictedX: 3}", "PredictedX", id="a-number"),
        pytest.param("proactive_signal_mappings: {PredictedX: ''}", "PredictedX", id="an-empty-base"),
        pytest.param("- just a list", "expected a mapping", id="not-a-mapping"),
        pytest.param("proactive_signal_mappings: {a: [", "not YAML", id="broken-yaml"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_problem(text: str, named: str) -> None:
    with pytest.raises(FileRejected, match=named):
        parse_mappings(text)


@pytest.mark.parametrize(
    "text", ["", "other_key: 1", "proactive_signal_mappings:"], ids=["empty", "no-key", "null"]
)
def test_a_file_without_mappings_maps_nothing(text: str) -> None:
    assert dict(parse_mappings(text)) == {}


def test_a_reload_swaps_in_a_good_file_and_keeps_the_last_good_one_over_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "mappings.yaml"
    path.write_text("proactive_signal_mappings: {PredictedA: A}\n")
    active = ActiveSignalModes(path)

    assert active.reload() == (ReloadVerdict.UNCHANGED, "")
    path.write_text("proactive_signal_mappings: {PredictedB: B}\n")
    assert active.reload() == (ReloadVerdict.ACTIVATED, "")
    assert active.classify("PredictedB").signal_name == "B"
    path.write_text("proactive_signal_mappings: nonsense\n")
    verdict, error = active.reload()

    assert verdict is ReloadVerdict.REJECTED
    assert str(path) in error
    assert active.classify("PredictedB").signal_name == "B"


def test_a_bad_file_at_start_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mappings.yaml"
    path.write_text("proactive_signal_mappings: 7\n")

    with pytest.raises(FileRejected, match=str(path)):
        ActiveSignalModes(path)
