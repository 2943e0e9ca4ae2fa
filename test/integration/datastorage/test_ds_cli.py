"""The command line: `python -m datastorage migrate`, settings errors that stop the process, and the
event loop and HTTP parser `serve` runs on."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from datastorage.migrations import available_migrations
from devstack.datastorage_process import DataStorageProcess
from test.integration.datastorage.support import (
    EVENTS_PATH,
    OpenStack,
    WorkerDatabases,
    logged,
    make_event,
    sql,
)


def run_datastorage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datastorage", *args],
        env={key: value for key, value in {**os.environ, **env}.items() if value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_applies_the_schema_once(fresh_database: str) -> None:
    first = run_datastorage("migrate", env={"DATABASE_URL": fresh_database})
    again = run_datastorage("migrate", env={"DATABASE_URL": fresh_database})

    every = [migration.version for migration in available_migrations()]
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    logged = [json.loads(line) for line in (first.stderr + again.stderr).splitlines()]
    assert [entry["versions"] for entry in logged if entry["message"] == "migrations applied"] == [every, []]
    applied = sql(fresh_database, "SELECT version FROM schema_migrations ORDER BY version")
    assert [row["version"] for row in applied] == every


def test_a_missing_setting_stops_the_service_naming_it() -> None:
    result = run_datastorage(
        "--port", "18080", env={"DATABASE_URL": "", "REDIS_URL": "redis://127.0.0.1:1/0"}
    )

    assert result.returncode == 2
    assert "DATABASE_URL is not set: set it or pass --database-url" in result.stderr


@pytest.mark.parametrize(
    ("flags", "event_loop", "http"),
    [
        pytest.param([], "uvloop", "httptools", id="default"),
        pytest.param(["--event-loop", "asyncio", "--http", "h11"], "asyncio", "h11", id="pure-python"),
    ],
)
def test_serve_runs_on_the_event_loop_and_http_parser_it_is_told_to(
    worker_databases: WorkerDatabases,
    fresh_database: str,
    tmp_path: Path,
    correlation_id: str,
    flags: list[str],
    event_loop: str,
    http: str,
) -> None:
    log = tmp_path / "datastorage.log"
    with (
        worker_databases.redis_database() as redis_url,
        DataStorageProcess(
            database_url=fresh_database, redis_url=redis_url, log_path=log, extra_args=flags
        ) as ds,
    ):
        answer = httpx.post(f"{ds.url}{EVENTS_PATH}", json=make_event(correlation_id))

    assert answer.status_code == 201, answer.text
    [started] = logged(log, "DataStorage started")
    assert (started["event_loop"], started["http"]) == (event_loop, http)


def test_an_in_process_datastorage_runs_on_uvloop_too(
    stack_on_shared_servers: OpenStack, caplog: pytest.LogCaptureFixture
) -> None:
    # The host's levels decide what an embedded instance logs: let it log its start.
    caplog.set_level(logging.INFO, logger="datastorage")
    with stack_on_shared_servers() as stack:
        [started] = logged(stack.log_path, "DataStorage started")

    assert started["event_loop"] == "uvloop"
