"""Installs the PostgreSQL and Redis server packages from Debian, without their system services.

Only the binaries are wanted: the servers themselves are started privately by
`PostgresServer` and `RedisServer`. Package scripts would start a system
cluster and a system Redis, so a `policy-rc.d` that forbids starting services
is put in place for the install (unless one already exists), and anything the
packages still managed to start is stopped again. With both binaries present
this does nothing and returns at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from localservers._process import LocalServerError, is_root
from localservers.postgres import postgres_bin_dir
from localservers.redis_server import redis_binary

_POLICY_RC_D: Final = Path("/usr/sbin/policy-rc.d")
_FORBID_SERVICE_STARTS: Final = (
    "#!/bin/sh\n# Written by localservers for the install; removed after it.\nexit 101\n"
)
_REDIS_SYSTEM_PIDFILE: Final = Path("/run/redis/redis-server.pid")

Progress = Callable[[str], None]


def missing_packages() -> list[str]:
    """Debian packages still needed: `postgresql` for the server binaries, `redis-server` for Redis."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if redis_binary() is None:
        missing.append("redis-server")
    return missing


def install(progress: Progress = print) -> None:
    """Installs whatever is missing; leaves no system service running."""
    missing = missing_packages()
    if not missing:
        progress("PostgreSQL and Redis are installed; nothing to do")
        return
    if not is_root():
        raise LocalServerError(
            f"installing {', '.join(missing)} needs root: run `sudo python -m localservers install`"
        )
    if shutil.which("apt-get") is None:
        raise LocalServerError(f"apt-get not found; install {', '.join(missing)} with your package manager")
    clusters_before = _online_clusters()
    redis_was_running = _system_redis_pid() is not None
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _service_starts_forbidden():
        progress("==> apt-get update")
        _apt(["apt-get", "update", "-q"], environment)
        progress(f"==> apt-get install {' '.join(missing)}")
        _apt(
            [
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                *missing,
            ],
            environment,
        )
    _stop_started_services(clusters_before, redis_was_running, progress)
    still_missing = missing_packages()
    if still_missing:
        raise LocalServerError(f"apt-get finished but {', '.join(still_missing)} is still missing")
    progress("==> PostgreSQL and Redis installed")


def _apt(argv: list[str], environment: dict[str, str]) -> None:
    # apt prints its own progress; it goes straight to our terminal.
    result = subprocess.run(argv, env=environment, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise LocalServerError(f"{' '.join(argv)} failed with exit code {result.returncode}")


@contextlib.contextmanager
def _service_starts_forbidden() -> Iterator[None]:
    if _POLICY_RC_D.exists():
        yield
        return
    _POLICY_RC_D.write_text(_FORBID_SERVICE_STARTS)
    _POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        _POLICY_RC_D.unlink(missing_ok=True)


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
    clusters_before: set[tuple[str, str]], redis_was_running: bool, progress: Progress
) -> None:
    for version, name in sorted(_online_clusters() - clusters_before):
        progress(f"==> stopping the system PostgreSQL cluster {version}/{name} that the package started")
        subprocess.run(["pg_ctlcluster", version, name, "stop"], check=False)
    redis_pid = _system_redis_pid()
    if redis_pid is not None and not redis_was_running:
        progress("==> stopping the system Redis that the package started")
        with contextlib.suppress(ProcessLookupError):
            os.kill(redis_pid, signal.SIGTERM)
