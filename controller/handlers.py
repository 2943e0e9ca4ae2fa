"""The kopf handlers: thin, they hand each SignalProcessing to the reconciler.

Only event handlers are used: kopf's create/update handlers would store
their progress in annotations, which costs an extra write per SP; the
pipeline keeps its own progress in the status instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import kopf
from kopf._cogs.configs.configuration import PeeringSettings  # not re-exported by kopf

from controller.config import Settings
from controller.readyz import Readiness
from controller.runtime import Runtime, start_readiness, start_runtime
from controller.signalprocessing import SignalProcessing

# kopf waits this long for more events of one object before handling them;
# its 0.1 s default would add 0.1 s to every SP for nothing.
_BATCH_WINDOW_SECONDS = 0.001


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: only event handlers are registered, and they take no diff.

    kopf computes one for every event anyway (the object deep-copied, status included, then compared
    with the last-handled state): a third of its CPU in a burst (cProfile under bench.load).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def controller_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.batching.batch_window = _BATCH_WINDOW_SECONDS
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.posting.enabled = False  # the pipeline posts its own Events; kopf's would duplicate them
    settings.watching.server_timeout = 300
    config: Settings = memo["settings"]
    if config.peering:
        configure_peering(settings.peering, config)
    # kopf retries a failed startup handler; the readiness started by the first attempt stays.
    readiness: Readiness | None = memo.get("readiness")
    if readiness is None:
        readiness = memo["readiness"] = await start_readiness(config)
    memo["runtime"] = await start_runtime(config, readiness)


def configure_peering(peering: PeeringSettings, config: Settings) -> None:
    """One cluster-wide peering object for every replica, whatever namespaces they serve.

    kopf's default for a namespaced operator is a KopfPeering in each served
    namespace, which nobody can pre-create for namespaces matched by a glob.
    Replicas of equal priority would all pause, so each one gets its own
    (random unless configured); the highest live one works, the others wait.
    """
    peering.clusterwide = True
    peering.priority = (
        config.peering_priority if config.peering_priority is not None else secrets.randbelow(2**31)
    )
    peering.lifetime = config.peering_lifetime


@kopf.on.cleanup()
async def controller_cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.close()
    readiness: Readiness | None = memo.get("readiness")
    if readiness is not None:
        await readiness.close()


@kopf.on.event("kubernaut.ai", "v1alpha1", "signalprocessings")
async def signalprocessing_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    sp = SignalProcessing.from_raw(event["object"])
    if not runtime.settings.watches(sp.metadata.namespace):
        return
    if event["type"] == "DELETED":
        runtime.reconciler.forget(sp.metadata.uid)
        return
    await runtime.reconciler.on_event(sp)


@kopf.on.probe(id="policies")
def policies_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """The active hash of each policy and the last reload and rejection (kopf caches probes for 10 s)."""
    runtime: Runtime = memo["runtime"]
    return runtime.policy_watcher.probe_detail()
