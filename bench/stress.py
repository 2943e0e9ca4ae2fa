"""`python -m bench.stress`: the whole suite N times in random order, stopping at the first failure.

Each run gets its own pytest-randomly seed, printed up front, so a failing
order can be replayed with `pytest --randomly-seed=SEED`.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stress", description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("paths", nargs="*", default=["test"])
    arguments = parser.parse_args(argv)
    seeds = [random.randrange(1, 2**31) for _ in range(arguments.runs)]
    started = time.monotonic()
    for run, seed in enumerate(seeds, start=1):
        print(f"==> stress run {run}/{arguments.runs}, seed {seed}", flush=True)
        began = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-n",
                str(arguments.workers),
                "-p",
                "randomly",
                f"--randomly-seed={seed}",
                *arguments.paths,
            ],
            check=False,
        )
        if result.returncode != 0:
            replay = f"pytest -n {arguments.workers} --randomly-seed={seed} {' '.join(arguments.paths)}"
            print(f"FAILED: run {run} of {arguments.runs}, seed {seed} (replay: {replay})")
            return 1
        print(f"    run {run} passed in {time.monotonic() - began:.0f}s", flush=True)
    print(f"{arguments.runs} passed, 0 failed in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
