"""Starts the stack's servers, publishes their state file, and stops them all on request.

Servers start concurrently (the control plane and PostgreSQL each take a few
seconds). Every server process dies with the supervisor (PR_SET_PDEATHSIG),
and the supervisor itself stops when the process it watches is gone, so a
killed test run cannot leave servers behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.state import StackState
from envtest import ControlPlane
from processes.child import ChildProcess

COMPONENTS = ("controlplane", "datastorage", "node")
# What a stack starts unless told otherwise; the node is asked for by name (it needs built images).
DEFAULT_COMPONENTS = ("controlplane", "datastorage")
_WATCH_INTERVAL_SECONDS = 0.5


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _timed(times: dict[str, float], name: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    times[name] = round(time.monotonic() - began, 2)


def _start_control_plane(
    stack: ExitStack, workdir: Path, crds: Path, times: dict[str, float], servers: list[ChildProcess]
) -> str:
    with _timed(times, "controlplane"):
        plane = stack.enter_context(ControlPlane(crd_dirs=[crds], kubeconfig=workdir / "kubeconfig"))
    servers.extend(plane.servers)
    return str(plane.kubeconfig)


def _start_node(
    stack: ExitStack, workdir: Path, crds: Path, times: dict[str, float], servers: list[ChildProcess]
) -> dict[str, Any]:
    """A one-node cluster of its own (Pods run for real), with a PostgreSQL and a Redis its Pods reach."""
    from envtest import images
    from localservers import PostgresServer, RedisServer

    with _timed(times, "node images"):
        built = images.project_images()
    with _timed(times, "node"):
        plane = stack.enter_context(
            ControlPlane(crd_dirs=[crds], kubeconfig=workdir / "node-kubeconfig", node=built.node_images())
        )
    host = plane.node_host_address
    with _timed(times, "node postgres+redis"):
        redis = stack.enter_context(RedisServer(base_dir=workdir / "node-redis", extra_addresses=[host]))
        postgres = stack.enter_context(
            PostgresServer(base_dir=workdir / "node-postgres", extra_addresses=[host])
        )
    servers.extend(plane.servers)
    servers.extend([redis.child, postgres.child])
    return {
        "node_kubeconfig": str(plane.kubeconfig),
        "node_host_address": host,
        "node_database_url": postgres.url_at(host),
        "node_redis_url": redis.url_at(host),
        "node_images": {"application": built.application.reference, "opa": built.opa.reference},
    }


def _start_datastorage(
    stack: ExitStack, workdir: Path, times: dict[str, float], servers: list[ChildProcess]
) -> dict[str, str]:
    from devstack.datastorage_process import DataStorageProcess
    from localservers import PostgresServer, RedisServer

    # Started from this (long-lived) thread: see the note on PR_SET_PDEATHSIG in run_stack.
    with _timed(times, "postgres+redis"):
        redis = stack.enter_context(RedisServer(base_dir=workdir / "redis"))
        postgres = stack.enter_context(PostgresServer(base_dir=workdir / "postgres"))
    with _timed(times, "datastorage"):
        service = stack.enter_context(
            DataStorageProcess(
                database_url=postgres.url, redis_url=redis.url, log_path=workdir / "datastorage.log"
            )
        )
    servers.extend([redis.child, postgres.child, service])
    return {"database_url": postgres.url, "redis_url": redis.url, "datastorage_url": service.url}


def run_stack(
    components: tuple[str, ...],
    state_path: Path,
    crds: Path,
    should_stop: Callable[[], bool],
) -> None:
    """Starts `components`, writes the state file, and blocks until `should_stop()`."""
    workdir = Path(tempfile.mkdtemp(prefix="devstack-"))
    times: dict[str, float] = {}
    servers: list[ChildProcess] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        # PR_SET_PDEATHSIG fires when the *thread* that forked a server exits, so
        # the threads that start servers must outlive them: the pool is entered
        # first and therefore shut down last.
        pool = stack.enter_context(ThreadPoolExecutor(3))
        plane = (
            pool.submit(_start_control_plane, stack, workdir, crds, times, servers)
            if "controlplane" in components
            else None
        )
        storage = (
            pool.submit(_start_datastorage, stack, workdir, times, servers)
            if "datastorage" in components
            else None
        )
        node_servers: list[ChildProcess] = []
        node = (
            pool.submit(_start_node, stack, workdir, crds, times, node_servers)
            if "node" in components
            else None
        )
        kubeconfig = plane.result() if plane else ""
        addresses: dict[str, Any] = storage.result() if storage else {}
        addresses.update(node.result() if node else {})
        # The node's cluster has servers of the same names as the stack's: its names say "node".
        named = {server.name: server for server in servers}
        named.update({f"node {server.name}": server for server in node_servers})
        StackState(
            supervisor_pid=os.getpid(),
            kubeconfig=kubeconfig,
            logs=str(workdir),
            start_seconds=times,
            pids={name: server.pid for name, server in named.items() if server.pid is not None},
            log_files={name: str(server.log_path) for name, server in named.items()},
            **addresses,
        ).write(state_path)
        while not should_stop():
            time.sleep(_WATCH_INTERVAL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.supervisor", description=__doc__)
    parser.add_argument("--state", type=Path, required=True, help="where to write the state JSON")
    parser.add_argument("--components", default=",".join(DEFAULT_COMPONENTS))
    parser.add_argument("--crds", type=Path, default=Path(__file__).resolve().parent.parent / "crds")
    parser.add_argument("--watch-pid", type=int, help="stop when this process is gone")
    arguments = parser.parse_args(argv)
    components = tuple(c for c in arguments.components.split(",") if c)
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        parser.error(f"unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def should_stop() -> bool:
        watched_gone = arguments.watch_pid is not None and not _is_alive(arguments.watch_pid)
        return stopping.is_set() or watched_gone

    try:
        run_stack(components, arguments.state, arguments.crds, should_stop)
    except Exception as error:
        print(f"error: stack failed to start: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
