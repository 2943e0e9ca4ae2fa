"""The typed SignalProcessing against `crds/signalprocessing.yaml`, both ways.

An object with every field the CRD declares, each set to a value that is not its zero, must come
back unchanged through `from_raw` and `to_raw`: no CRD field the model drops. And every field of
the model must be filled by it: a model field the CRD lacks would stay at its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.signalprocessing import SignalProcessing

CRD = Path(__file__).resolve().parents[3] / "crds" / "signalprocessing.yaml"
# Values the schema's type alone cannot give: formats and patterns the model parses.
SPECIAL = {
    "fingerprint": "a" * 64,
    "timeSinceFirstFailure": "1h2m3s",
    "providerData": "eyJrIjoidiJ9",
    "type": "Ready",  # a condition type must match the CRD's pattern; any other `type` takes it too
}


def schema() -> Any:
    document = yaml.safe_load(CRD.read_text())
    [version] = document["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]


def example(name: str, node: Mapping[str, Any]) -> Any:
    """A value for every field `node` declares, none of them a zero value."""
    if "enum" in node:
        return node["enum"][-1]  # the last: the first of `phase` would be a zero-like start
    match node.get("type"):
        case "object" if "properties" in node:
            return {key: example(key, child) for key, child in node["properties"].items()}
        case "object" if "additionalProperties" in node:
            return {"some-key": example("value", node["additionalProperties"])}
        case "object":
            raise AssertionError(f"{name}: an object without a schema cannot be held against the model")
        case "array":
            return [example(name, node["items"])]
        case "integer":
            return 7
        case "boolean":
            return True
        case "string" if node.get("format") == "date-time":
            return "2026-01-01T10:00:00Z"
        case "string":
            return SPECIAL.get(name, f"{name}-value")
    raise AssertionError(f"{name}: type {node.get('type')!r} is not handled")


def full_signal_processing() -> dict[str, Any]:
    properties = schema()
    return {
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "SignalProcessing",
        "metadata": {
            "name": "sp-1",
            "namespace": "shop",
            "uid": "uid-1",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2026-01-01T09:00:00Z",
        },
        "spec": example("spec", properties["spec"]),
        "status": example("status", properties["status"]),
    }


def unset_fields(value: object, path: str = "") -> list[str]:
    """The model fields under `value` still at their defaults."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return []
    unset = []
    for field in dataclasses.fields(value):
        current = getattr(value, field.name)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        where = f"{path}.{field.name}"
        if current == default or current in ("", 0, (), {}, None):
            unset.append(where)
        for item in current if isinstance(current, tuple) else (current,):
            unset += unset_fields(item, where)
    return unset


def test_every_crd_field_survives_the_model() -> None:
    raw = full_signal_processing()

    back = SignalProcessing.from_raw(raw).to_raw()

    assert back["spec"] == raw["spec"]
    assert back["status"] == raw["status"]


def test_every_model_field_is_a_crd_field() -> None:
    model = SignalProcessing.from_raw(full_signal_processing())

    assert unset_fields(model.spec, "spec") + unset_fields(model.status, "status") == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"metadata": {"name": "sp", "namespace": "ns"}, "spec": {}}, id="no-status"),
        pytest.param(
            {"metadata": {"name": "sp", "namespace": "ns"}, "spec": {"signal": None}, "status": None},
            id="nulls",
        ),
    ],
)
def test_a_sparse_object_reads_as_zero_values(raw: dict[str, Any]) -> None:
    sp = SignalProcessing.from_raw(raw)

    assert sp.status.phase == ""
    assert sp.spec.signal.target_resource.name == ""
    assert "status" not in sp.to_raw()
