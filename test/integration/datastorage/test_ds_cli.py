"""The command line: `python -m datastorage migrate`, and settings errors that stop the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from datastorage.migrations import available_migrations
from test.integration.datastorage.support import sql


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
