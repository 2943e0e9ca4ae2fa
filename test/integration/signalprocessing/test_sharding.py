"""Sharding: several controllers working at once, each on its shards, and every SignalProcessing
processed exactly once, while all replicas run, after one is killed mid-burst, and when one joins.

Each spec runs its own replicas as processes (`REPLICA_NAME` r0, r1, r2) in a shard group of its own,
with their Leases in a namespace of its own, watching only its own namespaces. "Exactly once" is
checked three ways: the audit trail of each SP has exactly the success events; a watch opened before
the burst sees each SP's `status.phase` written exactly Pending, Enriching, Classifying, Categorizing,
Completed (a phase written twice shows as a repeat); and the replicas'
`signalprocessing_shard_completed_total` count each SP once, on its shard, at a replica that owned
that shard. Who did the work is checked against `controller.sharding`: every audit event names the
SP's shard (`shard_of(uid)`) and a replica that owned that shard (`shards_of`) while the SP was
processed.

Timings (the take-over after a kill) are printed, never asserted: waits have generous timeouts only.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import pytest
from kubernetes import client, config, watch

from controller.sharding import shard_of, shards_of
from devstack.controller_process import ControllerProcess
from devstack.manifests import GROUP, SP_PLURAL, VERSION, signal_processing, unique_rr_name
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from test.integration.conftest import request_deletion
from test.integration.deploy.charts import unique_name
from test.integration.polling import depending_on, eventually
from test.integration.signalprocessing.conftest import controller_settings, pod
from test.integration.signalprocessing.support import (
    SUCCESS_TRAIL,
    TERMINAL,
    audit_events,
    count_types,
    scrape,
    wait_until_delivered,
)

SHARDS: Final = 16
# Short, so that a take-over after a kill takes seconds; not so short that a survivor stalled by a
# loaded machine (renewing every third of it) is taken for gone and its shards move.
TAKEOVER_LEASE_SECONDS: Final = 5
# Where no replica is meant to leave: long enough that a replica stalled by a loaded machine is not
# taken for gone, which would move shards and make the attribution of the work ambiguous.
STEADY_LEASE_SECONDS: Final = 10
BURST: Final = 45
NAMESPACES: Final = 3
# Every status.phase a watch sees for an SP processed once: one write per phase, none repeated.
SUCCESS_PHASES: Final = ["Pending", "Enriching", "Classifying", "Categorizing", "Completed"]
SUCCESS_TRANSITIONS: Final = [
    "Pending -> Enriching",
    "Enriching -> Classifying",
    "Classifying -> Categorizing",
    "Categorizing -> Completed",
]
PIPELINE_REASONS: Final = ("PhaseTransition", "SignalProcessed")  # the Events that name replica and shard
RUN_LABEL: Final = "test.kubernaut.ai/shard-run"  # on every SP of a spec, which its phase watch selects
# Generous: three controllers and the stack share a small, perhaps loaded, machine.
BURST_TIMEOUT: Final = 180.0
TAKEOVER_TIMEOUT: Final = 4 * STEADY_LEASE_SECONDS + 60.0


# --- who owns what -------------------------------------------------------------------------------


def owners(replicas: Iterable[str]) -> dict[int, str]:
    """The replica that owns each shard while exactly `replicas` are live."""
    live = set(replicas)
    return {shard: replica for replica in live for shard in shards_of(replica, live, SHARDS)}


@dataclass(frozen=True)
class Signal:
    """One SP of a burst: its RemediationRequest (the audit correlation id), where it is, its uid."""

    rr: str
    namespace: str
    name: str
    uid: str

    @property
    def shard(self) -> int:
        return shard_of(self.uid, SHARDS)


Trails = dict[Signal, list[dict[str, Any]]]


# --- a watch of every phase written --------------------------------------------------------------


class PhaseWatch:
    """Every `status.phase` the API server reports for a spec's SPs, in order, from before they exist.

    A thread follows a cluster-wide watch of the SPs labelled `RUN_LABEL=<run>`, from the
    resourceVersion of a listing made on entering, so no write after that is missed; it re-opens the
    watch where it left off every few seconds, which is also when it notices it should stop.
    """

    def __init__(self, kubeconfig: str, run: str) -> None:
        self._selector = f"{RUN_LABEL}={run}"
        self._api = config.new_client_from_config(config_file=kubeconfig)
        self._custom = client.CustomObjectsApi(self._api)
        self._phases: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="sp-phase-watch", daemon=True)
        self._failure: BaseException | None = None
        self._version = ""

    def __enter__(self) -> PhaseWatch:
        listing = self._custom.list_cluster_custom_object(
            GROUP, VERSION, SP_PLURAL, label_selector=self._selector
        )
        self._version = listing["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)
        self._api.close()
        if self._failure is not None and kind is None:
            raise AssertionError(f"the phase watch failed: {self._failure!r}") from self._failure

    def phases(self) -> dict[str, list[str]]:
        """SP name -> the phase of each of its MODIFIED events so far."""
        if self._failure is not None:
            raise AssertionError(f"the phase watch failed: {self._failure!r}") from self._failure
        with self._lock:
            return {name: list(phases) for name, phases in self._phases.items()}

    def _follow(self) -> None:
        try:
            while not self._stopping.is_set():
                for event in watch.Watch().stream(
                    self._custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    SP_PLURAL,
                    label_selector=self._selector,
                    resource_version=self._version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=2,
                    _request_timeout=60,
                ):
                    self._see(event["type"], event["raw_object"])
        except BaseException as failure:  # shown by phases() and on leaving
            self._failure = failure

    def _see(self, kind: str, raw: dict[str, Any]) -> None:
        if kind == "ERROR":
            raise RuntimeError(f"watch error: {raw}")
        self._version = raw["metadata"]["resourceVersion"]
        if kind == "MODIFIED":
            phase = (raw.get("status") or {}).get("phase", "")
            with self._lock:
                self._phases.setdefault(raw["metadata"]["name"], []).append(phase)


# --- a spec's replicas, namespaces and burst -----------------------------------------------------


@dataclass
class ShardRun:
    """One spec's shard group: its namespaces, its replicas (started on demand) and its SPs."""

    stack: StackState
    custom: client.CustomObjectsApi
    prefix: str
    group: str
    lease_namespace: str
    namespaces: list[str]
    settings: dict[str, str]
    work_dir: Path
    processes: ExitStack
    lease_seconds: int = STEADY_LEASE_SECONDS
    replicas: dict[str, ControllerProcess] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)

    @property
    def run(self) -> str:
        return self.prefix.rstrip("-")

    def start(self, *names: str) -> list[ControllerProcess]:
        """Starts replicas `names` together, and returns once each one is ready. A replica that dies
        later fails the spec's next wait at once (`depending_on`), unless the spec killed it."""
        started = []
        for name in names:
            process = ControllerProcess(
                settings={
                    **self.settings,
                    "SHARD_LEASE_SECONDS": str(self.lease_seconds),
                    "REPLICA_NAME": name,
                },
                log_path=self.work_dir / f"{name}.log",
            )
            self.processes.callback(process.close)
            process.spawn()
            self.replicas[name] = process
            started.append(process)
        for process in started:
            process.wait_until_ready()
            self.processes.enter_context(depending_on(process.death_report))
        return started

    def burst(self, count: int) -> list[Signal]:
        """Creates `count` SPs, spread over the namespaces, each for a RemediationRequest of its own."""
        created = []
        for index in range(count):
            namespace = self.namespaces[(len(self.signals) + index) % len(self.namespaces)]
            manifest = signal_processing(namespace, rr_name=unique_rr_name(), target_name="api")
            manifest["metadata"]["labels"] = {RUN_LABEL: self.run}
            sp = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL, manifest)
            metadata = sp["metadata"]
            rr = manifest["spec"]["remediationRequestRef"]["name"]
            created.append(Signal(rr, namespace, metadata["name"], metadata["uid"]))
        self.signals.extend(created)
        return created

    def phases_now(self) -> dict[str, str]:
        """SP name -> its phase as the API server has it now ("" before the first write)."""
        return {
            sp["metadata"]["name"]: (sp.get("status") or {}).get("phase", "")
            for namespace in self.namespaces
            for sp in self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, SP_PLURAL)["items"]
        }

    def phase_watch(self) -> PhaseWatch:
        return PhaseWatch(self.stack.kubeconfig, self.run)


@pytest.fixture
def shard_run(stack: StackState, api_client: client.ApiClient, tmp_path: Path) -> Iterator[ShardRun]:
    """Three namespaces with a Pod `api` each, a namespace for the Leases and the replicas' settings;
    at the end every replica is stopped and every namespace's deletion requested."""
    core = client.CoreV1Api(api_client)
    prefix = f"{unique_name('shd')}-"
    lease_namespace = f"{prefix}leases"
    namespaces = [f"{prefix}{index}" for index in range(NAMESPACES)]
    group = unique_name("sg")
    settings = controller_settings(
        stack,
        namespaces=f"{prefix}*",
        policy_dir=copy_shipped_policies(tmp_path / "policies"),
        opa_url=None,
        SHARDING_ENABLED="true",
        SHARD_COUNT=str(SHARDS),
        SHARD_LEASE_NAMESPACE=lease_namespace,
        SHARD_GROUP=group,
    )
    created: list[str] = []
    with ExitStack() as processes:  # replicas stop first, then the namespaces' deletion is requested
        processes.callback(request_deletion, core.delete_namespace, created)
        for name in [lease_namespace, *namespaces]:
            labels = {"kubernaut.ai/environment": "production"}
            core.create_namespace({"metadata": {"name": name, "labels": labels}})
            created.append(name)
        for namespace in namespaces:
            core.create_namespaced_pod(namespace, pod("api"))
        yield ShardRun(
            stack=stack,
            custom=client.CustomObjectsApi(api_client),
            prefix=prefix,
            group=group,
            lease_namespace=lease_namespace,
            namespaces=namespaces,
            settings=settings,
            work_dir=tmp_path,
            processes=processes,
        )


# --- what the replicas report --------------------------------------------------------------------


def completed_by_shard(process: ControllerProcess) -> dict[int, float]:
    """`signalprocessing_shard_completed_total` of one replica, by shard (shards never counted left out)."""
    samples = scrape(process.metrics_url).samples("signalprocessing_shard_completed_total")
    return {int(sample.labels["shard"]): float(sample.value) for sample in samples}


def division(replicas: dict[str, ControllerProcess]) -> dict[str, tuple[float, float]]:
    """Replica -> (live members it sees, shards it owns), from its gauges."""
    scrapes = {name: scrape(process.metrics_url) for name, process in replicas.items()}
    return {
        name: (
            metrics.value("signalprocessing_shard_members"),
            metrics.value("signalprocessing_shards_owned"),
        )
        for name, metrics in scrapes.items()
    }


def wait_for_division(replicas: dict[str, ControllerProcess], *, timeout: float = TAKEOVER_TIMEOUT) -> None:
    """Waits until every replica in `replicas` sees exactly them live and owns its share of the shards."""
    expected = {
        name: (float(len(replicas)), float(len(shards_of(name, replicas, SHARDS)))) for name in replicas
    }
    eventually(
        lambda: division(replicas) == expected,
        timeout=timeout,
        interval=0.05,
        message=f"the replicas did not divide the shards as {expected}",
    )


# --- exactly once --------------------------------------------------------------------------------


def wait_until_completed(run: ShardRun, signals: list[Signal]) -> None:
    """Waits until every SP of `signals` is terminal; each must be Completed."""

    def all_terminal() -> dict[str, str]:
        phases = run.phases_now()
        unfinished = {f"{s.name} (shard {s.shard})": phases.get(s.name) for s in signals}
        unfinished = {name: phase for name, phase in unfinished.items() if phase not in TERMINAL}
        assert not unfinished, f"{len(unfinished)} SPs are not finished: {unfinished}"
        return phases

    phases = eventually(all_terminal, timeout=BURST_TIMEOUT, message="the burst did not finish")
    assert {s.name: phases[s.name] for s in signals if phases[s.name] != "Completed"} == {}


def assert_each_phase_written_once(phase_watch: PhaseWatch, signals: list[Signal]) -> None:
    """Once the watch has seen every SP completed: each SP's phases are exactly `SUCCESS_PHASES`."""

    def all_completed() -> dict[str, list[str]] | None:
        phases = phase_watch.phases()
        return phases if all("Completed" in phases.get(s.name, []) for s in signals) else None

    seen = eventually(all_completed, timeout=60, message="the phase watch did not see every SP completed")
    assert {s.name: seen[s.name] for s in signals if seen[s.name] != SUCCESS_PHASES} == {}


def exact_trails(run: ShardRun, signals: list[Signal], delivering: Iterable[ControllerProcess]) -> Trails:
    """Each SP's audit events, once every running replica has delivered all it has; each trail must
    have exactly the events of one success."""
    trails: Trails = {}

    def short() -> dict[str, dict[str, int]]:
        """rr (shard) -> the event counts of each trail still short of a success's."""
        for signal in signals:
            if not reaches(trails.get(signal, [])):
                trails[signal] = audit_events(run.stack.datastorage_url, signal.rr)
        return {
            f"{signal.rr} (shard {signal.shard})": count_types(events)
            for signal, events in trails.items()
            if not reaches(events)
        }

    def filled() -> bool:
        missing = short()
        assert not missing, f"{len(missing)} audit trails are short of {SUCCESS_TRAIL}: {missing}"
        return True

    eventually(filled, timeout=60, message="the audit trails of the burst did not fill")
    for process in delivering:
        wait_until_delivered(process.metrics_url, timeout=60)
    trails = {signal: audit_events(run.stack.datastorage_url, signal.rr) for signal in signals}
    counts = {signal.rr: count_types(events) for signal, events in trails.items()}
    assert {rr: types for rr, types in counts.items() if types != SUCCESS_TRAIL} == {}
    return trails


def reaches(events: list[dict[str, Any]]) -> bool:
    """Whether a trail has at least the events of one success."""
    counts = count_types(events)
    return all(counts.get(kind, 0) >= n for kind, n in SUCCESS_TRAIL.items())


def misattributed(trails: Trails, allowed: Callable[[Signal], set[str]]) -> dict[str, list[Any]]:
    """rr -> (event type, replica, shard) of each event that names another shard than the SP's, or a
    replica not in `allowed(signal)`."""
    wrong: dict[str, list[Any]] = {}
    for signal, events in trails.items():
        bad = [
            (event["event_type"], event["event_data"].get("replica"), event["event_data"].get("shard"))
            for event in events
            if event["event_data"].get("shard") != signal.shard
            or event["event_data"].get("replica") not in allowed(signal)
        ]
        if bad:
            wrong[signal.rr] = [f"shard {signal.shard}, allowed {sorted(allowed(signal))}", *bad]
    return wrong


def assert_events_name_replica_and_shard(
    core: client.CoreV1Api, run: ShardRun, owner: Callable[[Signal], str]
) -> None:
    """Each SP's PhaseTransition and SignalProcessed Events end with " (replica R, shard N)"."""
    by_uid = {signal.uid: signal for signal in run.signals}

    def posted() -> dict[str, list[tuple[str, str]]] | None:
        seen: dict[str, list[tuple[str, str]]] = {uid: [] for uid in by_uid}
        for namespace in run.namespaces:
            for event in core.list_namespaced_event(namespace).items:
                if event.involved_object.uid in seen and event.reason in PIPELINE_REASONS:
                    seen[event.involved_object.uid].append((event.reason, event.message))
        every_one = all(len(events) >= len(SUCCESS_TRANSITIONS) + 1 for events in seen.values())
        return seen if every_one else None

    seen = eventually(posted, timeout=60, message="the Events of the burst were not all posted")
    wrong = {}
    for uid, events in seen.items():
        signal = by_uid[uid]
        by = f" (replica {owner(signal)}, shard {signal.shard})"
        expected = [("PhaseTransition", transition + by) for transition in SUCCESS_TRANSITIONS]
        processed = [message for reason, message in events if reason == "SignalProcessed"]
        transitions = sorted(event for event in events if event[0] == "PhaseTransition")
        if transitions != sorted(expected) or len(processed) != 1 or not processed[0].endswith(by):
            wrong[signal.name] = events
    assert wrong == {}


def leases(run: ShardRun) -> set[str]:
    """The names of the Leases in the spec's Lease namespace."""
    coordination = client.CoordinationV1Api(run.custom.api_client)
    return {lease.metadata.name for lease in coordination.list_namespaced_lease(run.lease_namespace).items}


# --- the specs -----------------------------------------------------------------------------------


def test_three_replicas_share_a_burst_each_sp_processed_once_by_the_owner_of_its_shard(
    shard_run: ShardRun, api_client: client.ApiClient
) -> None:
    shard_run.start("r0", "r1", "r2")
    replicas = shard_run.replicas
    wait_for_division(replicas)
    owner = owners(replicas)

    with shard_run.phase_watch() as phases:
        signals = shard_run.burst(BURST)
        # r1 owns 2 of the 16 shards: about one burst in 400 leaves it nothing, and then one more SP at
        # a time is created until it has some, so that every replica's share is seen.
        while {owner[signal.shard] for signal in signals} != set(replicas):
            signals += shard_run.burst(1)
        wait_until_completed(shard_run, signals)
        assert_each_phase_written_once(phases, signals)
    trails = exact_trails(shard_run, signals, replicas.values())

    assert misattributed(trails, lambda signal: {owner[signal.shard]}) == {}
    by_shard = Counter(signal.shard for signal in signals)
    assert {name: completed_by_shard(process) for name, process in replicas.items()} == {
        name: {shard: float(n) for shard, n in by_shard.items() if owner[shard] == name} for name in replicas
    }
    totals = {name: sum(completed_by_shard(process).values()) for name, process in replicas.items()}
    assert sum(totals.values()) == len(signals) and all(totals.values()), totals
    assert sum(owned for _, owned in division(replicas).values()) == SHARDS
    assert_events_name_replica_and_shard(
        client.CoreV1Api(api_client), shard_run, lambda signal: owner[signal.shard]
    )


def test_a_replica_killed_mid_burst_has_its_shards_taken_over_and_each_sp_is_processed_once(
    shard_run: ShardRun,
) -> None:
    shard_run.lease_seconds = TAKEOVER_LEASE_SECONDS
    shard_run.start("r0", "r1", "r2")
    replicas = shard_run.replicas
    wait_for_division(replicas)
    # r0 owns the most shards (8 of 16 among r0, r1, r2), so the kill leaves the most work behind.
    before, after = owners(replicas), owners({"r1", "r2"})
    victim = replicas["r0"]
    survivors = {name: replicas[name] for name in ("r1", "r2")}

    with shard_run.phase_watch() as phases:
        first = shard_run.burst(BURST // 2)
        # Killed as soon as it has completed an SP: with AUDIT_FLUSH_INTERVAL at 0.2 s the events of
        # that write (and of its other SPs' latest steps) are then most likely still in its buffer.
        eventually(
            lambda: sum(completed_by_shard(victim).values()) > 0,
            timeout=BURST_TIMEOUT,
            interval=0.02,
            message="the replica to be killed completed nothing",
        )
        victim.kill()
        killed_at = time.monotonic()
        # No survivor touches the victim's SPs before the take-over: this is what it left behind.
        now = shard_run.phases_now()
        its = [s for s in first if before[s.shard] == "r0"]
        rest = shard_run.burst(BURST - len(first))
        wait_for_division(survivors)
        takeover = time.monotonic() - killed_at
        print(
            f"\ntake-over: the survivors owned all {SHARDS} shards {takeover:.2f}s after r0 was killed"
            f" (lease {TAKEOVER_LEASE_SECONDS}s); of its {len(its)} SPs r0 had completed"
            f" {sum(now[s.name] == 'Completed' for s in its)}"
        )
        signals = first + rest
        wait_until_completed(shard_run, signals)
        assert_each_phase_written_once(phases, signals)
    trails = exact_trails(shard_run, signals, survivors.values())

    def allowed(signal: Signal) -> set[str]:
        if before[signal.shard] != "r0":
            return {before[signal.shard]}  # survivors keep their shards: nothing moved between them
        return {"r0", after[signal.shard]} if signal in first else {after[signal.shard]}

    assert misattributed(trails, allowed) == {}
    # A survivor counts every SP of the shards it always had, none of the other's, and of the shards
    # it took over at least those created after the kill (r0 may have completed the others).
    in_shard, after_kill = Counter(s.shard for s in signals), Counter(s.shard for s in rest)

    def expected_count(replica: str, shard: int) -> range:
        if after[shard] != replica:
            return range(0, 1)
        if before[shard] == replica:
            return range(in_shard[shard], in_shard[shard] + 1)
        return range(after_kill[shard], in_shard[shard] + 1)

    counted = {name: completed_by_shard(process) for name, process in survivors.items()}
    assert {
        (name, shard): (counted[name].get(shard, 0), expected_count(name, shard))
        for name in survivors
        for shard in range(SHARDS)
        if counted[name].get(shard, 0) not in expected_count(name, shard)
    } == {}
    eventually(
        lambda: leases(shard_run) == {f"{shard_run.group}-r1", f"{shard_run.group}-r2"},
        timeout=TAKEOVER_TIMEOUT,
        message="the killed replica's Lease was not deleted after two lease durations",
    )


def test_a_replica_added_mid_burst_takes_shards_from_the_others_without_processing_any_sp_twice(
    shard_run: ShardRun,
) -> None:
    shard_run.start("r0", "r1")
    wait_for_division(shard_run.replicas)
    before = owners({"r0", "r1"})
    after = owners({"r0", "r1", "r2"})

    with shard_run.phase_watch() as phases:
        first = shard_run.burst(BURST // 2)
        shard_run.start("r2")
        rest = shard_run.burst(BURST - len(first))
        wait_for_division(shard_run.replicas)
        signals = first + rest
        wait_until_completed(shard_run, signals)
        assert_each_phase_written_once(phases, signals)
    replicas = shard_run.replicas
    trails = exact_trails(shard_run, signals, replicas.values())

    # A shard moves only to the new replica; until the others see it, they may still work on it.
    assert misattributed(trails, lambda signal: {before[signal.shard], after[signal.shard]}) == {}
    owned = {name: owned for name, (_, owned) in division(replicas).items()}
    assert owned["r2"] > 0 and sum(owned.values()) == SHARDS, owned
    # Each SP counted once, by a replica that owned its shard before or after r2 joined.
    counted = {name: completed_by_shard(process) for name, process in replicas.items()}
    assert sum(sum(shards.values()) for shards in counted.values()) == BURST, counted
    assert {
        (name, shard): n
        for name, shards in counted.items()
        for shard, n in shards.items()
        if name not in (before[shard], after[shard])
    } == {}
    in_shard = Counter(signal.shard for signal in signals)
    per_shard = {shard: sum(shards.get(shard, 0) for shards in counted.values()) for shard in in_shard}
    assert per_shard == dict(in_shard)
