"""`python -m bench.restart`: what a controller restart costs with many finished SignalProcessings.

Starts a stack of its own (`python -m devstack.supervisor`) and a controller watching
`restart-*` namespaces (embedded policy engine, or an OPA of its own with `--engine opa`), runs
`--count` SignalProcessings to Completed (their trails delivered to DataStorage), stops the
controller, and starts a replacement with the same settings. It prints:

* the baseline, measured in the same run: a controller started on the same stack watching
  namespaces with no SignalProcessing, from its start to `/healthz` and to `/readyz` 200;
* the replacement: from its start to `/healthz`, to `/readyz` 200, and until it has met every
  SignalProcessing again and settled its trail (`audit_events_already_stored_total` plus
  `audit_events_delivered_total` reach the events the first controller delivered);
* the audit events the replacement sent (DataStorage had them all, so the answer should be 0)
  against those it found stored, its CPU time for the catch-up and its RSS after it.
"""

from __future__ import annotations

import argparse
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from kubernetes import client

from bench.load import (
    COMPLETION_TIMEOUT,
    ENGINES,
    CompletionWatch,
    controller_metric,
    cpu_seconds,
    create,
    key_of,
    make_namespaces,
    manifests,
    open_bench_stack,
    rss_megabytes,
    wait_until_idle,
)
from controller.config import Settings
from devstack.controller_process import ControllerProcess
from processes.child import http_ok

CATCH_UP_TIMEOUT: Final = 600.0
POLL_SECONDS: Final = 0.05


def seconds_until(condition: Callable[[], bool], since: float, *, what: str) -> float:
    """Seconds from `since` (a monotonic time) until `condition` holds, polled."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - since


def settled(controller: ControllerProcess) -> float:
    """Trail events the controller found stored or delivered."""
    return controller_metric(controller.metrics_url, "audit_events_already_stored_total") + controller_metric(
        controller.metrics_url, "audit_events_delivered_total"
    )


def start_timed(controller: ControllerProcess) -> tuple[float, float, float]:
    """Starts the controller; returns when it started, and the seconds to /healthz and to /readyz 200."""
    began = time.monotonic()
    controller.start()
    healthy = time.monotonic() - began
    ready = seconds_until(lambda: http_ok(controller.readiness_url), began, what="/readyz 200")
    return began, healthy, ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=5000, help="SignalProcessings finished before the restart"
    )
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces they are spread over")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads creating SPs")
    parser.add_argument("--engine", choices=ENGINES, default="embedded", help="policy engine")
    arguments = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    run = secrets.token_hex(3)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        bench = open_bench_stack(
            stack,
            workdir,
            watch=f"restart-{run}-*",
            connections=arguments.concurrency + 8,
            engine=arguments.engine,
        )
        settings = bench.settings
        first = stack.enter_context(ControllerProcess(settings=settings, log_path=workdir / "first.log"))
        core, custom = client.CoreV1Api(bench.api_client), client.CustomObjectsApi(bench.api_client)
        watched = make_namespaces(core, f"restart-{run}-", arguments.namespaces)
        watcher = CompletionWatch(custom, f"restart-{run}-")
        stack.callback(watcher.stop)

        began = time.monotonic()
        batch = manifests(watched, arguments.count)
        with ThreadPoolExecutor(arguments.concurrency) as pool:
            list(pool.map(lambda manifest: create(custom, manifest), batch))
        watcher.wait_for([key_of(manifest) for manifest in batch], max(COMPLETION_TIMEOUT, arguments.count))
        wait_until_idle(first.metrics_url, sps=arguments.count, timeout=CATCH_UP_TIMEOUT)
        trail_events = controller_metric(first.metrics_url, "audit_events_delivered_total")
        print(
            f"{arguments.count} SignalProcessings Completed and {trail_events:.0f} audit events delivered"
            f" in {time.monotonic() - began:.0f}s (logs in {workdir})",
            flush=True,
        )
        first.stop()

        empty = {**settings, "WATCH_NAMESPACES": f"nothing-{run}-*"}
        baseline = ControllerProcess(settings=empty, log_path=workdir / "baseline.log")
        try:
            _, baseline_healthy, baseline_ready = start_timed(baseline)
        finally:
            baseline.stop()

        replacement = ControllerProcess(settings=settings, log_path=workdir / "replacement.log")
        stack.callback(replacement.stop)
        started, healthy, ready = start_timed(replacement)
        caught_up = seconds_until(
            lambda: settled(replacement) >= trail_events, started, what="every trail settled again"
        )
        cpu = cpu_seconds(replacement.pid or 0)
        sent = controller_metric(replacement.metrics_url, "audit_events_delivered_total")
        found = controller_metric(replacement.metrics_url, "audit_events_already_stored_total")
        print(
            f"\nrestart with {arguments.count} Completed SignalProcessings ({trail_events:.0f} trail events)"
        )
        print(f"  {'':32}{'/healthz':>10}{'/readyz 200':>14}{'caught up':>12}")
        print(
            f"  {'baseline (no SignalProcessing)':32}"
            f"{baseline_healthy:>9.1f}s{baseline_ready:>13.1f}s{'-':>12}"
        )
        print(f"  {'replacement':32}{healthy:>9.1f}s{ready:>13.1f}s{caught_up:>11.1f}s")
        print(
            f"  audit events sent again: {sent:.0f}; found already stored: {found:.0f}"
            f" (about {math.ceil(found / Settings.audit_batch_size)} questions to DataStorage)"
        )
        print(
            f"  replacement CPU from its start to caught up: {cpu:.1f}s;"
            f" RSS after it {rss_megabytes(replacement.pid or 0):.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
