"""`python -m bench.sharded`: a burst on 1, 2 and 3 sharded replicas, and the take-over after a kill.

Starts a stack of its own (`python -m devstack.supervisor`, as `bench.load` does) and, for each
replica count N in `--replicas`, N controllers with sharding on (`SHARDING_ENABLED`), a shard
group of their own and `--shards` shards, watching namespaces no other round uses. Once the group
has settled (every replica sees N members and their `signalprocessing_shards_owned` sum to
`--shards`) and a few SPs warmed it up, a burst of `--count` SPs is created (`--concurrency`
threads). It prints, per round:

* throughput (SPs per second of wall time, create to `Completed`) and p50/p99 latency;
* each replica's share (its `signalprocessing_shard_completed_total` delta over the count), its
  CPU seconds and its CPU per SP it completed; and the CPU per SP of all controllers together and
  of the API server; CPU is counted from the burst's first create until every replica has posted
  its Events and delivered its audit events.

A last round starts 3 replicas, SIGKILLs one once a third of a burst is `Completed`, and measures
the time from the kill until the survivors own every shard again (their gauges polled every
50 ms), and until the burst is done. Every SP of every round must end `Completed`.

The projection at the end answers what a 2-core machine cannot: what N replicas sustain when
each has a core of its own. A replica pays for the SPs it processes and, since every replica
watches every SP, a little for each SP it only sees; both costs are fitted to the rounds'
readings, and the API server's CPU per SP bounds the result.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kubernetes import client

from bench.load import (
    ENGINES,
    BenchStack,
    CompletionWatch,
    Result,
    controller_burst,
    controller_metric,
    cpu_by_command,
    cpu_seconds,
    key_of,
    line,
    make_namespaces,
    manifests,
    open_bench_stack,
    rss_megabytes,
    wait_until_idle,
)
from devstack.controller_process import ControllerProcess

POLL_SECONDS: Final = 0.05  # how often the shard gauges are read while waiting for a group to settle
SETTLE_TIMEOUT: Final = 60.0  # a few lease durations: joining takes one renewal of every replica
WARM_UP: Final = 12  # SPs before each burst: connections, caches and policies warm in every replica
TAKEOVER_REPLICAS: Final = 3
KILL_AT: Final = 1 / 3  # of the burst Completed when one replica is killed
PROJECTED: Final = (1, 2, 3, 4, 8, 16)  # replica counts the projection is printed for

OWNED: Final = "signalprocessing_shards_owned"
MEMBERS: Final = "signalprocessing_shard_members"
COMPLETED: Final = "signalprocessing_shard_completed_total"


@dataclass(frozen=True)
class Group:
    """One round's shard group: where its Leases live and what its replicas watch."""

    name: str
    lease_namespace: str
    watch: str
    shards: int
    lease_seconds: float


def replica_settings(bench: BenchStack, group: Group, replica: str) -> dict[str, str]:
    return {
        **bench.settings,
        "WATCH_NAMESPACES": group.watch,
        "SHARDING_ENABLED": "true",
        "SHARD_COUNT": str(group.shards),
        "SHARD_LEASE_SECONDS": str(group.lease_seconds),
        "SHARD_LEASE_NAMESPACE": group.lease_namespace,
        "SHARD_GROUP": group.name,
        "REPLICA_NAME": replica,
    }


def start_replicas(
    stack: ExitStack, bench: BenchStack, group: Group, count: int, workdir: Path
) -> list[ControllerProcess]:
    """`count` controllers of `group`, named r0, r1, ...; they stop (SIGTERM) when `stack` closes."""
    return [
        stack.enter_context(
            ControllerProcess(
                settings=replica_settings(bench, group, f"r{index}"),
                log_path=workdir / f"{group.name}-r{index}.log",
            )
        )
        for index in range(count)
    ]


def reading(controller: ControllerProcess, name: str) -> float:
    """A metric of a running replica; a replica that died is an error naming its log."""
    report = controller.death_report()
    if report is not None:
        raise RuntimeError(report)
    return controller_metric(controller.metrics_url, name)


def owned_shards(controllers: list[ControllerProcess]) -> list[int]:
    return [int(reading(c, OWNED)) for c in controllers]


def is_settled(controllers: list[ControllerProcess], shards: int) -> bool:
    """Every replica sees all the others and no other, and together they own each shard once."""
    members = [reading(c, MEMBERS) for c in controllers]
    return all(m == len(controllers) for m in members) and sum(owned_shards(controllers)) == shards


def seconds_until(condition: Callable[[], bool], since: float, *, what: str) -> float:
    """Seconds from `since` (a monotonic time) until `condition` holds, polled every 50 ms."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - since


def wait_settled(controllers: list[ControllerProcess], group: Group) -> float:
    return seconds_until(
        lambda: is_settled(controllers, group.shards),
        time.monotonic(),
        what=f"shard group {group.name} to settle on {len(controllers)} replicas",
    )


def wait_all_idle(controllers: list[ControllerProcess]) -> None:
    """Each replica has posted the Events and delivered the audit events of every SP it completed."""
    for controller in controllers:
        wait_until_idle(controller.metrics_url, sps=int(reading(controller, COMPLETED)))


# --- a round ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    replicas: int
    count: int
    burst: Result
    completed: list[float]  # SPs each replica took to a terminal phase during the burst
    cpu: list[float]  # each replica's CPU seconds, from the burst's start until it was idle
    others: dict[str, float]  # CPU seconds of the stack's processes over the same time, by command

    def cpu_ms_per_sp(self, seconds: float) -> float:
        return 1000 * seconds / self.count

    @property
    def apiserver(self) -> float:
        return self.others.get("kube-apiserver", 0.0)

    @property
    def core_each(self) -> float:
        """SP/s if each replica had a core: the busiest replica reaches 100% first."""
        return self.count / max(self.cpu)


def cpu_of_others(roles: dict[int, str]) -> dict[str, float]:
    usage = cpu_by_command(os.getpid(), roles)
    return {command: seconds for command, seconds in usage.items() if command not in roles.values()}


def open_round(
    stack: ExitStack,
    bench: BenchStack,
    watcher: CompletionWatch,
    group: Group,
    *,
    replicas: int,
    namespaces: int,
    workdir: Path,
) -> tuple[list[ControllerProcess], list[str]]:
    """Namespaces for the round, its replicas started and settled, and a warm-up burst."""
    api_client = bench.api_client
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    prefix = group.watch.rstrip("*")
    names = make_namespaces(core, prefix, namespaces)
    began = time.monotonic()
    controllers = start_replicas(stack, bench, group, replicas, workdir)
    settled = wait_settled(controllers, group)
    controller_burst(custom, watcher, manifests(names, WARM_UP), WARM_UP)
    wait_all_idle(controllers)
    print(
        f"{replicas} replica(s) up in {time.monotonic() - began - settled:.1f}s, group settled"
        f" {settled:.1f}s later (shards {'/'.join(map(str, owned_shards(controllers)))}), warmed up",
        flush=True,
    )
    return controllers, names


def sharded_round(
    bench: BenchStack,
    watcher: CompletionWatch,
    group: Group,
    *,
    replicas: int,
    arguments: argparse.Namespace,
    workdir: Path,
) -> Round:
    custom = client.CustomObjectsApi(bench.api_client)
    with ExitStack() as stack:
        controllers, names = open_round(
            stack, bench, watcher, group, replicas=replicas, namespaces=arguments.namespaces, workdir=workdir
        )
        roles = {c.pid or 0: f"r{i}" for i, c in enumerate(controllers)} | {os.getpid(): "bench client"}
        batch = manifests(names, arguments.count)
        others_before = cpu_of_others(roles)
        cpu_before = [cpu_seconds(c.pid or 0) for c in controllers]
        done_before = [reading(c, COMPLETED) for c in controllers]
        burst = controller_burst(custom, watcher, batch, arguments.concurrency)
        began_draining = time.monotonic()
        wait_all_idle(controllers)
        drained = time.monotonic() - began_draining
        cpu = [cpu_seconds(c.pid or 0) - before for c, before in zip(controllers, cpu_before, strict=True)]
        done = [reading(c, COMPLETED) - before for c, before in zip(controllers, done_before, strict=True)]
        others_after = cpu_of_others(roles)
        rss = [rss_megabytes(c.pid or 0) for c in controllers]
    others = {name: seconds - others_before.get(name, 0.0) for name, seconds in others_after.items()}
    result = Round(replicas, arguments.count, burst, done, cpu, others)
    print(line("burst (create->Completed)", burst))
    print(f"  {'replica':<8}{'share':>7}{'CPU s':>8}{'ms/SP it did':>14}{'RSS MiB':>9}")
    for index, (completed, seconds, mib) in enumerate(zip(done, cpu, rss, strict=True)):
        per_sp = 1000 * seconds / completed if completed else float("nan")
        share = 100 * completed / arguments.count
        print(f"  r{index:<7}{share:>6.1f}%{seconds:>8.1f}{per_sp:>14.2f}{mib:>9.0f}")
    if sum(done) != arguments.count:
        print(f"  !! the replicas completed {sum(done):.0f} SPs for a burst of {arguments.count}")
    print(
        f"  per SP: controllers {result.cpu_ms_per_sp(sum(cpu)):.2f} ms CPU,"
        f" kube-apiserver {result.cpu_ms_per_sp(result.apiserver):.2f} ms,"
        f" etcd {result.cpu_ms_per_sp(others.get('etcd', 0.0)):.2f} ms;"
        f" Events and audit drained {drained:.1f}s after the burst",
        flush=True,
    )
    return result


# --- the take-over ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Takeover:
    burst: Result
    completed_at_kill: int
    victim_shards: int
    taken_over: float  # seconds from the kill until the survivors owned every shard
    finished: float  # seconds from the kill until the last SP of the burst was Completed


def takeover_round(
    bench: BenchStack, watcher: CompletionWatch, group: Group, *, arguments: argparse.Namespace, workdir: Path
) -> Takeover:
    custom = client.CustomObjectsApi(bench.api_client)
    with ExitStack() as stack:
        controllers, names = open_round(
            stack,
            bench,
            watcher,
            group,
            replicas=TAKEOVER_REPLICAS,
            namespaces=arguments.namespaces,
            workdir=workdir,
        )
        batch = manifests(names, arguments.count)
        keys = [key_of(manifest) for manifest in batch]
        victim, survivors = controllers[1], [controllers[0], *controllers[2:]]
        with ThreadPoolExecutor(1, thread_name_prefix="burst") as runner:
            running = runner.submit(controller_burst, custom, watcher, batch, arguments.concurrency)

            def completed() -> int:
                if running.done():
                    running.result()  # a burst that failed before the kill says why
                return sum(key in watcher.completed for key in keys)

            seconds_until(
                lambda: completed() >= KILL_AT * len(keys), time.monotonic(), what="a third Completed"
            )
            victim_shards = int(reading(victim, OWNED))
            killed = time.monotonic()
            victim.kill()
            at_kill = completed()
            print(
                f"  killed r1 (SIGKILL, {victim_shards} shards) with {at_kill} of {len(keys)} Completed",
                flush=True,
            )
            taken_over = seconds_until(
                lambda: is_settled(survivors, group.shards), killed, what="the survivors to own every shard"
            )
            burst = running.result()
    finished = max(watcher.completed[key] for key in keys) - killed
    result = Takeover(burst, at_kill, victim_shards, taken_over, finished)
    print(line("burst with the kill", burst))
    print(
        f"  survivors own all {group.shards} shards {taken_over:.2f}s after the kill"
        f" (lease {group.lease_seconds:g}s); burst done {finished:.1f}s after it, every SP Completed",
        flush=True,
    )
    return result


# --- the projection -----------------------------------------------------------------------------


def fit_costs(rounds: list[Round]) -> tuple[float, float] | None:
    """CPU seconds a replica spends per SP it processes and per SP it only sees (least squares over
    every replica of every round: cpu = own * a + seen * b); None when no round had two replicas."""
    samples = [(cpu, own, r.count) for r in rounds for cpu, own in zip(r.cpu, r.completed, strict=True)]
    soo = sum(own * own for _, own, _ in samples)
    sos = sum(own * seen for _, own, seen in samples)
    sss = sum(seen * seen for _, _, seen in samples)
    sco = sum(cpu * own for cpu, own, _ in samples)
    scs = sum(cpu * seen for cpu, _, seen in samples)
    determinant = soo * sss - sos * sos
    if determinant <= 1e-9 * soo * sss:
        return None
    own_cost = (sco * sss - scs * sos) / determinant
    seen_cost = (soo * scs - sos * sco) / determinant
    if seen_cost < 0:  # noise: seeing an SP cannot earn CPU back
        return sco / soo, 0.0
    return own_cost, seen_cost


def print_projection(rounds: list[Round]) -> None:
    largest = max(rounds, key=lambda r: r.replicas)
    apiserver = largest.apiserver / largest.count
    fitted = fit_costs(rounds)
    print("\nprojection: each replica on a core of its own, the API server not the bottleneck")
    if fitted is None:
        own_cost, seen_cost = sum(largest.cpu) / largest.count, 0.0
        print(f"  a replica spends {1000 * own_cost:.2f} ms CPU per SP (one round: no watch share fitted)")
    else:
        own_cost, seen_cost = fitted
        print(
            f"  a replica spends {1000 * own_cost:.2f} ms CPU per SP it processes and"
            f" {1000 * seen_cost:.2f} ms per SP it only watches (fit over the rounds' replicas)"
        )
    projected = ", ".join(f"{n}: {n / (own_cost + n * seen_cost):.0f}" for n in PROJECTED)
    print(f"  N replicas sustain N / (processed + N x watched) SP/s: {projected}")
    if seen_cost > 0:
        print(f"  no number of replicas passes 1 / watched = {1 / seen_cost:.0f} SP/s")
    print(
        f"  bounded by the API server: {1000 * apiserver:.2f} ms CPU per SP with {largest.replicas}"
        f" replicas, so {1 / apiserver:.0f} SP/s per API server core"
    )


def print_summary(rounds: list[Round], takeover: Takeover | None, cores: int) -> None:
    print(f"\nsummary ({cores} cores; CPU from each burst's start until every replica was idle)")
    print(
        f"  {'replicas':>8}{'SP/s':>8}{'p50 ms':>8}{'p99 ms':>8}  {'shares %':<16}"
        f"{'ctrl ms/SP':>11}{'busiest ms/own SP':>18}{'apiserver ms/SP':>16}{'core each SP/s':>15}"
    )
    for r in rounds:
        shares = "/".join(f"{100 * done / r.count:.0f}" for done in r.completed)
        busiest = max(
            1000 * cpu / done if done else float("nan") for cpu, done in zip(r.cpu, r.completed, strict=True)
        )
        print(
            f"  {r.replicas:>8}{r.burst.rate:>8.1f}{1000 * r.burst.percentile(0.5):>8.0f}"
            f"{1000 * r.burst.percentile(0.99):>8.0f}  {shares:<16}{r.cpu_ms_per_sp(sum(r.cpu)):>11.2f}"
            f"{busiest:>18.2f}{r.cpu_ms_per_sp(r.apiserver):>16.2f}{r.core_each:>15.0f}"
        )
    if takeover is not None:
        print(
            f"  kill of 1 of {TAKEOVER_REPLICAS}: {takeover.burst.rate:.1f} SP/s, p99"
            f" {1000 * takeover.burst.percentile(0.99):.0f} ms; shards taken over in"
            f" {takeover.taken_over:.2f}s, burst done {takeover.finished:.1f}s after the kill"
        )


# --- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sharded", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1500, help="SignalProcessings in each burst")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces a burst is spread over")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads creating SPs")
    parser.add_argument("--engine", choices=ENGINES, default="embedded", help="policy engine")
    parser.add_argument("--replicas", default="1,2,3", help="replica counts, one round each")
    parser.add_argument("--lease-seconds", type=float, default=5.0, help="shard lease duration")
    parser.add_argument("--shards", type=int, default=256, help="shards of each group")
    arguments = parser.parse_args(argv)
    counts = [int(part) for part in arguments.replicas.split(",") if part.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="bench-sharded-"))
    run = secrets.token_hex(3)
    began = time.monotonic()
    print(f"logs in {workdir} (kept if the run fails)", flush=True)
    try:
        with ExitStack() as stack:
            bench = open_bench_stack(
                stack,
                workdir,
                watch=f"sharded-{run}-*",  # each round's replicas watch only the namespaces of their own
                connections=arguments.concurrency + 8,
                engine=arguments.engine,
            )
            lease_namespace = f"leases-{run}"
            # One watch for the whole run: each round's namespaces start with this prefix.
            watcher = CompletionWatch(client.CustomObjectsApi(bench.api_client), f"sharded-{run}-")
            stack.callback(watcher.stop)
            client.CoreV1Api(bench.api_client).create_namespace({"metadata": {"name": lease_namespace}})
            print(
                f"stack ({arguments.engine} policy engine) up in {time.monotonic() - began:.1f}s", flush=True
            )

            def group(name: str) -> Group:
                return Group(name, lease_namespace, f"{name}-*", arguments.shards, arguments.lease_seconds)

            rounds: list[Round] = []
            for replicas in counts:
                print(f"\n{replicas} replica(s), burst of {arguments.count}", flush=True)
                rounds.append(
                    sharded_round(
                        bench,
                        watcher,
                        group(f"sharded-{run}-n{replicas}"),
                        replicas=replicas,
                        arguments=arguments,
                        workdir=workdir,
                    )
                )
            print(f"\ntake-over: {TAKEOVER_REPLICAS} replicas, one killed during a burst", flush=True)
            takeover = takeover_round(
                bench, watcher, group(f"sharded-{run}-kill"), arguments=arguments, workdir=workdir
            )
    except BaseException:
        print(f"\nthe run failed; logs kept in {workdir}", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    if rounds:
        print_summary(rounds, takeover, os.cpu_count() or 0)
        print_projection(rounds)
    print(f"\nthe whole run took {time.monotonic() - began:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
