"""kopf's ClusterKopfPeering CRD in the shared control plane, applied by whichever spec needs it first."""

from __future__ import annotations

from devstack.charts import SIGNALPROCESSING_CHART, kubectl

PEERING_CRD = SIGNALPROCESSING_CHART / "crds" / "kopf-peering.yaml"


def ensure_peering_crd(kubeconfig: str) -> None:
    """`kubectl apply` is idempotent, so concurrent workers may all do it; then wait until it is served."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRD), kubeconfig=kubeconfig)
    kubectl(
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd/clusterkopfpeerings.kopf.dev",
        kubeconfig=kubeconfig,
    )
