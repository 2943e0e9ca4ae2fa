"""Test doubles for enrichment: an in-memory `kube.Reader`, builders of API objects, a manual clock.

`FakeReader` keeps the real reader's contract (None for a missing object or an empty name, lists
only in a named namespace, a ValueError for a scope mistake) and records every call, so tests can
count reads as a benchmark would.
"""

from __future__ import annotations

import builtins
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from controller import kube

Key = tuple[str, str, str]  # (group/plural, namespace, name)

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / "signalprocessing.yaml"


def _key(resource: kube.Resource, namespace: str | None, name: str) -> Key:
    return (f"{resource.group}/{resource.plural}", namespace or "", name)


class FakeReader:
    """Objects and failures in dicts; `calls` counts verbs like `ApiClient.calls`."""

    def __init__(self) -> None:
        self.objects: dict[Key, kube.RawObject] = {}
        self.get_errors: dict[Key, kube.ApiError] = {}
        self.list_errors: dict[tuple[str, str], kube.ApiError] = {}
        self.calls: Counter[str] = Counter()
        self.log: builtins.list[tuple[str, str, str, str]] = []

    def add(self, resource: kube.Resource, raw: kube.RawObject) -> kube.RawObject:
        meta = raw.get("metadata") or {}
        self.objects[_key(resource, meta.get("namespace"), meta["name"])] = raw
        return raw

    def fail_get(
        self, resource: kube.Resource, name: str, error: kube.ApiError, *, namespace: str = ""
    ) -> None:
        self.get_errors[_key(resource, namespace, name)] = error

    def fail_list(self, resource: kube.Resource, namespace: str, error: kube.ApiError) -> None:
        self.list_errors[(f"{resource.group}/{resource.plural}", namespace)] = error

    async def get(
        self, resource: kube.Resource, name: str, *, namespace: str | None = None
    ) -> kube.RawObject | None:
        if resource.namespaced != bool(namespace):
            raise ValueError(f"scope mistake: {resource.plural} with namespace {namespace!r}")
        if not name:
            return None
        self.calls["get"] += 1
        self.log.append(("get", resource.plural, namespace or "", name))
        key = _key(resource, namespace, name)
        if key in self.get_errors:
            raise self.get_errors[key]
        return self.objects.get(key)

    async def list(self, resource: kube.Resource, *, namespace: str) -> builtins.list[kube.RawObject]:
        if not resource.namespaced or not namespace:
            raise ValueError(f"cluster-wide list of {resource.plural}")
        self.calls["list"] += 1
        self.log.append(("list", resource.plural, namespace, ""))
        kind = f"{resource.group}/{resource.plural}"
        if (kind, namespace) in self.list_errors:
            raise self.list_errors[(kind, namespace)]
        return [raw for (k, ns, _), raw in self.objects.items() if k == kind and ns == namespace]


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def owner(
    kind: str, name: str, *, api_version: str = "apps/v1", controller: bool | None = True
) -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": f"uid-{name}"}
    if controller is not None:
        ref["controller"] = controller
    return ref


def obj(
    kind: str,
    name: str,
    namespace: str = "",
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: builtins.list[dict[str, Any]] | None = None,
    **body: Any,
) -> kube.RawObject:
    """An API object as the server returns it; `body` adds top-level keys (spec, status)."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if owners is not None:
        meta["ownerReferences"] = owners
    return {"kind": kind, "metadata": meta, **body}


def status_schema() -> dict[str, Any]:
    """The CRD's schema of `.status`, to check what the enrichment stage writes into it."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    status: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return status


def schema_errors(value: object, schema: dict[str, Any], path: str = "") -> builtins.list[str]:
    """What the API server would reject or silently prune in `value`; enough of OpenAPI for our shapes."""
    kind = schema.get("type")
    checks: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": builtins.list,
        "string": str,
        "boolean": bool,
        "integer": int,
    }
    if kind in checks and (
        not isinstance(value, checks[kind]) or (kind == "integer" and isinstance(value, bool))
    ):
        return [f"{path or '.'}: {value!r} is not {kind}"]
    errors: builtins.list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if properties is not None:
                if name not in properties:
                    errors.append(f"{path}.{name}: not in the schema (would be pruned)")
                else:
                    errors += schema_errors(item, properties[name], f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{name}")
    if isinstance(value, builtins.list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors
