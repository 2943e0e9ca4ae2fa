"""Fixtures of the DataStorage integration tests: one stack per worker, one correlation id per test.

Each xdist worker runs its own in-process DataStorage on a database and a
Redis database of its own, on the suite's shared PostgreSQL and Redis (the
`stack` fixture). Tests share it, and isolate their rows by a fresh
`correlation_id`, so filters and totals only ever see the test's own events.
A test that moves the clock or changes settings opens a stack of its own on
fresh databases of the same servers (`stack_on_shared_servers`); one that
stops or kills PostgreSQL or Redis starts servers of its own
(`stack_with_own_servers`). Every DataStorage logs to a file under the test's
temporary directory, never to the worker's output; a failing test shows the
tail of each log it used.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from datastorage.config import DlqSettings
from devstack.state import StackState
from processes.child import log_tail
from test.integration.datastorage.support import (
    OpenStack,
    OpenStackWithServers,
    Stack,
    StackWithServers,
    WorkerDatabases,
    open_stack_on,
    open_stack_with_servers,
)

# The logs of the DataStorage instances a test used: its own stacks', and the worker's shared one's.
_TEST_LOGS = pytest.StashKey[list[Path]]()
_WORKER_LOG = pytest.StashKey[Path]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        logs = [*item.stash.get(_TEST_LOGS, [])]
        if "ds_stack" in getattr(item, "fixturenames", ()) and _WORKER_LOG in item.config.stash:
            logs.append(item.config.stash[_WORKER_LOG])
        for path in logs:
            report.sections.append((f"DataStorage log {path} (last lines)", log_tail(path)))
    return report


@pytest.fixture(scope="session")
def worker_databases(stack: StackState, worker_id: str) -> WorkerDatabases:
    return WorkerDatabases(database_url=stack.database_url, redis_url=stack.redis_url, worker_id=worker_id)


@pytest.fixture(scope="session")
def ds_stack(
    worker_databases: WorkerDatabases,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    log_path = tmp_path_factory.mktemp("ds-stack") / "datastorage.log"
    request.config.stash[_WORKER_LOG] = log_path
    # No test of this stack waits for the DLQ: it is polled at the service's pace (once a second),
    # not the outage tests' (20 times), because it idles in every worker until the session ends; and
    # none expects a write to go there.
    with open_stack_on(worker_databases, log_path=log_path, dlq=DlqSettings()) as stack:
        yield stack


@pytest.fixture
def new_log_path(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Path]:
    """A new log file under the test's temporary directory per call, listed for the failure report."""
    logs = request.node.stash.setdefault(_TEST_LOGS, [])

    def new() -> Path:
        path = tmp_path / f"datastorage-{len(logs)}.log"
        logs.append(path)
        return path

    return new


@pytest.fixture
def stack_on_shared_servers(worker_databases: WorkerDatabases, new_log_path: Callable[[], Path]) -> OpenStack:
    """Opens a DataStorage of the test's own on fresh databases of the shared servers."""

    def open_stack(**options: Any) -> contextlib.AbstractContextManager[Stack]:
        return open_stack_on(worker_databases, log_path=new_log_path(), **options)

    return open_stack


@pytest.fixture
def stack_with_own_servers(new_log_path: Callable[[], Path]) -> OpenStackWithServers:
    """Opens a DataStorage with a PostgreSQL and Redis of its own, which the test may stop or kill."""

    def open_stack(**options: Any) -> contextlib.AbstractContextManager[StackWithServers]:
        return open_stack_with_servers(log_path=new_log_path(), **options)

    return open_stack


@pytest.fixture
def fresh_database(worker_databases: WorkerDatabases) -> Iterator[str]:
    """The URL of an empty PostgreSQL database on the shared server, dropped after the test."""
    with worker_databases.database() as database_url:
        yield database_url


@pytest.fixture(scope="session")
def ds_client(ds_stack: Stack) -> Iterator[httpx.Client]:
    with ds_stack.client() as client:
        yield client


@pytest.fixture
def correlation_id() -> str:
    return f"ds-it-{uuid.uuid4()}"
