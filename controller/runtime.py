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
from controller.membership import Membership
from controller.metrics import ControllerMetrics
from controller.pipeline import SIGNALPROCESSINGS, Pipeline
from controller.policies import POLICY_FILE_NAME, ActivePolicies
from controller.policy_engine import EmbeddedEngine, OpaServerEngine, PolicyEngine
from controller.readyz import POLICIES, Readiness, policies_probe
from controller.readyz import start_readiness as start_readiness_edge
from controller.reconciler import Reconciler
from controller.sharding import Shards
from controller.signalmode import ActiveSignalModes
from controller.signalprocessing import SignalProcessing

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
    membership: Membership | None = None

    async def close(self) -> None:
        if self.membership is not None:
            await self.membership.close()  # first: the other replicas take this one's shards at once
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
    shards = (
        Shards(settings.replica, settings.shard_count, settings.shard_key)
        if settings.sharding_enabled
        else None
    )
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
        shards=shards,
    )
    reconciler = Reconciler(
        pipeline,
        audit,
        max_concurrent=settings.max_concurrent_reconciles,
        owns=shards.owns if shards is not None else lambda _: True,
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
    membership = None
    if shards is not None:
        membership = await _start_membership(settings, api, shards, reconciler, metrics)
    return Runtime(
        settings=settings,
        api=api,
        engine=engine,
        policies=policies,
        audit=audit,
        events=events,
        metrics=metrics,
        reconciler=reconciler,
        metrics_server=server,
        policy_watcher=watcher,
        membership=membership,
    )


async def _start_membership(
    settings: Settings,
    api: kube.ApiClient,
    shards: Shards,
    reconciler: Reconciler,
    metrics: ControllerMetrics,
) -> Membership:
    """Joins the shard group; from then on every change of the live replicas re-divides the shards,
    and the unfinished SPs of the shards this replica gains are processed."""

    async def members_changed(members: frozenset[str]) -> None:
        gained = shards.update(members)
        metrics.shards_owned.set(len(shards.owned))
        metrics.shard_members.set(len(members))
        logger.info(
            "replica %s owns %d of %d shards (%d gained) among %d live replicas",
            shards.replica,
            len(shards.owned),
            shards.count,
            len(gained),
            len(members),
        )
        if gained:
            try:
                unfinished = reconciler.adopt(
                    sp for sp in await _watched_signalprocessings(settings, api) if shards.shard(sp) in gained
                )
            except kube.ApiError as error:
                # Their events will bring them, or the next change of members; nothing is lost.
                logger.warning("could not list the SignalProcessings of the shards gained: %s", error)
                return
            logger.info("replica %s took over %d unfinished SignalProcessings", shards.replica, unfinished)

    assert settings.shard_lease_namespace is not None  # Settings refuses sharding without it
    membership = Membership(
        api,
        namespace=settings.shard_lease_namespace,
        group=settings.shard_group,
        replica=shards.replica,
        lease_seconds=settings.shard_lease_seconds,
        on_change=members_changed,
    )
    await membership.start()
    return membership


async def _watched_signalprocessings(settings: Settings, api: kube.ApiClient) -> list[SignalProcessing]:
    if settings.kopf_namespaces:
        raws = [
            sp
            for namespace in settings.kopf_namespaces
            for sp in await api.list(SIGNALPROCESSINGS, namespace=namespace)
        ]
    else:
        raws = await api.list_everywhere(SIGNALPROCESSINGS)
    sps = [SignalProcessing.from_raw(raw) for raw in raws]
    return [sp for sp in sps if settings.watches(sp.metadata.namespace)]
