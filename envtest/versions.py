"""The one place where the versions of every built tool are pinned.

etcd is paired with the Kubernetes release whose go.mod names it; bumping
Kubernetes means bumping etcd to the version that release's go.mod requires.
"""

from typing import Final

KUBERNETES: Final = "1.36.3"
ETCD: Final = "3.6.8"
OPA: Final = "1.22.2"
HELM: Final = "3.22.0"
