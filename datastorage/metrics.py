"""Prometheus metrics of one DataStorage instance, in a registry of its own.

Names follow kubernaut's DataStorage (no namespace prefix). Each app gets its
own `CollectorRegistry`, so several instances in one process (as in the
tests) count separately, and `/metrics` shows only its own instance.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.audit_traces = Counter(
            "datastorage_audit_traces_total",
            "Audit events by outcome: stored (success) or queued to the DLQ (dlq_fallback)",
            ["service", "status"],
            registry=self.registry,
        )
        self.write_duration = Histogram(
            "datastorage_write_duration_seconds",
            "Time to write audit events to PostgreSQL",
            ["table"],
            registry=self.registry,
        )
        self.validation_failures = Counter(
            "datastorage_validation_failures_total",
            "Requests rejected as invalid",
            ["field", "reason"],
            registry=self.registry,
        )
        self.dlq_enqueued = Counter(
            "datastorage_dlq_enqueue_total",
            "Audit events written to the dead-letter queue",
            registry=self.registry,
        )
        self.dlq_drained = Counter(
            "datastorage_dlq_drained_total",
            "Audit events moved from the dead-letter queue into PostgreSQL",
            registry=self.registry,
        )
        self.dlq_retried = Counter(
            "datastorage_dlq_retry_total",
            "Dead-letter entries that PostgreSQL rejected and that will be tried again",
            registry=self.registry,
        )
        self.dlq_dead_lettered = Counter(
            "datastorage_dlq_dead_lettered_total",
            "Dead-letter entries given up on and moved to audit:dead-letter:events",
            registry=self.registry,
        )
        # The log says when an outage begins and ends; this counts the retries in between as they fail.
        self.dlq_retry_failures = Counter(
            "datastorage_dlq_retry_failures_total",
            "Rounds of the DLQ retry worker that failed because Redis or PostgreSQL was unreachable",
            ["dependency"],
            registry=self.registry,
        )
        for dependency in ("redis", "postgresql"):
            self.dlq_retry_failures.labels(dependency=dependency)
        self.dlq_depth = Gauge(
            "datastorage_dlq_depth",
            "Entries in the dead-letter queue stream",
            registry=self.registry,
        )
        self.dlq_capacity_ratio = Gauge(
            "datastorage_dlq_capacity_ratio",
            "Dead-letter queue depth divided by its maximum length",
            registry=self.registry,
        )
        self.partitions_created = Counter(
            "datastorage_partitions_created_total",
            "Monthly audit_events partitions created",
            registry=self.registry,
        )
        # By route template, not raw path, so that made-up paths cannot grow the series without bound.
        self.rate_limited = Counter(
            "datastorage_rate_limited_requests_total",
            "Requests refused with 429 because their client was over its rate limit, by route",
            ["path"],
            registry=self.registry,
        )

        self.chain_write_retries = Counter(
            "datastorage_chain_write_retries_total",
            "Writes tried again, hashes recomputed, after a conflict over their hash chains, by SQLSTATE "
            "(40001 serialisation failure, 40P01 deadlock)",
            ["reason"],
            registry=self.registry,
        )

        # Group commit (see `ingest`): how many single events each write took, and how many wait.
        self.write_group_events = Histogram(
            "datastorage_write_group_events",
            "Single-event requests written together in one transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.write_group_waiting = Gauge(
            "datastorage_write_group_waiting_events",
            "Single-event requests waiting for the write in flight to end, to be written together next",
            registry=self.registry,
        )

    def record_dlq_depth(self, depth: int, max_len: int) -> None:
        self.dlq_depth.set(depth)
        self.dlq_capacity_ratio.set(depth / max_len if max_len else 0.0)
