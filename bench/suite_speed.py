"""`python -m bench.suite_speed`: the integration suite serial vs parallel, control-plane start apart.

Prints the control plane's start time (measured here, alone), then the wall
time of the suite with one process and with N workers on the same machine,
and the speed-up. Each pytest run starts its own shared stack, so both
include one stack start; the control-plane line says how much of that it is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from envtest import ControlPlane

REPOSITORY = Path(__file__).resolve().parent.parent


def _timed_pytest(arguments: list[str]) -> float:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *arguments],
        cwd=REPOSITORY,
        check=False,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - began
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:])
    if result.returncode != 0:
        raise SystemExit(f"pytest {' '.join(arguments)} failed:\n{result.stdout[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_speed", description=__doc__)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("paths", nargs="*", default=["test/integration"])
    arguments = parser.parse_args(argv)
    with ControlPlane(crd_dirs=[REPOSITORY / "crds"]) as plane:
        print(f"control plane start (etcd + kube-apiserver + CRDs): {plane.started_in:.1f}s")
    serial = _timed_pytest(["-n", "0", *arguments.paths])
    parallel = _timed_pytest(["-n", str(arguments.workers), *arguments.paths])
    print(
        f"serial: {serial:.1f}s  parallel (-n {arguments.workers}): {parallel:.1f}s  "
        f"speed-up: {serial / parallel:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
