"""How the harness builds what it caches (its binaries, its images): one step at a time, quietly.

Each step is a command whose output goes to the error only: progress is one line when it starts
and one when it ends, timed, on stderr; a failure names the step and the command and shows the
tail of its output. A step dies with the process that runs it, so a killed `make assets` or
`make images` leaves no `go build`, debootstrap or buildah working on.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# prctl(2)'s option that has the kernel kill a child when the thread that started it ends; resolved
# here, as loading a library between fork and exec could deadlock.
_PR_SET_PDEATHSIG: Final = 1
_libc: Final = ctypes.CDLL(None, use_errno=True)
# Lines of a failed step's output shown in its error.
_TAIL_LINES: Final = 30


def _die_with_parent() -> None:
    """Run in a child before exec."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class BuildSteps:
    """The steps of one kind of build: `[kind]` before its progress lines, `error` for its failures."""

    kind: str
    error: type[Exception]
    noun: str = ""  # before a subject in a failure: "building image app failed"

    def progress(self, message: str) -> None:
        print(f"[{self.kind}] {message}", file=sys.stderr, flush=True)

    def run(
        self,
        subject: str,
        step: str,
        argv: Sequence[str | Path],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """The step's stdout; raises `error` with the output's tail if it fails."""
        self.progress(f"{subject}: {step} ...")
        started = time.monotonic()
        command = [str(part) for part in argv]
        result = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=_die_with_parent,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-_TAIL_LINES:])
            raise self.error(
                f"building {self.noun}{subject} failed at step '{step}' ({' '.join(command)}), "
                f"exit {result.returncode}:\n{tail}"
            )
        self.progress(f"{subject}: {step} done in {time.monotonic() - started:.0f}s")
        return result.stdout
