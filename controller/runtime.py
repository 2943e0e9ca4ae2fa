"""Builds everything one controller needs from its settings, and closes it all again.

This is the composition root: API client, caches, policy engine and active
policies, audit client, Event recorder, metrics, pipeline and reconciler; and,
before all of them, the readiness gates and `/readyz`. The kopf handlers only
call `start_readiness`, `start_runtime` and the two `close` methods.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import start_http_server

from controller import classify, clusters, hotreload, kube, signalmode
from controller.audit import AuditClient
from controller.backoff import RetryBackoff
from controller.caches import EnrichmentCaches
from controller.config import Settings
from controller.events import EventRecorder
from controller.metrics import ControllerMetrics
from controller.pipeline import SIGNALPROCESSINGS, Pipeline
from controller.policies import POLICY_FILE_NAME, ActivePolicies
from controller.policy_engine import EmbeddedEngine, OpaServerEngine, PolicyEngine
from controller.readyz import POLICIES, Readiness, policies_probe
from controller.readyz import start_readiness as start_readiness_edge
from controller.reconciler import Reconciler
from controller.signalmode import ActiveSignalModes

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    api: kube.ApiClient
    engine: PolicyEngine
    policies: ActivePolicies
    audit: AuditClient
    events: EventRecorder
    metrics: ControllerMetrics
    reconciler: Reconciler
    metrics_server: Any
    policy_watcher: hotreload.PolicyWatcher

    async def close(self) -> None:
        await self.policy_watcher.close()
        await self.reconciler.close()
        await self.events.close()
        undelivered = await self.audit.close()
        if undelivered:
            logger.error("%d audit events were not delivered before shutdown", undelivered)
        await self.engine.close()
        await self.api.close()
        self.metrics_server.shutdown()


def _credentials(settings: Settings) -> kube.Credentials:
    if settings.kubeconfig:
        return kube.Credentials.from_kubeconfig(settings.kubeconfig)
    return kube.Credentials.in_cluster()


async def start_readiness(settings: Settings) -> Readiness:
    """`/readyz` and its gates, started first and kept across start-up retries: a controller still
    loading its policies, or failing to, already answers "not ready" and says why."""
    return await start_readiness_edge(settings, kube.ApiClient(_credentials(settings)), SIGNALPROCESSINGS)


async def start_runtime(settings: Settings, readiness: Readiness) -> Runtime:
    api = kube.ApiClient(_credentials(settings))
    metrics = ControllerMetrics.create()
    readiness.gates.observe(metrics.show_gate)
    engine: PolicyEngine = OpaServerEngine(settings.opa_url) if settings.opa_url else EmbeddedEngine()
    policies = ActivePolicies(engine, classify.smoke_check)
    signal_modes = ActiveSignalModes(
        settings.signal_mode_config_path or settings.policy_dir / signalmode.MAPPINGS_FILE_NAME
    )
    cluster_registry = clusters.FileClusterRegistry(
        settings.cluster_registry_path or settings.policy_dir / clusters.REGISTRY_FILE_NAME
    )
    readiness.gates.hold_closed(POLICIES, f"loading the policies in {settings.policy_dir}")
    try:
        active = await policies.start(settings.policy_dir)
    except Exception as error:
        readiness.gates.hold_closed(POLICIES, f"not loaded: {error}")
        raise
    readiness.gates.attach(POLICIES, policies_probe(policies, engine))
    metrics.show_active_hashes({POLICY_FILE_NAME: active.sha256})
    audit = AuditClient(
        settings.data_storage_url,
        batch_size=settings.audit_batch_size,
        flush_interval=settings.audit_flush_interval,
        registry=metrics.registry,
    )
    await audit.start()
    events = EventRecorder(api, metrics.registry)
    events.start()
    pipeline = Pipeline(
        api=api,
        caches=EnrichmentCaches.create(),
        policies=policies,
        signal_modes=signal_modes,
        fleet=clusters.Fleet(cluster_registry, hub_id=settings.cluster_id),
        audit=audit,
        events=events,
        metrics=metrics,
        deadline=timedelta(seconds=settings.deadline_seconds),
        backoff=RetryBackoff(base=settings.backoff_base_seconds, cap=settings.backoff_cap_seconds),
        clock=utc_now,
    )
    pod = hotreload.controller_pod_from_env(os.environ)
    watcher = hotreload.PolicyWatcher(
        settings.policy_dir,
        policies,
        metrics,
        engine=engine,
        notifier=hotreload.PodEventNotifier(api, events, pod) if pod else None,
        signal_modes=signal_modes,
        cluster_registry=cluster_registry,
    )
    await watcher.start()
    server, _ = start_http_server(settings.metrics_port, registry=metrics.registry)
    return Runtime(
        settings=settings,
        api=api,
        engine=engine,
        policies=policies,
        audit=audit,
        events=events,
        metrics=metrics,
        reconciler=Reconciler(pipeline, audit, max_concurrent=settings.max_concurrent_reconciles),
        metrics_server=server,
        policy_watcher=watcher,
    )
