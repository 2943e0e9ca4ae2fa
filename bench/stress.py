"""`python -m bench.stress`: the whole suite again and again, stopping at the first failure.

Two modes, each printing every run's pytest-randomly seed up front so a failure
can be replayed:

- random order (the default): the suite N times in this checkout, each run in
  its own random order (replay with `pytest --randomly-seed=SEED`);
- `--concurrent-clones`: two fresh clones of the committed HEAD run the complete
  `make test` (what CI runs) at the same time, round after round. Nothing is set
  per clone: they share what any two checkouts on one machine share (the build
  cache, pip's cache, /tmp, the port range), so a pass proves that runs are
  isolated by construction (ports, temp dirs, lock files, PostgreSQL and Redis
  instances, namespaces). Each run's output goes to a log file in a directory
  that is kept; the clones are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

REPOSITORY: Final = Path(__file__).resolve().parent.parent
CLONES: Final = ("A", "B")
# Enough for pytest's short test summary, or for the make step that failed before pytest.
TAIL_LINES: Final = 40
# How long an interrupted `make test` gets to tear its servers down before it is killed.
STOP_GRACE_SECONDS: Final = 60
# Variables a parent make exports; without them each clone's `make test` is a top-level run, as in CI.
_PARENT_MAKE_VARIABLES: Final = frozenset({"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"})
_PYTEST_SUMMARY: Final = re.compile(r"^=+ (.+ in [0-9.]+s.*?) =+$")


def random_order(*, runs: int, workers: int, paths: list[str]) -> int:
    """The suite `runs` times in this checkout, each in its own random order."""
    seeds = [random.randrange(1, 2**31) for _ in range(runs)]
    started = time.monotonic()
    for run, seed in enumerate(seeds, start=1):
        print(f"==> stress run {run}/{runs}, seed {seed}", flush=True)
        began = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-n",
                str(workers),
                "-p",
                "randomly",
                f"--randomly-seed={seed}",
                *paths,
            ],
            check=False,
        )
        if result.returncode != 0:
            replay = f"pytest -n {workers} --randomly-seed={seed} {' '.join(paths)}"
            print(f"FAILED: run {run} of {runs}, seed {seed} (replay: {replay})")
            return 1
        print(f"    run {run} passed in {time.monotonic() - began:.0f}s", flush=True)
    print(f"{runs} passed, 0 failed in {time.monotonic() - started:.0f}s")
    return 0


@dataclass
class Run:
    """One `make test` in one clone, running in its own process group."""

    clone: str
    seed: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def passed(self) -> bool:
        return self.process.returncode == 0


def clone_commit(commit: str, destination: Path) -> None:
    """A fresh clone of this repository, checked out at `commit` (the same one for every clone)."""
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(REPOSITORY), str(destination)], check=True
    )
    subprocess.run(["git", "-C", str(destination), "checkout", "--quiet", "--detach", commit], check=True)


@dataclass(frozen=True)
class MakeTest:
    """The complete test command, as CI runs it, for one run's order."""

    workers: int
    paths: tuple[str, ...]  # what pytest runs; empty: its testpaths (test/)

    def pytest_args(self, seed: int) -> str:
        return " ".join(["-p", "randomly", f"--randomly-seed={seed}", *self.paths])

    def argv(self, seed: int) -> list[str]:
        return ["make", "test", f"WORKERS={self.workers}", f"PYTEST_ARGS={self.pytest_args(seed)}"]

    def replay(self, seed: int) -> str:
        return f'make test WORKERS={self.workers} PYTEST_ARGS="{self.pytest_args(seed)}"'


def start_run(command: MakeTest, *, clone: str, checkout: Path, seed: int, log: Path) -> Run:
    environment = {name: value for name, value in os.environ.items() if name not in _PARENT_MAKE_VARIABLES}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command.argv(seed),
            cwd=checkout,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Run(clone=clone, seed=seed, log=log, process=process)


def stop_runs(runs: list[Run]) -> None:
    """Interrupts the runs still going (their whole process group, as Ctrl-C would) and waits for them."""
    running = [run for run in runs if run.process.poll() is None]
    for run in running:
        os.killpg(run.process.pid, signal.SIGINT)
    for run in running:
        try:
            run.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()


def pytest_summary(run: Run) -> str:
    """pytest's last summary line (`1074 passed in 180.21s`), or why there is none."""
    lines = run.log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        match = _PYTEST_SUMMARY.match(line.strip())
        if match:
            return match.group(1)
    return f"no pytest summary, make test exited {run.process.returncode}"


def report_failure(run: Run, command: MakeTest, *, round_: int, rounds: int) -> None:
    exit_code = run.process.returncode
    print(f"FAILED: round {round_} of {rounds}, clone {run.clone} (seed {run.seed}), exit {exit_code}")
    print(f"    log: {run.log} (every run's log is kept in {run.log.parent})")
    print(f"    replay in a clone: {command.replay(run.seed)}")
    print(f"--- last {TAIL_LINES} lines of {run.log.name} ---")
    for line in run.log.read_text(errors="replace").splitlines()[-TAIL_LINES:]:
        print(line)
    print("---", flush=True)


def run_round(
    command: MakeTest, checkouts: dict[str, Path], seeds: dict[str, int], log_prefix: Path
) -> list[Run]:
    """`make test` in every clone at once; returns when all have finished (or stops them on an interrupt)."""
    runs: list[Run] = []
    try:
        for clone, checkout in checkouts.items():
            log = log_prefix.with_name(f"{log_prefix.name}-clone-{clone.lower()}.log")
            runs.append(start_run(command, clone=clone, checkout=checkout, seed=seeds[clone], log=log))
        for run in runs:
            run.process.wait()
    finally:
        stop_runs(runs)
    return runs


def _interrupt(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def concurrent_clones(command: MakeTest, *, rounds: int) -> int:
    """`rounds` rounds of `make test` in two clones at once; stops after the first round with a failure."""
    if os.environ.get("USE_EXISTING_CLUSTER", "").lower() == "true":
        print("USE_EXISTING_CLUSTER=true would make both clones use one cluster; unset it", file=sys.stderr)
        return 2
    commit = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The runs have their own sessions, so a terminal's Ctrl-C reaches only this process; SIGTERM is
    # made an interrupt too, so that either way the runs are stopped and the clones removed.
    signal.signal(signal.SIGTERM, _interrupt)
    logs = Path(tempfile.mkdtemp(prefix="stress-logs-"))
    print(f"==> `make test` in clones {' and '.join(CLONES)} of {commit[:12]} at once, {rounds} round(s)")
    print(f"    logs: {logs}", flush=True)
    passed = failed = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stress-clones-") as directory:
        checkouts = {clone: Path(directory) / f"clone-{clone.lower()}" for clone in CLONES}
        for checkout in checkouts.values():
            clone_commit(commit, checkout)
        for round_ in range(1, rounds + 1):
            seeds = {clone: random.randrange(1, 2**31) for clone in CLONES}
            print(
                f"==> round {round_}/{rounds}: "
                + ", ".join(f"clone {clone} seed {seed}" for clone, seed in seeds.items()),
                flush=True,
            )
            began = time.monotonic()
            runs = run_round(command, checkouts, seeds, logs / f"round-{round_:02d}")
            for run in runs:
                print(f"    clone {run.clone} (seed {run.seed}): {pytest_summary(run)}")
            failures = [run for run in runs if not run.passed]
            passed += len(runs) - len(failures)
            failed += len(failures)
            verdict = "FAILED" if failures else "passed"
            print(f"    round {round_} {verdict} in {time.monotonic() - began:.0f}s", flush=True)
            for run in failures:
                report_failure(run, command, round_=round_, rounds=rounds)
            if failures:
                break
    print(f"{passed} passed, {failed} failed in {time.monotonic() - started:.0f}s")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stress", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="random-order mode: how many runs")
    parser.add_argument(
        "--concurrent-clones", action="store_true", help="run `make test` in two clones of HEAD at once"
    )
    parser.add_argument("--rounds", type=int, default=10, help="--concurrent-clones: how many rounds of two")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("paths", nargs="*", help="what pytest runs (default: test/)")
    arguments = parser.parse_args(argv)
    if arguments.concurrent_clones:
        command = MakeTest(workers=arguments.workers, paths=tuple(arguments.paths))
        return concurrent_clones(command, rounds=arguments.rounds)
    return random_order(runs=arguments.runs, workers=arguments.workers, paths=arguments.paths or ["test"])


if __name__ == "__main__":
    sys.exit(main())
