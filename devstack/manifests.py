"""SignalProcessing manifests as the benchmarks and the integration suite create them.

One builder, so that what a benchmark measures and what a test asserts on are the same object:
`signal_processing` gives a valid SignalProcessing for a RemediationRequest of its own (a new
`rr-<hex>` name unless one is given); `with_change` derives a variant of any manifest.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from typing import Any, Final

GROUP: Final = "kubernaut.ai"
VERSION: Final = "v1alpha1"
SP_PLURAL: Final = "signalprocessings"
RR_PLURAL: Final = "remediationrequests"


def unique_rr_name() -> str:
    """RemediationRequest names are the audit correlation IDs, so each SignalProcessing gets its own."""
    return f"rr-{secrets.token_hex(6)}"


def fingerprint(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def signal_processing(
    namespace: str,
    *,
    rr_name: str | None = None,
    severity: str = "critical",
    target_kind: str = "Pod",
    target_name: str = "app",
    target_namespace: str | None = None,
    labels: dict[str, str] | None = None,
    source: str = "prometheus",
    signal_fingerprint: str | None = None,
    signal_name: str = "HighMemoryUsage",
    cluster_id: str = "",
) -> dict[str, Any]:
    """A SignalProcessing named `sp-<rr>` for the RemediationRequest `rr_name` in `namespace`.

    The signal's fingerprint is `fingerprint(rr_name)` unless `signal_fingerprint` is given; its
    `clusterID` is `cluster_id` when given (none: the hub's own cluster).
    """
    rr = rr_name or unique_rr_name()
    manifest: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SignalProcessing",
        "metadata": {"name": f"sp-{rr}", "namespace": namespace},
        "spec": {
            "remediationRequestRef": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RemediationRequest",
                "name": rr,
                "namespace": namespace,
            },
            "signal": {
                "fingerprint": fingerprint(rr) if signal_fingerprint is None else signal_fingerprint,
                "name": signal_name,
                "severity": severity,
                "type": "prometheus",
                "source": source,
                "targetType": "kubernetes",
                "targetResource": {
                    "kind": target_kind,
                    "name": target_name,
                    "namespace": namespace if target_namespace is None else target_namespace,
                },
                "labels": labels or {},
                "receivedTime": "2026-01-01T00:00:00Z",
            },
        },
    }
    if cluster_id:
        manifest["spec"]["signal"]["clusterID"] = cluster_id
    return manifest


def with_change(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy with the dotted `path` set to `value`; the value `DELETE` removes the key."""
    changed = copy.deepcopy(manifest)
    *parents, leaf = path.split(".")
    node = changed
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return changed


DELETE: Any = object()
