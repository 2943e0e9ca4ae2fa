"""`make bench-kubeclient`: `controller.kube` against two maintained async Kubernetes clients.

It runs `python -m bench.kubeclient` in a virtualenv of its own with the two clients installed
(pyproject's `kubeclients` extra): kopf imports kubernetes_asyncio whenever it is installed, so it
is kept out of the virtualenv the controller runs from.

`controller.kube.ApiClient` is a hand-written client over aiohttp. It earns its place only if it is
measurably cheaper than a maintained one on the controller's own request pattern, so this benchmark
makes the same HTTP requests with three clients, each returning parsed dicts:

* `controller.kube.ApiClient`, credentials from the kubeconfig as the controller loads them;
* kubernetes_asyncio with raw responses (`_preload_content=False`, the body read and parsed with
  `json.loads`, as the controller does; a 404 is read from the status, not raised);
* lightkube's `AsyncClient` with generic resources (its objects are plain dicts), a 404 caught as
  `ApiError`. Its connection pool is given the same size as the other two (100, all kept alive):
  httpx keeps only 20 idle connections by default, and the pool policy is not what is compared.

One SignalProcessing (SP) is what the pipeline does for an SP whose target is a bare Pod, once its
caches are warm: 5 conditional status writes (JSON merge patches on `/status`, each carrying
`metadata.resourceVersion` of the previous answer: Pending, Enriching, Classifying, Categorizing,
Completed); between the 2nd and the 3rd, GET of the Pod and GET of the parent RemediationRequest
(which does not exist: 404, no recovery context) at once; 5 Events (4 PhaseTransition, 1
SignalProcessed) posted by 4 background posters, as `controller.events.EventRecorder` does. The SPs,
their namespaces and target Pods are created beforehand, outside the timed part.

It starts only a control plane of its own (`envtest.ControlPlane`: etcd, kube-apiserver, the CRDs;
their logs in a temp dir removed at the end), warms each client up, then runs 3 interleaved rounds
(the clients' order rotated each round) of:

* sequential: `--sequential` SPs one after another; per-SP latency p50 and p99 (the 7 requests up to
  the Completed write; the Events go on in the background, as in the controller);
* concurrent: `--count` SPs, `--concurrency` at once; SP/s of wall time, Events included;

and for both the bench process's CPU seconds per SP (`time.process_time`), the fairest number on a
small machine where the API server shares the CPU, and the API server's own. It prints the medians.
Every run is checked: the API server's `apiserver_request_total` must have grown by exactly the
pattern times the SPs, and every SP must be `Completed` at the resourceVersion of its last write.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, Protocol, cast

import httpx2
from kubernetes import config as sync_config
from kubernetes_asyncio import client as kac
from kubernetes_asyncio import config as kac_config
from lightkube import ApiError as LightkubeApiError
from lightkube import AsyncClient as LightkubeAsyncClient
from lightkube.config.client_adapter import verify_cluster
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from bench.load import apiserver_requests, cpu_seconds
from controller import kube
from controller.events import EVENTS
from controller.pipeline import SIGNALPROCESSINGS
from devstack.manifests import GROUP, RR_PLURAL, SP_PLURAL, VERSION, signal_processing, unique_rr_name
from envtest import ControlPlane

RawObject = dict[str, Any]

REPOSITORY: Final = Path(__file__).resolve().parents[1]
ROUNDS: Final = 3
PHASES: Final = ("Pending", "Enriching", "Classifying", "Categorizing", "Completed")
# The controller's EventRecorder posts with 4 tasks (controller/events.py, _CONCURRENCY).
EVENT_POSTERS: Final = 4
# The size of each client's connection pool: aiohttp's and kubernetes_asyncio's default.
POOL_SIZE: Final = 100
# Enough SPs at full concurrency to open every connection and load every code path once.
WARM_UP_SPS: Final = 64
# Creating the SPs beforehand: requests in flight.
SETUP_CONCURRENCY: Final = 32
TARGET_POD: Final = "app"
NAMESPACE_LABELS: Final = {"kubernaut.ai/environment": "production"}
POLICY_HASH: Final = hashlib.sha256(b"bench.kubeclient").hexdigest()

# What one SP costs the API server, by (resource[/subresource], verb) as apiserver_request_total counts.
PATTERN: Final = Counter(
    {
        ("pods", "GET"): 1,
        ("remediationrequests", "GET"): 1,
        ("signalprocessings/status", "PATCH"): 5,
        ("events", "POST"): 5,
    }
)


# --- the three clients ----------------------------------------------------------------------------


class PatternClient(Protocol):
    """The four calls of the controller's pattern; every answer is the parsed JSON object."""

    label: str

    async def get_pod(self, namespace: str, name: str) -> RawObject | None:
        """The Pod, or None when it does not exist."""
        ...

    async def get_remediation_request(self, namespace: str, name: str) -> RawObject | None:
        """The RemediationRequest, or None when it does not exist (404)."""
        ...

    async def patch_status(self, namespace: str, name: str, patch: RawObject) -> RawObject:
        """A JSON merge patch of the SP's status subresource; the SP as written."""
        ...

    async def create_event(self, namespace: str, body: RawObject) -> RawObject: ...

    async def close(self) -> None: ...


class HandWritten:
    """`controller.kube.ApiClient`, as `controller.runtime` opens it."""

    label = "controller.kube"

    def __init__(self, kubeconfig: Path) -> None:
        self._api = kube.ApiClient(kube.Credentials.from_kubeconfig(str(kubeconfig)))

    async def get_pod(self, namespace: str, name: str) -> RawObject | None:
        return await self._api.get(kube.PODS, name, namespace=namespace)

    async def get_remediation_request(self, namespace: str, name: str) -> RawObject | None:
        return await self._api.get(kube.REMEDIATIONREQUESTS, name, namespace=namespace)

    async def patch_status(self, namespace: str, name: str, patch: RawObject) -> RawObject:
        return await self._api.patch_status(SIGNALPROCESSINGS, name, namespace=namespace, patch=patch)

    async def create_event(self, namespace: str, body: RawObject) -> RawObject:
        return await self._api.create(EVENTS, namespace=namespace, body=body)

    async def close(self) -> None:
        await self._api.close()


class KubernetesAsyncio:
    """kubernetes_asyncio's generated API, with raw responses parsed like the controller parses them."""

    label = "kubernetes_asyncio"

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        # Untyped on purpose: the stubs know neither raw responses nor `_content_type`, nor plain dicts.
        self._core: Any = kac.CoreV1Api(api_client)
        self._custom: Any = kac.CustomObjectsApi(api_client)

    @classmethod
    async def open(cls, kubeconfig: Path) -> KubernetesAsyncio:
        configuration = kac.Configuration()
        configuration.connection_pool_maxsize = POOL_SIZE
        await kac_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        return cls(kac.ApiClient(configuration))

    @staticmethod
    async def _parsed(answer: Awaitable[Any], *, missing_is_none: bool = False) -> RawObject | None:
        response = await answer
        body = await response.read()
        response.release()
        if response.status == 404 and missing_is_none:
            return None
        if response.status not in (200, 201):
            raise RuntimeError(f"kubernetes_asyncio: HTTP {response.status}: {body[:300]!r}")
        return cast(RawObject, json.loads(body))

    async def get_pod(self, namespace: str, name: str) -> RawObject | None:
        return await self._parsed(
            self._core.read_namespaced_pod(name, namespace, _preload_content=False), missing_is_none=True
        )

    async def get_remediation_request(self, namespace: str, name: str) -> RawObject | None:
        return await self._parsed(
            self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, RR_PLURAL, name, _preload_content=False
            ),
            missing_is_none=True,
        )

    async def patch_status(self, namespace: str, name: str, patch: RawObject) -> RawObject:
        answer = self._custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            SP_PLURAL,
            name,
            patch,
            # Its default for a dict body is a JSON patch; the controller sends a merge patch.
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
        return cast(RawObject, await self._parsed(answer))

    async def create_event(self, namespace: str, body: RawObject) -> RawObject:
        answer = self._core.create_namespaced_event(namespace, body, _preload_content=False)
        return cast(RawObject, await self._parsed(answer))

    async def close(self) -> None:
        await self._api_client.close()


class Lightkube:
    """lightkube's AsyncClient with generic resources, whose objects are the parsed dicts themselves."""

    label = "lightkube"

    def __init__(self, kubeconfig: Path) -> None:
        config = KubeConfig.from_file(kubeconfig).get()
        if config is None or config.user is None:
            raise ValueError(f"{kubeconfig}: no current context with a user")
        # A transport of our own only to size the pool; the TLS context is the one lightkube builds.
        transport = httpx2.AsyncHTTPTransport(
            verify=verify_cluster(config.cluster, config.user, config.abs_file),
            limits=httpx2.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
        )
        self._client = LightkubeAsyncClient(config, transport=transport)
        self._pod: Any = create_namespaced_resource("", "v1", "Pod", "pods")
        self._event: Any = create_namespaced_resource("", "v1", "Event", "events")
        self._rr: Any = create_namespaced_resource(GROUP, VERSION, "RemediationRequest", RR_PLURAL)
        self._sp: Any = create_namespaced_resource(GROUP, VERSION, "SignalProcessing", SP_PLURAL)

    async def _get(self, resource: Any, namespace: str, name: str) -> RawObject | None:
        try:
            return cast(RawObject, await self._client.get(resource, name, namespace=namespace))
        except LightkubeApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def get_pod(self, namespace: str, name: str) -> RawObject | None:
        return await self._get(self._pod, namespace, name)

    async def get_remediation_request(self, namespace: str, name: str) -> RawObject | None:
        return await self._get(self._rr, namespace, name)

    async def patch_status(self, namespace: str, name: str, patch: RawObject) -> RawObject:
        written = await self._client.patch(
            self._sp.Status, name, patch, namespace=namespace, patch_type=PatchType.MERGE
        )
        return cast(RawObject, written)

    async def create_event(self, namespace: str, body: RawObject) -> RawObject:
        # The namespace comes from the body, as for the other clients.
        return cast(RawObject, await self._client.create(self._event(body)))

    async def close(self) -> None:
        await self._client.close()


async def open_clients(kubeconfig: Path) -> list[PatternClient]:
    return [HandWritten(kubeconfig), await KubernetesAsyncio.open(kubeconfig), Lightkube(kubeconfig)]


def client_versions() -> str:
    return (
        f"kubernetes_asyncio {version('kubernetes_asyncio')} (raw responses), "
        f"lightkube {version('lightkube')} (generic resources; httpx2 {version('httpx2')}), "
        f"controller.kube on aiohttp {version('aiohttp')}"
    )


# --- one SignalProcessing ---------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, reason: str, message: str, now: str) -> RawObject:
    return {
        "type": kind,
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def kubernetes_context(namespace: str, pod: RawObject | None) -> RawObject:
    """The context the Enriching step writes for a bare Pod, from the Pod as read."""
    metadata = (pod or {}).get("metadata") or {}
    labels = metadata.get("labels") or {}
    return {
        "namespace": {"name": namespace, "labels": NAMESPACE_LABELS},
        "workload": {"kind": "Pod", "name": TARGET_POD, "labels": labels},
        "pod": {
            "labels": labels,
            "phase": ((pod or {}).get("status") or {}).get("phase", ""),
            "creationTimestamp": metadata.get("creationTimestamp"),
        },
        "detectedLabels": {
            "isProduction": True,
            "hasResourceLimits": False,
            "helmManaged": False,
            "gitOpsManaged": False,
            "hasPDB": False,
            "hasHPA": False,
            "networkIsolated": False,
            "serviceMesh": False,
        },
        "customLabels": {},
        "degradedMode": pod is None,
    }


def status_patch(
    phase: str, *, namespace: str, pod: RawObject | None, conditions: list[RawObject]
) -> RawObject:
    """What the pipeline's step writes to reach `phase` (the fields that change, as merge patches go);
    `conditions` is the list so far, extended here: a list is always sent whole."""
    now = timestamp(datetime.now(UTC))
    if phase == "Pending":
        return {"phase": phase, "startTime": now, "observedGeneration": 1}
    if phase == "Enriching":
        return {"phase": phase}
    if phase == "Classifying":
        conditions.append(
            condition(
                "EnrichmentComplete", "EnrichmentSucceeded", f"K8s context enriched: Pod/{TARGET_POD}", now
            )
        )
        return {
            "phase": phase,
            "kubernetesContext": kubernetes_context(namespace, pod),
            "conditions": conditions,
        }
    if phase == "Categorizing":
        message = (
            "Classified: severity=critical, environment=production (source=namespace-labels), priority=P0"
        )
        conditions.append(condition("ClassificationComplete", "ClassificationSucceeded", message, now))
        return {
            "phase": phase,
            "environmentClassification": {
                "environment": "production",
                "source": "namespace-labels",
                "classifiedAt": now,
            },
            "priorityAssignment": {"priority": "P0", "source": "policy", "assignedAt": now},
            "signalClassification": {
                "signalMode": "reactive",
                "signalName": "HighMemoryUsage",
                "severity": "critical",
                "policyHash": POLICY_HASH,
            },
            "conditions": conditions,
        }
    conditions.extend(
        [
            condition(
                "CategorizationComplete", "CategorizationSucceeded", "Categorized: criticality=High", now
            ),
            condition("ProcessingComplete", "ProcessingSucceeded", "Signal processed", now),
            condition("Ready", "Ready", "Signal processed", now),
        ]
    )
    return {
        "phase": phase,
        "completionTime": now,
        "businessClassification": {"criticality": "High", "slaRequirement": "Gold"},
        "conditions": conditions,
    }


def event(sp: RawObject, *, reason: str, message: str) -> RawObject:
    """An Event about `sp`, as `controller.events.EventRecorder.record` builds it."""
    metadata = sp["metadata"]
    now = timestamp(datetime.now(UTC))
    component = "signalprocessing-controller"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{metadata['name']}.{secrets.token_hex(8)}",
            "namespace": metadata["namespace"],
        },
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SignalProcessing",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
        },
        "type": "Normal",
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventPoster:
    """The controller's EventRecorder in small: a queue, and a few tasks posting from it."""

    def __init__(self, client: PatternClient, posters: int = EVENT_POSTERS) -> None:
        self._client = client
        self._queue: asyncio.Queue[RawObject] = asyncio.Queue()
        self._errors: list[BaseException] = []
        self._tasks = [asyncio.create_task(self._post_forever()) for _ in range(posters)]

    def post(self, body: RawObject) -> None:
        self._queue.put_nowait(body)

    async def drain(self) -> None:
        """Returns once every Event queued so far is posted; raises the first that failed."""
        await self._queue.join()
        if self._errors:
            raise self._errors[0]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _post_forever(self) -> None:
        while True:
            body = await self._queue.get()
            try:
                await self._client.create_event(body["metadata"]["namespace"], body)
            except Exception as error:
                self._errors.append(error)
            finally:
                self._queue.task_done()


@dataclass(frozen=True)
class Processed:
    key: str
    seconds: float  # from the first request to the Completed write's answer
    resource_version: str  # of the Completed write


async def process(client: PatternClient, sp: RawObject, events: EventPoster) -> Processed:
    """The controller's requests for one SP, from New to Completed."""
    began = time.perf_counter()
    metadata = sp["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    signal = sp["spec"]["signal"]
    rr = sp["spec"]["remediationRequestRef"]
    resource_version = metadata["resourceVersion"]
    conditions: list[RawObject] = []
    pod: RawObject | None = None
    previous = "New"
    written = sp
    for phase in PHASES:
        if phase == "Classifying":  # the Enriching step reads the target and the parent RR at once
            pod, _ = await asyncio.gather(
                client.get_pod(signal["targetResource"]["namespace"], signal["targetResource"]["name"]),
                client.get_remediation_request(rr["namespace"], rr["name"]),
            )
        patch = status_patch(phase, namespace=namespace, pod=pod, conditions=conditions)
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        written = await client.patch_status(namespace, name, body)
        resource_version = written["metadata"]["resourceVersion"]
        if phase != "Pending":
            events.post(event(written, reason="PhaseTransition", message=f"{previous} -> {phase}"))
        previous = phase
    elapsed = time.perf_counter() - began
    events.post(event(written, reason="SignalProcessed", message="Signal processed: P0, production"))
    return Processed(f"{namespace}/{name}", elapsed, resource_version)


# --- the runs -------------------------------------------------------------------------------------


@dataclass
class Run:
    """One client's pass over one batch of SPs."""

    client: str
    mode: str
    processed: list[Processed]
    wall: float
    cpu: float  # this process's CPU seconds
    apiserver_cpu: float

    @property
    def count(self) -> int:
        return len(self.processed)

    @property
    def rate(self) -> float:
        return self.count / self.wall

    def percentile(self, q: float) -> float:
        ordered = sorted(p.seconds for p in self.processed)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def cpu_per_sp(self) -> float:
        return self.cpu / self.count

    @property
    def apiserver_cpu_per_sp(self) -> float:
        return self.apiserver_cpu / self.count


async def run_batch(
    client: PatternClient, mode: str, batch: Sequence[RawObject], concurrency: int, apiserver_pid: int
) -> Run:
    """Processes `batch`, `concurrency` SPs at once; done when all are Completed and every Event is posted."""
    gc.collect()  # garbage of the set-up is not this client's to collect
    events = EventPoster(client)
    processed: list[Processed] = []
    pending: Iterator[RawObject] = iter(batch)

    async def worker() -> None:
        for sp in pending:
            processed.append(await process(client, sp, events))

    try:
        apiserver_before, cpu_before, began = (
            cpu_seconds(apiserver_pid),
            time.process_time(),
            time.perf_counter(),
        )
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await events.drain()
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu_before
        apiserver_cpu = cpu_seconds(apiserver_pid) - apiserver_before
    finally:
        await events.close()
    return Run(client.label, mode, processed, wall, cpu, apiserver_cpu)


@dataclass
class Cluster:
    """The control plane as the bench sees it: a set-up client, the API server's process and metrics."""

    setup: kube.ApiClient
    apiserver_pid: int
    metrics_client: Any  # a kubernetes.client.ApiClient, for bench.load.apiserver_requests
    created: int = 0

    async def make_namespace(self, name: str) -> None:
        """A namespace with the target Pod, as bench.load makes them."""
        await self.setup.create(
            kube.NAMESPACES, namespace="", body={"metadata": {"name": name, "labels": NAMESPACE_LABELS}}
        )
        pod = {
            "metadata": {"name": TARGET_POD, "labels": {"app": "app", "team": "payments"}},
            "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
        }
        await self.setup.create(kube.PODS, namespace=name, body=pod)

    async def make_sps(self, namespace: str, count: int) -> list[RawObject]:
        """`count` new SPs in `namespace`, as the API server answered their creation."""
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one() -> RawObject:
            manifest = signal_processing(
                namespace, rr_name=unique_rr_name(), signal_fingerprint=secrets.token_hex(32)
            )
            async with gate:
                return await self.setup.create(SIGNALPROCESSINGS, namespace=namespace, body=manifest)

        sps = await asyncio.gather(*(one() for _ in range(count)))
        self.created += count
        return list(sps)

    def requests(self) -> Counter[tuple[str, str]]:
        return apiserver_requests(self.metrics_client)

    async def check(
        self, run: Run, before: Counter[tuple[str, str]], namespace: str
    ) -> Counter[tuple[str, str]]:
        """Raises unless the run made exactly the pattern's requests and left every SP Completed at the
        resourceVersion of its last write; returns the request counts after the run."""
        expected = Counter({key: count * run.count for key, count in PATTERN.items()})
        deadline = time.monotonic() + 10
        while True:  # a request is counted as its answer leaves; the last may not be counted yet
            after = self.requests()
            made = Counter({key: after[key] - before[key] for key in PATTERN})
            if made == expected or time.monotonic() > deadline:
                break
        if made != expected:
            raise RuntimeError(
                f"{run.client} {run.mode}: the API server counted {dict(made)}, not {dict(expected)}"
            )
        versions = {p.key: p.resource_version for p in run.processed}
        stored = await self.setup.list(SIGNALPROCESSINGS, namespace=namespace)
        for sp in stored:
            key = f"{namespace}/{sp['metadata']['name']}"
            phase = (sp.get("status") or {}).get("phase")
            if phase != "Completed" or sp["metadata"]["resourceVersion"] != versions.get(key):
                raise RuntimeError(
                    f"{run.client} {run.mode}: {key} is {phase} at {sp['metadata']['resourceVersion']}"
                )
        if len(stored) != len(versions):
            raise RuntimeError(
                f"{run.client} {run.mode}: {len(stored)} SPs stored, {len(versions)} processed"
            )
        return after


@dataclass(frozen=True)
class Plan:
    sequential: int
    count: int
    concurrency: int


async def measure(kubeconfig: Path, apiserver_pid: int, plan: Plan) -> list[Run]:
    prefix = f"kc-{secrets.token_hex(3)}"
    setup = kube.ApiClient(kube.Credentials.from_kubeconfig(str(kubeconfig)))
    metrics_client = sync_config.new_client_from_config(config_file=str(kubeconfig))
    clients = await open_clients(kubeconfig)
    try:
        cluster = Cluster(setup, apiserver_pid, metrics_client)
        # One namespace per (round, mode, client) run, so that each run's SPs can be checked alone.
        modes = {"sequential": (plan.sequential, 1), "concurrent": (plan.count, plan.concurrency)}
        namespaces = {
            (round_number, mode, index): f"{prefix}-r{round_number}-{mode[:3]}-{index}"
            for round_number in range(ROUNDS)
            for mode in modes
            for index in range(len(clients))
        }
        warm_up = {index: f"{prefix}-warm-{index}" for index in range(len(clients))}
        began = time.monotonic()
        batches: dict[str, list[RawObject]] = {}
        for namespace in warm_up.values():
            await cluster.make_namespace(namespace)
            batches[namespace] = await cluster.make_sps(namespace, WARM_UP_SPS)
        for (_, mode, _), namespace in namespaces.items():
            await cluster.make_namespace(namespace)
            batches[namespace] = await cluster.make_sps(namespace, modes[mode][0])
        print(f"{cluster.created} SignalProcessings created in {time.monotonic() - began:.1f}s", flush=True)

        for index, client in enumerate(clients):
            await run_batch(client, "warm-up", batches[warm_up[index]], plan.concurrency, apiserver_pid)
        print("clients warmed up; measuring", flush=True)

        runs: list[Run] = []
        counts = cluster.requests()
        for round_number in range(ROUNDS):
            for mode, (_, concurrency) in modes.items():
                # The clients' order turns each round, so that none always follows the same one.
                for turn in range(len(clients)):
                    index = (round_number + turn) % len(clients)
                    namespace = namespaces[(round_number, mode, index)]
                    run = await run_batch(
                        clients[index], mode, batches[namespace], concurrency, apiserver_pid
                    )
                    counts = await cluster.check(run, counts, namespace)
                    runs.append(run)
                    print(f"  round {round_number + 1}/{ROUNDS} {progress(run)}", flush=True)
        return runs
    finally:
        for client in clients:
            await client.close()
        await setup.close()
        metrics_client.close()


# --- the report -----------------------------------------------------------------------------------


def progress(run: Run) -> str:
    if run.mode == "sequential":
        timing = f"p50 {run.percentile(0.5) * 1000:5.2f} ms  p99 {run.percentile(0.99) * 1000:5.2f} ms"
    else:
        timing = f"{run.rate:6.1f} SP/s"
    return f"{run.mode:<10} {run.client:<18} {timing}  CPU {run.cpu_per_sp * 1000:5.2f} ms/SP  (checked)"


def median_of(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


def spread(runs: list[Run], value: Callable[[Run], float], scale: float = 1.0, digits: int = 2) -> str:
    values = [value(run) * scale for run in runs]
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(runs: list[Run], plan: Plan) -> str:
    clients = list(dict.fromkeys(run.client for run in runs))

    def of(client: str, mode: str) -> list[Run]:
        return [run for run in runs if run.client == client and run.mode == mode]

    def p50(run: Run) -> float:
        return run.percentile(0.5)

    def p99(run: Run) -> float:
        return run.percentile(0.99)

    def cpu(run: Run) -> float:
        return run.cpu_per_sp

    def rate(run: Run) -> float:
        return run.rate

    def apiserver(run: Run) -> float:
        return run.apiserver_cpu_per_sp

    lines = [
        "",
        f"clients: {client_versions()}",
        "per SP: GET Pod + GET RemediationRequest (404) at once, 5 conditional merge patches of /status,"
        f" 5 Events by {EVENT_POSTERS} posters",
        f"medians of {ROUNDS} interleaved rounds, (min-max); CPU is this process's, in ms per SP",
        "",
        f"sequential, {plan.sequential} SPs one at a time",
        f"  {'client':<20}{'p50 ms':>22}{'p99 ms':>22}{'CPU ms/SP':>22}{'API server CPU ms/SP':>24}",
    ]
    for client in clients:
        batch = of(client, "sequential")
        lines.append(
            f"  {client:<20}{spread(batch, p50, 1000):>22}{spread(batch, p99, 1000):>22}"
            f"{spread(batch, cpu, 1000):>22}{spread(batch, apiserver, 1000):>24}"
        )
    lines += [
        "",
        f"concurrent, {plan.count} SPs, {plan.concurrency} at once",
        f"  {'client':<20}{'SP/s':>22}{'CPU ms/SP':>22}{'API server CPU ms/SP':>24}",
    ]
    for client in clients:
        batch = of(client, "concurrent")
        lines.append(
            f"  {client:<20}{spread(batch, rate, digits=1):>22}{spread(batch, cpu, 1000):>22}"
            f"{spread(batch, apiserver, 1000):>24}"
        )
    baseline = clients[0]

    def ratio(
        client: str, mode: str, value: Callable[[Run], float], *, higher_is_better: bool = False
    ) -> float:
        """How many times better `baseline` is than `client`: above 1, `baseline` wins."""
        theirs, ours = median_of(of(client, mode), value), median_of(of(baseline, mode), value)
        return ours / theirs if higher_is_better else theirs / ours

    lines += ["", f"{baseline} better by a factor of (medians; above 1.00 it wins):"]
    for client in clients[1:]:
        lines.append(
            f"  than {client:<20} sequential: p50 {ratio(client, 'sequential', p50):.2f}, "
            f"CPU/SP {ratio(client, 'sequential', cpu):.2f};  concurrent: "
            f"SP/s {ratio(client, 'concurrent', rate, higher_is_better=True):.2f}, "
            f"CPU/SP {ratio(client, 'concurrent', cpu):.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubeclient", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=200, help="SPs one at a time, per client and round")
    parser.add_argument(
        "--count", type=int, default=500, help="SPs of the concurrent run, per client and round"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="SPs at once in the concurrent run")
    arguments = parser.parse_args(argv)
    plan = Plan(arguments.sequential, arguments.count, arguments.concurrency)
    with ExitStack() as stack:
        plane = ControlPlane(crd_dirs=[REPOSITORY / "crds"])
        kubeconfig = plane.start()
        stack.callback(plane.stop)
        apiserver_pid = next(s.pid for s in plane.servers if s.name == "kube-apiserver" and s.pid is not None)
        print(f"control plane up in {plane.started_in:.1f}s ({os.cpu_count()} CPUs)", flush=True)
        runs = asyncio.run(measure(kubeconfig, apiserver_pid, plan))
    print(report(runs, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
