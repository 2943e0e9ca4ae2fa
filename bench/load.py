"""`python -m bench.load`: controller throughput and latency against a plain-client floor, in one run.

Starts a stack of its own (`python -m devstack.supervisor`: control plane,
PostgreSQL, Redis, DataStorage) and one controller watching `load-*`
namespaces, with the embedded policy engine as the README starts it, or
with an OPA server of its own (`--engine opa`), then measures:

* burst: `--count` SignalProcessings created at once (`--concurrency`
  threads) into `--namespaces` namespaces (half production, half staging,
  each with its target Pod), mixed severities; latency is the client-side
  monotonic time from just before the create to the moment a cluster-wide
  watch sees the SP `Completed`; throughput is SPs per second of wall time;
* the burst floor: the same number of SPs, each put through the controller's
  requests by a plain client at the same concurrency, in namespaces no
  controller watches: the create, the two reads (the target Pod, the parent
  RemediationRequest) and the 5 status writes, each carrying the last
  resourceVersion, each the merge patch the controller sent for a warm-up SP
  (its statuses recorded by the watch, patched from one phase to the next),
  because the API server's cost of a write grows with the object it stores;
  it is what the API server alone costs;
* the minimal floor, the baseline of earlier runs: the create and 5 writes of
  the phase alone, no reads; cheaper than anything a controller can do, so
  it is printed for comparison only;
* single: one SP at a time, `--singles` times, on the idle controller,
  against both floors done one at a time.

`--profile FILE` runs the controller under cProfile (through a
`sitecustomize` on its PYTHONPATH; the stats are written at its clean
shutdown) and prints the top functions by cumulative and own time.

It also prints the controller's RSS after the burst and the API server's
request counts during the burst (from its /metrics). Every SP must end
`Completed`; a `Failed` one, or one missing at the deadline, fails the run.
"""

from __future__ import annotations

import argparse
import os
import pstats
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

from devstack.controller_process import ControllerProcess
from devstack.launch import supervised_stack
from devstack.manifests import GROUP, RR_PLURAL, SP_PLURAL, VERSION, signal_processing, unique_rr_name
from devstack.opa_server import OpaServer
from devstack.policies import copy_shipped_policies
from envtest import assets

REPOSITORY: Final = Path(__file__).resolve().parents[1]
SEVERITIES: Final = ("critical", "warning", "info")
FLOOR_PHASES: Final = ("Pending", "Enriching", "Classifying", "Categorizing", "Completed")
MINIMAL_WRITES: Final = tuple({"phase": phase} for phase in FLOOR_PHASES)
COMPLETION_TIMEOUT: Final = 120.0


# --- the stack ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchStack:
    """A stack of the benchmark's own with an OPA: a controller's settings for it, and an API client."""

    settings: dict[str, str]
    api_client: client.ApiClient


ENGINES: Final = ("embedded", "opa")


def open_bench_stack(
    stack: ExitStack, workdir: Path, *, watch: str, connections: int, engine: str
) -> BenchStack:
    """Starts the stack (`python -m devstack.supervisor`) on `stack`, and an OPA for `engine` "opa";
    the settings make a controller watch the namespaces matching `watch` with that policy engine."""
    state = stack.enter_context(supervised_stack(workdir))
    settings = {
        "KUBECONFIG": state.kubeconfig,
        "DATA_STORAGE_URL": state.datastorage_url,
        "POLICY_DIR": str(copy_shipped_policies(workdir / "policies")),
        "WATCH_NAMESPACES": watch,
    }
    if engine == "opa":
        opa = stack.enter_context(OpaServer(assets.OPA.path, log_path=workdir / "opa.log"))
        settings["OPA_URL"] = opa.url
    configuration = client.Configuration()
    config.load_kube_config(config_file=state.kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    api_client = stack.enter_context(client.ApiClient(configuration))
    return BenchStack(settings, api_client)


# --- objects ------------------------------------------------------------------------------------


def random_signal_processing(namespace: str, severity: str) -> dict[str, Any]:
    """The shared SignalProcessing with a random fingerprint, as this benchmark has always made it."""
    rr = unique_rr_name()
    return signal_processing(
        namespace, rr_name=rr, severity=severity, signal_fingerprint=secrets.token_hex(32)
    )


def make_namespaces(core: client.CoreV1Api, prefix: str, count: int) -> list[str]:
    names = []
    for index in range(count):
        name = f"{prefix}{index}"
        environment = "production" if index % 2 == 0 else "staging"
        core.create_namespace(
            {"metadata": {"name": name, "labels": {"kubernaut.ai/environment": environment}}}
        )
        core.create_namespaced_pod(
            name,
            {
                "metadata": {"name": "app", "labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
            },
        )
        names.append(name)
    return names


def manifests(namespaces: list[str], count: int) -> list[dict[str, Any]]:
    return [
        random_signal_processing(namespaces[i % len(namespaces)], SEVERITIES[i % len(SEVERITIES)])
        for i in range(count)
    ]


# --- observing completion -----------------------------------------------------------------------


class CompletionWatch:
    """A cluster-wide watch on SignalProcessings that notes when each one is first seen terminal, and
    the status each one had in each phase."""

    def __init__(self, api: client.CustomObjectsApi, prefix: str) -> None:
        self._api = api
        self._prefix = prefix
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.completed: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.statuses: dict[str, dict[str, dict[str, Any]]] = {}
        self._stop = threading.Event()
        listed = api.list_cluster_custom_object(GROUP, VERSION, SP_PLURAL, limit=1)
        self._resource_version = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, name="completion-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._api.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    SP_PLURAL,
                    resource_version=self._resource_version,
                    timeout_seconds=60,
                ):
                    seen = time.monotonic()
                    sp = event["object"]
                    self._resource_version = sp["metadata"]["resourceVersion"]
                    if not sp["metadata"]["namespace"].startswith(self._prefix):
                        continue
                    self._note(sp, seen)
                    if self._stop.is_set():
                        break
            except urllib3.exceptions.HTTPError:
                continue  # the watch connection broke; resume from the last resourceVersion
            finally:
                stream.stop()

    def _note(self, sp: dict[str, Any], seen: float) -> None:
        key = f"{sp['metadata']['namespace']}/{sp['metadata']['name']}"
        status = sp.get("status") or {}
        with self._changed:
            if status.get("phase"):
                self.statuses.setdefault(key, {}).setdefault(status["phase"], status)
            if status.get("phase") == "Completed" and key not in self.completed:
                self.completed[key] = seen
                self._changed.notify_all()
            elif status.get("phase") == "Failed" and key not in self.failed:
                self.failed[key] = f"{status.get('failedPhase')}: {status.get('error')}"
                self._changed.notify_all()

    def wait_for(self, keys: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                failed = [k for k in keys if k in self.failed]
                if failed:
                    raise RuntimeError(
                        f"{len(failed)} SignalProcessings failed, e.g. {self.failed[failed[0]]}"
                    )
                missing = [k for k in keys if k not in self.completed]
                if not missing:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{len(missing)} SignalProcessings not Completed, e.g. {missing[0]}")
                self._changed.wait(min(left, 1.0))

    def stop(self) -> None:
        self._stop.set()


# --- the two workloads --------------------------------------------------------------------------


def key_of(manifest: dict[str, Any]) -> str:
    return f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"


def create(api: client.CustomObjectsApi, manifest: dict[str, Any]) -> dict[str, Any]:
    namespace = manifest["metadata"]["namespace"]
    return dict(api.create_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, manifest))


@dataclass(frozen=True)
class Floor:
    """What a plain client does for one SP: the create, then the reads (or none), then the writes."""

    label: str
    reads: bool
    writes: tuple[dict[str, Any], ...]


def merge_patch(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `before` into `after`: what changed, removals as null."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif old != value or key not in before:
            patch[key] = value
    return patch


def controller_floor(watcher: CompletionWatch, key: str) -> Floor:
    """The controller's requests for one SP: the patches that took the SP `key` from phase to phase,
    as the controller sends them (only what changed)."""
    recorded = [watcher.statuses[key][phase] for phase in FLOOR_PHASES]
    writes = tuple(
        merge_patch(before, after) for before, after in zip([{}, *recorded], recorded, strict=False)
    )
    return Floor("floor (its requests)", reads=True, writes=writes)


MINIMAL_FLOOR: Final = Floor("minimal floor (5 phases)", reads=False, writes=MINIMAL_WRITES)


def floor_sequence(api: client.ApiClient, floor: Floor, manifest: dict[str, Any]) -> None:
    """The API server's share of one SP without a controller; the writes are conditional."""
    custom = client.CustomObjectsApi(api)
    created = create(custom, manifest)
    namespace, name = created["metadata"]["namespace"], created["metadata"]["name"]
    if floor.reads:
        client.CoreV1Api(api).read_namespaced_pod("app", namespace)
        try:
            rr = manifest["spec"]["remediationRequestRef"]["name"]
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, RR_PLURAL, rr)
        except client.ApiException as error:
            if error.status != 404:  # the benchmark makes no RemediationRequests, nor does its controller
                raise
    version = created["metadata"]["resourceVersion"]
    for status in floor.writes:
        body = {"metadata": {"resourceVersion": version}, "status": status}
        written = custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, SP_PLURAL, name, body
        )
        version = written["metadata"]["resourceVersion"]


@dataclass(frozen=True)
class Result:
    latencies: list[float]
    wall: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def controller_burst(
    api: client.CustomObjectsApi, watcher: CompletionWatch, batch: list[dict[str, Any]], concurrency: int
) -> Result:
    started: dict[str, float] = {}

    def submit(manifest: dict[str, Any]) -> None:
        started[key_of(manifest)] = time.monotonic()
        create(api, manifest)

    begin = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(submit, batch))
    keys = list(started)
    watcher.wait_for(keys, COMPLETION_TIMEOUT)
    end = max(watcher.completed[k] for k in keys)
    return Result([watcher.completed[k] - started[k] for k in keys], end - begin)


def floor_burst(api: client.ApiClient, floor: Floor, batch: list[dict[str, Any]], concurrency: int) -> Result:
    def run(manifest: dict[str, Any]) -> float:
        start = time.monotonic()
        floor_sequence(api, floor, manifest)
        return time.monotonic() - start

    begin = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(run, batch))
    return Result(latencies, time.monotonic() - begin)


def sequential(run_one: Callable[[dict[str, Any]], float], batch: list[dict[str, Any]]) -> Result:
    begin = time.monotonic()
    latencies = [run_one(manifest) for manifest in batch]
    return Result(latencies, time.monotonic() - begin)


_PROFILER: Final = """\
import atexit, cProfile, os
_profile = cProfile.Profile()
_profile.enable()
atexit.register(lambda: _profile.dump_stats(os.environ["CONTROLLER_PROFILE_OUT"]))
"""


def profiling_path(directory: Path, output: Path) -> str:
    """A PYTHONPATH whose sitecustomize profiles the whole controller process."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_PROFILER)
    os.environ["CONTROLLER_PROFILE_OUT"] = str(output)
    return os.pathsep.join([str(directory), str(REPOSITORY)])


def print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# --- readings -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_command(root: int, named: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of `root` and all its descendants, summed per command name (or `named[pid]`)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        head, tail = text.rsplit(")", 1)
        fields = tail.split()
        pid = int(entry.name)
        names[pid] = named.get(pid) or head.split("(", 1)[1]
        parents[pid] = int(fields[1])
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    usage: dict[str, float] = {}
    for pid in seconds:
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            usage[names[pid]] = usage.get(names[pid], 0.0) + seconds[pid]
    return usage


def wait_until_idle(metrics_url: str, *, sps: int, timeout: float = COMPLETION_TIMEOUT) -> float:
    """Waits until the controller has delivered its audit events and posted (or dropped) its Events.

    A Completed SP means 5 Events (4 PhaseTransition, 1 SignalProcessed); returns the seconds waited.
    """
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        events = controller_metric(
            metrics_url, "signalprocessing_k8s_events_posted_total"
        ) + controller_metric(metrics_url, "signalprocessing_k8s_events_dropped_total")
        if events >= 5 * sps and controller_metric(metrics_url, "audit_events_pending") == 0:
            return time.monotonic() - begin
        time.sleep(0.1)
    raise RuntimeError("the controller did not become idle")


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def apiserver_requests(api_client: client.ApiClient) -> Counter[tuple[str, str]]:
    """apiserver_request_total by (resource, verb), summed over codes and scopes."""
    configuration = api_client.configuration
    headers = {"Authorization": configuration.api_key["authorization"]} if configuration.api_key else {}
    answer = api_client.rest_client.request("GET", f"{configuration.host}/metrics", headers=headers)
    text = answer.read().decode()
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                resource = sample.labels.get("resource", "") + (
                    "/" + sample.labels["subresource"] if sample.labels.get("subresource") else ""
                )
                counts[(resource, sample.labels.get("verb", ""))] += int(sample.value)
    return counts


def controller_metric(metrics_url: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    )


def line(label: str, result: Result) -> str:
    p50, p90, p99 = (result.percentile(q) * 1000 for q in (0.5, 0.9, 0.99))
    return (
        f"  {label:<30} p50 {p50:7.0f} ms  p90 {p90:7.0f} ms  p99 {p99:7.0f} ms"
        f"  {result.rate:7.1f} SP/s  ({len(result.latencies)} in {result.wall:.1f}s)"
    )


# --- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="SignalProcessings in the burst")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces the burst is spread over")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads creating SPs")
    parser.add_argument("--profile", type=Path, help="write the controller's cProfile stats here")
    parser.add_argument("--singles", type=int, default=20, help="one-at-a-time SPs for the idle latency")
    parser.add_argument("--engine", choices=ENGINES, default="embedded", help="policy engine")
    arguments = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    run = secrets.token_hex(3)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        began = time.monotonic()
        bench = open_bench_stack(
            stack,
            workdir,
            watch=f"load-{run}-*",
            connections=arguments.concurrency + 8,
            engine=arguments.engine,
        )
        settings = dict(bench.settings)
        if arguments.profile is not None:
            settings["PYTHONPATH"] = profiling_path(workdir / "profile", arguments.profile.resolve())
        controller = stack.enter_context(
            ControllerProcess(settings=settings, log_path=workdir / "controller.log")
        )
        print(
            f"stack and controller ({arguments.engine} policy engine) up in {time.monotonic() - began:.1f}s"
            f" (logs in {workdir})",
            flush=True,
        )

        api_client = bench.api_client
        core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)

        watched = make_namespaces(core, f"load-{run}-", arguments.namespaces)
        unwatched = make_namespaces(core, f"floor-{run}-", arguments.namespaces)
        watcher = CompletionWatch(custom, f"load-{run}-")
        stack.callback(watcher.stop)

        warm = manifests(watched, 3)
        controller_burst(custom, watcher, warm, 3)  # connections, caches and policies warmed up
        floors = (controller_floor(watcher, key_of(warm[0])), MINIMAL_FLOOR)

        minimal = floor_burst(
            api_client, MINIMAL_FLOOR, manifests(unwatched, arguments.count), arguments.concurrency
        )
        roles = {os.getpid(): "bench client", controller.pid or 0: "controller"}
        machine_before = cpu_by_command(os.getpid(), roles)
        floor = floor_burst(
            api_client, floors[0], manifests(unwatched, arguments.count), arguments.concurrency
        )
        machine_floor = cpu_by_command(os.getpid(), roles)
        before = apiserver_requests(api_client)
        cpu_before = cpu_seconds(controller.pid or 0)
        burst = controller_burst(custom, watcher, manifests(watched, arguments.count), arguments.concurrency)
        cpu = cpu_seconds(controller.pid or 0) - cpu_before
        after = apiserver_requests(api_client)
        machine_burst = cpu_by_command(os.getpid(), roles)
        rss = rss_megabytes(controller.pid or 0)
        drained = wait_until_idle(controller.metrics_url, sps=len(watcher.completed))

        def one_controller(manifest: dict[str, Any]) -> float:
            start = time.monotonic()
            create(custom, manifest)
            watcher.wait_for([key_of(manifest)], COMPLETION_TIMEOUT)
            return watcher.completed[key_of(manifest)] - start

        def one_floor(floor: Floor) -> Callable[[dict[str, Any]], float]:
            def run(manifest: dict[str, Any]) -> float:
                start = time.monotonic()
                floor_sequence(api_client, floor, manifest)
                return time.monotonic() - start

            return run

        single = sequential(one_controller, manifests(watched, arguments.singles))
        single_floors = [sequential(one_floor(f), manifests(unwatched, arguments.singles)) for f in floors]
        wait_until_idle(controller.metrics_url, sps=len(watcher.completed))
        delivered = controller_metric(controller.metrics_url, "audit_events_delivered_total")

        print(
            f"\nburst of {arguments.count} over {arguments.namespaces} namespaces,"
            f" concurrency {arguments.concurrency}"
        )
        print(line("controller (create->Completed)", burst))
        for label, result in ((floors[0].label, floor), (MINIMAL_FLOOR.label, minimal)):
            print(line(label, result))
            print(f"  throughput: controller / {label} = {burst.rate / result.rate:.2f}")
        print(f"\nsingle SP, one at a time, x{arguments.singles}")
        print(line("controller (create->Completed)", single))
        for each, result in zip(floors, single_floors, strict=True):
            print(line(each.label, result))
            ratio = single.percentile(0.5) / result.percentile(0.5)
            print(f"  p50 latency: controller / {each.label} = {ratio:.2f}")
        print(
            f"\ncontroller during the burst: {cpu:.1f}s CPU in {burst.wall:.1f}s"
            f" ({100 * cpu / burst.wall:.0f}% of one core); RSS after it {rss:.0f} MiB"
        )
        print(
            f"Events and audit backlog drained {drained:.1f}s after the burst;"
            f" audit events delivered {delivered:.0f}"
        )
        print("CPU seconds by process during each burst (this run's processes only; 2 cores in total):")
        floor_usage = {c: machine_floor.get(c, 0.0) - machine_before.get(c, 0.0) for c in machine_floor}
        burst_usage = {c: machine_burst.get(c, 0.0) - machine_floor.get(c, 0.0) for c in machine_burst}
        for command in sorted(burst_usage, key=lambda c: -burst_usage[c])[:8]:
            print(
                f"  {command:<18} floor {floor_usage.get(command, 0.0):6.1f}s"
                f"   controller burst {burst_usage[command]:6.1f}s"
            )
        print(
            f"  {'total':<18} floor {sum(floor_usage.values()):6.1f}s of {2 * floor.wall:.1f}"
            f"   controller burst {sum(burst_usage.values()):6.1f}s of {2 * burst.wall:.1f}"
        )
        print("API server requests during the burst (burst creates included), per SP:")
        delta = after - before
        for (resource, verb), count in sorted(delta.items(), key=lambda item: -item[1]):
            if count >= arguments.count / 10:
                print(f"  {verb:<7} {resource or '-':<34} {count:6d}  ({count / arguments.count:.2f}/SP)")
    if arguments.profile is not None:
        print_profile(arguments.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
