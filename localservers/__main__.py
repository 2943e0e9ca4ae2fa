"""Command line: `python -m localservers install` and `python -m localservers up --state FILE`.

`install` is what `make servers` runs. `up` starts one PostgreSQL and one
Redis, writes their URLs to a JSON state file for other processes, and keeps
them until SIGTERM or Ctrl-C, when it stops them and removes the file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from localservers import LocalServerError, PostgresServer, RedisServer, install


def _up(state_file: Path, base_dir: Path | None) -> None:
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    postgres = PostgresServer(base_dir / "postgres" if base_dir else None)
    redis = RedisServer(base_dir / "redis" if base_dir else None)
    try:
        postgres.start()
        redis.start()
        state = {"database_url": postgres.url, "redis_url": redis.url, "pid": os.getpid()}
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        print(f"PostgreSQL: {postgres.url}\nRedis:      {redis.url}\nstate in {state_file}; Ctrl-C stops")
        sys.stdout.flush()
        stop_requested.wait()
    finally:
        state_file.unlink(missing_ok=True)
        redis.stop()
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localservers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install the PostgreSQL and Redis packages when missing")
    up = commands.add_parser("up", help="start PostgreSQL and Redis until SIGTERM or Ctrl-C")
    up.add_argument("--state", type=Path, required=True, help="JSON file to write the URLs into")
    up.add_argument("--base-dir", type=Path, help="keep the servers' data here (default: temp dirs)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
        else:
            _up(args.state, args.base_dir)
    except LocalServerError as error:
        print(f"localservers: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
