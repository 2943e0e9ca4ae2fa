"""Installs Debian packages with apt-get, idempotently, with no system service started.

The project's servers and the test node's daemons come from Debian packages
but are run privately by the project (localservers, envtest), never as system
services, and a test machine has no init system to run them anyway. So while
apt-get runs, a `policy-rc.d` that forbids starting services is in place
(unless the machine has one already). `missing_packages` tells which packages
dpkg does not have installed; `install` installs those of a list, does
nothing (and says so in one line) when all are there, and needs root only
when something is missing. apt-get's own output goes straight to the
terminal. Installers on one machine take turns, and each checks again after
its turn comes: another one may have installed the packages meanwhile.

This package depends on nothing else of the project; `python -m debian_packages
install PACKAGE...` is its command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

Progress = Callable[[str], None]

# dpkg's ${Status} of an installed package: wanted, no error, installed.
_INSTALLED: Final = "install ok installed"
_POLICY_RC_D: Final = Path("/usr/sbin/policy-rc.d")
# Exit code 101 of policy-rc.d: "action forbidden by policy", for every service and action.
_FORBID_SERVICE_STARTS: Final = (
    "#!/bin/sh\n# Written by the project's debian_packages for an install; removed after it.\nexit 101\n"
)
# Held for a whole install, so that one installer's policy-rc.d is not removed under another's apt-get.
_INSTALL_LOCK: Final = Path(tempfile.gettempdir()) / "kubernaut-debian-install.lock"
# apt-get waits this long for another package manager's dpkg lock instead of failing at once.
_DPKG_LOCK_TIMEOUT_SECONDS: Final = 600


class DebianError(RuntimeError):
    """Packages could not be checked or installed; the message says which and why."""


def missing_packages(packages: Sequence[str]) -> list[str]:
    """Those of `packages` (in their order) that dpkg does not report as installed."""
    if not packages:
        return []
    if shutil.which("dpkg-query") is None:
        raise DebianError(
            f"dpkg-query not found: not a Debian-based machine; install {' '.join(packages)} "
            "with its package manager"
        )
    # Exit code 1 only says that some package is unknown to dpkg, which is an answer here, not a failure.
    query = subprocess.run(
        ["dpkg-query", "--show", "--showformat", "${Package}\t${Status}\n", *packages],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    installed = set()
    for line in query.stdout.splitlines():
        name, _, status = line.partition("\t")
        if status == _INSTALLED:
            installed.add(name)
    # dpkg reports an architecture-qualified name (`libc6:amd64`) under the bare name.
    return [package for package in packages if package.partition(":")[0] not in installed]


def install(packages: Sequence[str], progress: Progress = print) -> list[str]:
    """Installs those of `packages` that are missing; returns them (empty when there was nothing to do).

    Raises `DebianError` when something is missing and this process is not
    root or has no apt-get, when apt-get fails, and when a package is still
    not installed afterwards (a virtual or misspelt name, for example).
    """
    missing = missing_packages(packages)
    if not missing:
        _say_nothing_to_do(packages, progress)
        return []
    if os.geteuid() != 0:
        raise DebianError(
            f"installing {' '.join(missing)} needs root, to run apt-get: run the command again with sudo"
        )
    if shutil.which("apt-get") is None:
        raise DebianError(
            f"apt-get not found; install {' '.join(missing)} with this machine's package manager"
        )
    with _one_installer_at_a_time():
        missing = missing_packages(packages)
        if not missing:  # another installer's turn came first
            _say_nothing_to_do(packages, progress)
            return []
        _apt_get_install(missing, progress)
    still_missing = missing_packages(packages)
    if still_missing:
        raise DebianError(f"apt-get finished but {' '.join(still_missing)} is still not installed")
    progress(f"==> installed {' '.join(missing)}")
    return missing


def _say_nothing_to_do(packages: Sequence[str], progress: Progress) -> None:
    progress(f"Debian packages {' '.join(packages)} are installed; nothing to do")


def _apt_get_install(packages: Sequence[str], progress: Progress) -> None:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_timeout = ["-o", f"DPkg::Lock::Timeout={_DPKG_LOCK_TIMEOUT_SECONDS}"]
    with _service_starts_forbidden():
        progress("==> apt-get update")
        _apt(["apt-get", "update", "-q", *lock_timeout], environment)
        progress(f"==> apt-get install {' '.join(packages)}")
        _apt(
            [
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                *lock_timeout,
                # Keep a configuration file someone changed; take the package's default for the rest.
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                *packages,
            ],
            environment,
        )


def _apt(argv: list[str], environment: dict[str, str]) -> None:
    # apt prints its own progress (-q: line by line, no spinner); it goes straight to our terminal.
    result = subprocess.run(argv, env=environment, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise DebianError(f"{' '.join(argv)} failed with exit code {result.returncode}")


@contextlib.contextmanager
def _one_installer_at_a_time() -> Iterator[None]:
    with _INSTALL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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
