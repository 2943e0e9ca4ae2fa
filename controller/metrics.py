"""The controller's Prometheus metrics, on a registry of its own.

A registry per controller (not the process-global one) lets several
controllers live in one process, as the integration suite's workers do.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_PHASE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class ControllerMetrics:
    registry: CollectorRegistry
    processing_total: Counter
    processing_duration: Histogram
    enrichment_total: Counter
    enrichment_duration: Histogram
    enrichment_errors: Counter
    policy_reloads: Counter
    policy_hash: Gauge
    cluster_classification_errors: Counter
    readiness_gate: Gauge
    shards_owned: Gauge
    shard_members: Gauge
    shard_completed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ControllerMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            processing_total=Counter(
                "signalprocessing_processing_total",
                "Phase steps by phase and result",
                ["phase", "result"],
                registry=registry,
            ),
            processing_duration=Histogram(
                "signalprocessing_processing_duration_seconds",
                "Time in each phase, by the phase left; phase=completed is start to Completed or Failed",
                ["phase"],
                buckets=_PHASE_BUCKETS,
                registry=registry,
            ),
            enrichment_total=Counter(
                "signalprocessing_enrichment_total",
                "Enrichments by result (success, degraded, failure)",
                ["result"],
                registry=registry,
            ),
            enrichment_duration=Histogram(
                "signalprocessing_enrichment_duration_seconds",
                "Time to read the Kubernetes context",
                ["resource_kind"],
                buckets=_PHASE_BUCKETS,
                registry=registry,
            ),
            enrichment_errors=Counter(
                "signalprocessing_enrichment_errors_total",
                "Enrichment errors by type",
                ["error_type"],
                registry=registry,
            ),
            policy_reloads=Counter(
                "signalprocessing_policy_reloads_total",
                "Policy reloads by result (activated, unchanged, rejected, missing, restored)",
                ["result"],
                registry=registry,
            ),
            policy_hash=Gauge(
                "signalprocessing_policy_hash_info",
                "1 for the SHA-256 of the active policy (policy=policy.rego)",
                ["policy", "sha256"],
                registry=registry,
            ),
            cluster_classification_errors=Counter(
                "signalprocessing_cluster_classification_errors_total",
                "Evaluations of the optional cluster rule that failed; the SP went on without it",
                registry=registry,
            ),
            readiness_gate=Gauge(
                "signalprocessing_readiness_gate",
                "1 while the readiness gate is open, 0 while it is closed (the controller is then not ready)",
                ["gate"],
                registry=registry,
            ),
            shards_owned=Gauge(
                "signalprocessing_shards_owned",
                "Shards this replica processes now (sharding only; all of them on the only replica)",
                registry=registry,
            ),
            shard_members=Gauge(
                "signalprocessing_shard_members",
                "Live replicas of this replica's shard group, itself included (sharding only)",
                registry=registry,
            ),
            shard_completed=Counter(
                "signalprocessing_shard_completed_total",
                "SPs this replica took to Completed or Failed, by shard (sharding only)",
                ["shard"],
                registry=registry,
            ),
        )

    def show_gate(self, gate: str, is_open: bool) -> None:
        self.readiness_gate.labels(gate=gate).set(1 if is_open else 0)

    def show_active_hashes(self, hashes: dict[str, str]) -> None:
        """Show `hashes` as the active ones; new samples first, so no scrape sees a policy without one."""
        for policy, digest in hashes.items():
            self.policy_hash.labels(policy=policy, sha256=digest).set(1)
        for family in self.policy_hash.collect():
            for sample in family.samples:
                policy, digest = sample.labels["policy"], sample.labels["sha256"]
                if hashes.get(policy) != digest:
                    self.policy_hash.remove(policy, digest)
