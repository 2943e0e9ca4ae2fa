"""A Kubernetes control plane for tests and local runs, built and started without downloads.

`assets` builds kube-apiserver, etcd, OPA and helm from the Go module proxy into
a cache; `ControlPlane` starts etcd + kube-apiserver, writes a kubeconfig and
installs CRDs. `python -m envtest assets|up` is the command-line form.
"""

from envtest.controlplane import ControlPlane, ControlPlaneError
from envtest.crds import CrdFileError

__all__ = ["ControlPlane", "ControlPlaneError", "CrdFileError"]
