"""`python -m bench.suite_cost`: what one parallel test run costs the machine.

Runs `pytest -n WORKERS` (the test phase of `make test`) and prints its wall
time, the CPU-seconds the whole machine spent meanwhile (every process: the
workers, the servers they started, the shared stack), per test and per test
module (from the `bench.module_cpu` plugin), how many processes were started
(the kernel's fork counter), and how many lines the run printed. The machine
should be otherwise idle: the CPU and process figures are machine-wide.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def machine_counters() -> tuple[float, int]:
    """(busy CPU-seconds of all cores since boot, processes forked since boot)."""
    busy = 0.0
    forks = 0
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
            busy = (user + nice + system + irq + softirq + steal) / _TICKS_PER_SECOND
        elif fields[0] == "processes":
            forks = int(fields[1])
    return busy, forks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_cost", description=__doc__)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--modules", type=int, default=15, help="how many of the costliest modules to list")
    parser.add_argument("--output", type=Path, help="also write the run's output to this file")
    parser.add_argument("paths", nargs="*", default=["test"])
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="suite-cost-") as directory:
        cpu_before, forks_before = machine_counters()
        began = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-n",
                str(arguments.workers),
                "-p",
                "bench.module_cpu",
                *arguments.paths,
            ],
            cwd=REPOSITORY,
            env={**os.environ, "MODULE_CPU_DIR": directory},
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.monotonic() - began
        cpu_after, forks_after = machine_counters()
        modules: dict[str, dict[str, float]] = {}
        for report in Path(directory).glob("*.json"):
            for module, cost in json.loads(report.read_text()).items():
                entry = modules.setdefault(module, {"cpu_seconds": 0.0, "tests": 0})
                entry["cpu_seconds"] += cost["cpu_seconds"]
                entry["tests"] += cost["tests"]
    output = run.stdout + run.stderr
    if arguments.output:
        arguments.output.write_text(output)
    summary = next((line for line in reversed(run.stdout.splitlines()) if " in " in line), "(no summary)")
    tests = sum(int(entry["tests"]) for entry in modules.values()) or 1
    cpu = cpu_after - cpu_before
    charged = sum(entry["cpu_seconds"] for entry in modules.values())
    print(f"pytest:             {summary.strip('= ')}")
    print(f"wall time:          {wall:.1f} s")
    print(f"machine CPU:        {cpu:.1f} CPU-s ({cpu / wall:.2f} cores busy on average)")
    print(f"CPU per test:       {cpu / tests * 1000:.0f} ms over {tests} tests")
    print(f"  charged to tests: {charged:.1f} CPU-s; shared stack and the rest: {cpu - charged:.1f} CPU-s")
    print(f"processes started:  {forks_after - forks_before}")
    print(f"output lines:       {len(output.splitlines())}")
    print(f"costliest {arguments.modules} modules (CPU-s charged, tests, CPU-ms per test):")
    ranked = sorted(modules.items(), key=lambda item: item[1]["cpu_seconds"], reverse=True)
    for module, entry in ranked[: arguments.modules]:
        per_test = entry["cpu_seconds"] / entry["tests"] * 1000
        print(f"  {entry['cpu_seconds']:7.1f}  {int(entry['tests']):4d}  {per_test:6.0f}  {module}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
