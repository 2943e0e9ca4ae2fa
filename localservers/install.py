"""Installs the PostgreSQL and Redis server packages from Debian, without their system services.

Only the binaries are wanted: the servers themselves are started privately by
`PostgresServer` and `RedisServer`. The packages are missing when the
binaries are (a server installed some other way counts), and the `debian_packages`
package installs them with service starts forbidden. Should a system cluster
or a system Redis start all the same, it is stopped again. With both
binaries present this does nothing and returns at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Final

import debian_packages
from localservers._process import LocalServerError
from localservers.postgres import postgres_bin_dir
from localservers.redis_server import redis_binary

_REDIS_SYSTEM_PIDFILE: Final = Path("/run/redis/redis-server.pid")


def missing_packages() -> list[str]:
    """Debian packages still needed: `postgresql` for the server binaries, `redis-server` for Redis."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if redis_binary() is None:
        missing.append("redis-server")
    return missing


def install(progress: debian_packages.Progress = print) -> None:
    """Installs whatever is missing; leaves no system service running."""
    missing = missing_packages()
    if not missing:
        progress("PostgreSQL and Redis are installed; nothing to do")
        return
    clusters_before = _online_clusters()
    redis_was_running = _system_redis_pid() is not None
    try:
        debian_packages.install(missing, progress)
    except debian_packages.DebianError as error:
        raise LocalServerError(str(error)) from error
    finally:
        _stop_started_services(clusters_before, redis_was_running, progress)
    still_missing = missing_packages()
    if still_missing:
        raise LocalServerError(f"apt-get finished but {', '.join(still_missing)} is still missing")
    progress("==> PostgreSQL and Redis installed")


def _online_clusters() -> set[tuple[str, str]]:
    """(version, name) of the Debian-managed PostgreSQL clusters that are running."""
    if shutil.which("pg_lsclusters") is None:
        return set()
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False)
    online = set()
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].startswith("online"):
            online.add((fields[0], fields[1]))
    return online


def _system_redis_pid() -> int | None:
    try:
        pid = int(_REDIS_SYSTEM_PIDFILE.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _stop_started_services(
    clusters_before: set[tuple[str, str]], redis_was_running: bool, progress: debian_packages.Progress
) -> None:
    for version, name in sorted(_online_clusters() - clusters_before):
        progress(f"==> stopping the system PostgreSQL cluster {version}/{name} that the package started")
        subprocess.run(["pg_ctlcluster", version, name, "stop"], check=False)
    redis_pid = _system_redis_pid()
    if redis_pid is not None and not redis_was_running:
        progress("==> stopping the system Redis that the package started")
        with contextlib.suppress(ProcessLookupError):
            os.kill(redis_pid, signal.SIGTERM)
