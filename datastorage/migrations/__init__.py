"""Versioned schema migrations: the `NNNN_name.sql` files beside this module, applied in order.

Each file runs once, in its own transaction, and is recorded in
`schema_migrations`. A session advisory lock serialises concurrent runners
(several DataStorage instances starting against one database), so each
migration is applied by exactly one of them. Files are never edited once
released; a change is a new file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

import asyncpg

# Arbitrary, fixed: identifies "DataStorage migrations" among advisory locks.
MIGRATION_LOCK_KEY: Final = 0x44534D49
_FILE_NAME: Final = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """All migration files, by version; raises ValueError on two files with one version."""
    migrations = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match:
            migrations.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if len(versions) != len(set(versions)):
        raise ValueError(f"two migration files share a version: {versions}")
    return migrations


async def apply_migrations(connection: asyncpg.Connection, *, up_to: int | None = None) -> list[Migration]:
    """Applies the migrations this database lacks, those after `up_to` left out; returns them (empty when
    up to date). `up_to` puts a database where an older release left it, to test the upgrade from it."""
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """
        )
        applied = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        pending = [
            migration
            for migration in available_migrations()
            if migration.version not in applied and (up_to is None or migration.version <= up_to)
        ]
        for migration in pending:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        return pending
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def migrate(
    database_url: str, *, connect_timeout: float = 10.0, up_to: int | None = None
) -> list[Migration]:
    """Connects, applies pending migrations (up to `up_to`) and disconnects; what
    `python -m datastorage migrate` runs."""
    connection = await asyncpg.connect(database_url, timeout=connect_timeout)
    try:
        return await apply_migrations(connection, up_to=up_to)
    finally:
        await connection.close()
