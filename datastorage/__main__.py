"""Command line: `python -m datastorage [serve] --host H --port N` and `python -m datastorage migrate`.

`serve` (the default) applies pending migrations, then serves the API until
SIGINT/SIGTERM. `migrate` only applies migrations. Settings come from flags or
the environment (`DATABASE_URL`, `REDIS_URL`, `DATASTORAGE_PORT`, ...; see
`--help`); a missing or bad one stops the process with a message naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import asyncpg

from datastorage.config import ConfigError, add_arguments, load_database_url, load_settings, redact_url
from datastorage.logs import configure_json_logging
from datastorage.migrations import migrate
from datastorage.runner import run
from datastorage.service import StartupError

log = logging.getLogger("datastorage")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datastorage", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("serve", "migrate"), default="serve")
    add_arguments(parser)
    args = parser.parse_args(argv)
    flags = {key: value for key, value in vars(args).items() if key != "command"}
    try:
        if args.command == "migrate":
            return _migrate(load_database_url(flags, os.environ))
        settings = load_settings(flags, os.environ)
    except ConfigError as error:
        print(f"datastorage: configuration error: {error}", file=sys.stderr)
        return 2
    configure_json_logging(settings.log_level)
    try:
        run(settings)
    except StartupError as error:
        log.error("DataStorage cannot start", extra={"error": str(error)})
        return 1
    return 0


def _migrate(database_url: str) -> int:
    configure_json_logging("info")
    try:
        applied = asyncio.run(migrate(database_url))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        log.error("migration failed", extra={"database": redact_url(database_url), "error": str(error)})
        return 1
    log.info("migrations applied", extra={"versions": [migration.version for migration in applied]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
