"""The per-namespace caches of enrichment and detection, one set per controller.

A burst of signals from one namespace should cost one namespace read and one read of each list
detection needs, not one per signal. The TTLs say how stale each answer may be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from controller import kube
from controller.signalprocessing import NamespaceContext
from controller.ttlcache import DEFAULT_MAX_SIZE, Clock, TTLCache

# TTLs of reference 3.3/3.4: namespaces change rarely; HPAs are the likeliest to come and go.
NAMESPACE_TTL: Final = 300.0
PDB_TTL: Final = 300.0
HPA_TTL: Final = 60.0
NETWORK_POLICY_TTL: Final = 300.0


@dataclass(frozen=True)
class EnrichmentCaches:
    """The per-namespace caches of the enrichment stage. Create one set per controller and reuse it.

    Keys are namespace names. The PDB, HPA and NetworkPolicy lists are read by `controller.detect`.
    """

    namespaces: TTLCache[NamespaceContext]
    pdbs: TTLCache[tuple[kube.RawObject, ...]]
    hpas: TTLCache[tuple[kube.RawObject, ...]]
    network_policies: TTLCache[tuple[kube.RawObject, ...]]

    @classmethod
    def create(
        cls,
        *,
        clock: Clock = time.monotonic,
        max_size: int = DEFAULT_MAX_SIZE,
        namespace_ttl: float = NAMESPACE_TTL,
        pdb_ttl: float = PDB_TTL,
        hpa_ttl: float = HPA_TTL,
        network_policy_ttl: float = NETWORK_POLICY_TTL,
    ) -> EnrichmentCaches:
        return cls(
            namespaces=TTLCache(namespace_ttl, max_size=max_size, clock=clock),
            pdbs=TTLCache(pdb_ttl, max_size=max_size, clock=clock),
            hpas=TTLCache(hpa_ttl, max_size=max_size, clock=clock),
            network_policies=TTLCache(network_policy_ttl, max_size=max_size, clock=clock),
        )
