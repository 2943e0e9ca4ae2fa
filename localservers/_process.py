"""Helpers shared by the local PostgreSQL and Redis servers: their error, and short helper commands.

Running the servers themselves goes through `processes.child`, like every
other server of the project, from their common life cycle in `_server`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


class LocalServerError(RuntimeError):
    """A local server could not be installed, started or stopped; the message says which and why."""


def run_checked(argv: Sequence[str], *, what: str, run_as: tuple[int, int] | None = None) -> str:
    """Runs a short helper command to completion; raises naming `what` and showing its output."""
    user, group = run_as if run_as is not None else (None, None)
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        user=user,
        group=group,
        extra_groups=[] if run_as is not None else None,
        check=False,
    )
    if result.returncode != 0:
        raise LocalServerError(
            f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def is_root() -> bool:
    return os.geteuid() == 0
