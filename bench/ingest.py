"""DataStorage ingest throughput over HTTP, next to raw asyncpg COPY of the same rows.

`python -m bench.ingest` starts its own PostgreSQL, Redis and two
DataStorages (as processes, so client and server do not share an
interpreter): one hashes the chain unkeyed (no key configured), the other
with an HMAC key. Then it:

1. copies the batch-1000 rows straight into `audit_events` with asyncpg's
   `copy_records_to_table`, 1000 rows per call: the raw baseline, with no
   hash chain;
2. empties the table and posts the same events through the unkeyed
   DataStorage in batches of 1, 100 and 1000, with a few requests in flight;
3. posts the batch-1000 events again to the keyed DataStorage, and once more
   to the unkeyed one with one request at a time (the table emptied before
   each);

in three interleaved rounds, and prints the median events/s of each (with
the range) and the ratio of batch-1000 (chain unkeyed and keyed) to raw COPY.
Eight events share a correlation_id, as a SignalProcessing's do. Medians of interleaved
rounds keep a busy shared machine from deciding the ratio. Bodies are encoded
before timing starts, so the client's JSON work is not counted. The whole run
stays well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

from datastorage.repository import STORED_COLUMNS, row_values
from datastorage.schemas import AuditEventRequest
from datastorage.timestamps import format_timestamp
from devstack.datastorage_process import DataStorageProcess
from localservers import PostgresServer, RedisServer

BATCH_PATH: Final = "/api/v1/audit/events/batch"
EVENTS_PATH: Final = "/api/v1/audit/events"
# events per batch size and round: enough for a steady rate, small enough for a short run
EVENTS_PER_SIZE: Final = {1: 1_000, 100: 10_000, 1000: 20_000}
ROUNDS: Final = 3
IN_FLIGHT: Final = 4
WARM_UP_REQUESTS: Final = 8


@dataclass(frozen=True)
class Result:
    label: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def make_events(count: int, run: str) -> list[dict[str, Any]]:
    """Realistic SignalProcessing events (sizes and shapes like the controller's)."""
    base = datetime.now(UTC) - timedelta(minutes=1)
    phases = ("Enriching", "Classifying", "Categorizing", "Completed")
    return [
        {
            "version": "1.0",
            "event_type": "signalprocessing.phase.transition",
            "event_timestamp": format_timestamp(base + timedelta(microseconds=i)),
            "event_category": "signalprocessing",
            "event_action": "phase_transition",
            "event_outcome": "success",
            "correlation_id": f"{run}-rr-{i // 8}",
            "event_id": str(uuid.uuid4()),
            "namespace": "production",
            "cluster_id": None,
            "severity": None,
            "duration_ms": None,
            "parent_event_id": None,
            "event_data": {
                "phase": phases[i % 4],
                "signal": {
                    "fingerprint": uuid.uuid4().hex,
                    "name": "HighMemoryUsage",
                    "severity": "critical",
                },
                "labels": {"app": "checkout", "team": "payments", "tier": "backend"},
                "priority": "P1",
                "environment": "production",
            },
        }
        for i in range(count)
    ]


def chunks(events: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(events[start : start + size]) for start in range(0, len(events), size)]


async def raw_copy(database_url: str, events: Sequence[dict[str, Any]], batch: int) -> Result:
    rows = [row_values(AuditEventRequest.model_validate(event).to_record()) for event in events]
    connection = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            await connection.copy_records_to_table(
                "audit_events", records=rows[start : start + batch], columns=STORED_COLUMNS
            )
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    await empty_table(database_url)
    return Result(f"raw asyncpg COPY, {batch}/call", len(rows), elapsed)


async def empty_table(database_url: str) -> None:
    """Every measurement inserts into an empty table, and starts new chains: repeats would only cost a
    conflict check."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("TRUNCATE audit_events, audit_chain_heads")
    finally:
        await connection.close()


async def through_http(
    url: str, events: Sequence[dict[str, Any]], size: int, in_flight: int, *, keyed: bool = False
) -> Result:
    path = EVENTS_PATH if size == 1 else BATCH_PATH
    bodies = [json.dumps(batch[0] if size == 1 else batch).encode() for batch in chunks(events, size)]
    warm_up = [json.dumps(batch).encode() for batch in chunks(make_events(WARM_UP_REQUESTS, "warm-up"), 1)]
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        for body in warm_up:
            (await client.post(BATCH_PATH, content=body, headers=headers)).raise_for_status()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def sender() -> None:
            while not queue.empty():
                response = await client.post(path, content=queue.get_nowait(), headers=headers)
                if response.status_code != 201:
                    raise RuntimeError(f"DataStorage answered {response.status_code}: {response.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    label = (
        f"HTTP, batch {size}"
        + (", keyed chain" if keyed else "")
        + ("" if in_flight == IN_FLIGHT else f", {in_flight} in flight")
    )
    return Result(label, len(events), elapsed)


async def measure(database_url: str, url: str, keyed_url: str, scale: float) -> dict[str, list[Result]]:
    sizes = {size: max(size, int(count * scale) // size * size) for size, count in EVENTS_PER_SIZE.items()}
    results: dict[str, list[Result]] = {}
    for round_number in range(ROUNDS):
        thousand = make_events(sizes[1000], f"r{round_number}-b1000")
        measured = [await raw_copy(database_url, thousand, 1000)]
        for size in (1, 100, 1000):
            events = thousand if size == 1000 else make_events(sizes[size], f"r{round_number}-b{size}")
            measured.append(await through_http(url, events, size, IN_FLIGHT))
        # The same rows into an empty table again: with the key, then one request at a time, as a
        # lone client sends them.
        await empty_table(database_url)
        measured.append(await through_http(keyed_url, thousand, 1000, IN_FLIGHT, keyed=True))
        await empty_table(database_url)
        measured.append(await through_http(url, thousand, 1000, 1))
        for result in measured:
            results.setdefault(result.label, []).append(result)
    return results


def report(results: dict[str, list[Result]]) -> str:
    medians = {label: statistics.median(r.rate for r in rounds) for label, rounds in results.items()}
    baseline_label = next(iter(results))
    baseline = medians[baseline_label]
    lines = [f"{'':34}{'events/s (median)':>18}{'range':>18}{'vs COPY':>9}"]
    for label, rounds in results.items():
        spread = f"{min(r.rate for r in rounds):.0f}-{max(r.rate for r in rounds):.0f}"
        lines.append(f"{label:34}{medians[label]:>18.0f}{spread:>18}{medians[label] / baseline:>9.0%}")
    unkeyed = medians["HTTP, batch 1000"] / baseline
    keyed = medians["HTTP, batch 1000, keyed chain"] / baseline
    lines.append(
        f"\nbatch-1000 over HTTP reaches {unkeyed:.0%} of raw COPY with the chain unkeyed, {keyed:.0%} "
        f"keyed (medians of {ROUNDS} rounds, {IN_FLIGHT} requests in flight)"
    )
    return "\n".join(lines)


def key_file(work: Path) -> Path:
    """A 32-byte random key, as a Secret would hold it."""
    path = work / "audit-hash-key"
    path.write_text(secrets.token_hex(32) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of events (default 1)")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as work,
        PostgresServer() as postgres,
        RedisServer() as redis_server,
        DataStorageProcess(
            database_url=postgres.url,
            redis_url=redis_server.url,
            log_path=Path(work) / "datastorage.log",
            extra_args=["--log-level", "warning"],
        ) as service,
        DataStorageProcess(
            database_url=postgres.url,
            redis_url=redis_server.url,
            log_path=Path(work) / "datastorage-keyed.log",
            extra_args=["--log-level", "warning", "--audit-hash-key-file", str(key_file(Path(work)))],
        ) as keyed_service,
    ):
        results = asyncio.run(measure(postgres.url, service.url, keyed_service.url, args.scale))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
