"""DataStorage ingest throughput over HTTP, next to raw asyncpg COPY of the same rows.

`python -m bench.ingest` starts its own PostgreSQL, Redis and five
DataStorages (as processes, so client and server do not share an
interpreter): three in the configuration of before (one transaction per
single event, `--group-commit-max-events 1`) with the h11 parser on asyncio's
loop, with httptools on asyncio's loop, and with httptools on uvloop; one as
configured by default (httptools, uvloop, group commit); and one like it that
hashes the chain with an HMAC key. Then it:

1. copies the batch-1000 rows straight into `audit_events` with asyncpg's
   `copy_records_to_table`, 1000 rows per call: the raw baseline, with no
   hash chain;
2. posts single events from 8 clients at once (each one request at a time,
   as kubernaut's services send them) to each configuration, into an empty
   table: one row per option added, the last with httpx as the client
   instead of the light one;
3. posts events through the default DataStorage in batches of 100 and 1000,
   with a few requests in flight;
4. posts the batch-1000 events again to the keyed DataStorage, and once more
   to the default one with one request at a time (the table emptied before
   each);

in three interleaved rounds, and prints the median events/s of each (with
the range) and the ratio to raw COPY. Eight events share a correlation_id, as
a SignalProcessing's do. Medians of interleaved rounds keep a busy shared
machine from deciding the ratio. Bodies are encoded before timing starts, so
the client's JSON work is not counted.

Clients: httpx costs about a millisecond of CPU per request, as much as
DataStorage spends on a single event, and shares the machine's cores with it
and with PostgreSQL; measured with it, a single-event figure is half the
client's. Unless a row says httpx, requests go through `KeepAliveClient`: a
keep-alive HTTP/1.1 connection on asyncio streams per client, which reads
every answer whole and checks it is 201, at a few percent of httpx's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import asyncpg
import httpx
import uvloop

from datastorage.repository import STORED_COLUMNS, row_values
from datastorage.schemas import AuditEventRequest
from datastorage.timestamps import format_timestamp
from devstack.datastorage_process import DataStorageProcess
from localservers import PostgresServer, RedisServer

BATCH_PATH: Final = "/api/v1/audit/events/batch"
EVENTS_PATH: Final = "/api/v1/audit/events"
# events per batch size and round: enough for a steady rate, small enough for a short run
EVENTS_PER_SIZE: Final = {1: 4_000, 100: 10_000, 1000: 20_000}
ROUNDS: Final = 3
IN_FLIGHT: Final = 4
# Single events come from this many clients at once, each sending one request at a time.
SINGLE_EVENT_CLIENTS: Final = 8
ONE_AT_A_TIME: Final = "HTTP, batch 1000, 1 in flight"
WARM_UP_REQUESTS: Final = 8

Client = Literal["light", "httpx"]


@dataclass(frozen=True)
class Option:
    """A DataStorage configuration the single-event rows compare: its label and command-line flags."""

    label: str
    flags: tuple[str, ...]


BEFORE: Final = ("--group-commit-max-events", "1")
# Each adds one change to the one before; the last is the default configuration.
SINGLE_EVENT_OPTIONS: Final = (
    Option("h11, asyncio loop, a transaction each", ("--http", "h11", "--event-loop", "asyncio", *BEFORE)),
    Option("httptools, asyncio loop, a transaction each", ("--event-loop", "asyncio", *BEFORE)),
    Option("httptools, uvloop, a transaction each", BEFORE),
    Option("httptools, uvloop, group commit", ()),
)


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


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection, one request at a time: a bench client that costs the
    server's machine little. Every answer is read whole (Content-Length); any status but 201 raises."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host.encode()

    @classmethod
    async def connect(cls, url: str) -> KeepAliveClient:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, parts.netloc)

    async def post_created(self, path: str, body: bytes) -> None:
        self._writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), self._host, len(body))
        )
        self._writer.write(body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
        answer = await self._reader.readexactly(int(headers["content-length"]))
        if status_line.split(" ", 2)[1] != "201":
            raise RuntimeError(f"DataStorage answered {status_line}: {answer[:300]!r}")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def through_http(
    url: str,
    events: Sequence[dict[str, Any]],
    size: int,
    in_flight: int,
    *,
    label: str,
    client: Client = "httpx",
) -> Result:
    """Posts the events in requests of `size` (1: one event each, to the single-event endpoint) from
    `in_flight` clients at once, each one request at a time."""
    path = EVENTS_PATH if size == 1 else BATCH_PATH
    bodies = [json.dumps(batch[0] if size == 1 else batch).encode() for batch in chunks(events, size)]
    warm_up = [json.dumps(batch).encode() for batch in chunks(make_events(WARM_UP_REQUESTS, "warm-up"), 1)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    if client == "light":
        connections = [await KeepAliveClient.connect(url) for _ in range(in_flight)]
        try:
            for body in warm_up:
                await connections[0].post_created(BATCH_PATH, body)

            async def light_sender(connection: KeepAliveClient) -> None:
                while not queue.empty():
                    await connection.post_created(path, queue.get_nowait())

            started = time.perf_counter()
            await asyncio.gather(*(light_sender(connection) for connection in connections))
            elapsed = time.perf_counter() - started
        finally:
            for connection in connections:
                await connection.close()
        return Result(label, len(events), elapsed)
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        for body in warm_up:
            (await http.post(BATCH_PATH, content=body, headers=headers)).raise_for_status()

        async def sender() -> None:
            while not queue.empty():
                response = await http.post(path, content=queue.get_nowait(), headers=headers)
                if response.status_code != 201:
                    raise RuntimeError(f"DataStorage answered {response.status_code}: {response.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    return Result(label, len(events), elapsed)


@dataclass(frozen=True)
class Servers:
    """The URLs of the DataStorages: one per single-event option, and the keyed one."""

    single_event: dict[Option, str]
    keyed: str

    @property
    def default(self) -> str:
        return self.single_event[SINGLE_EVENT_OPTIONS[-1]]


async def measure(database_url: str, servers: Servers, scale: float) -> dict[str, list[Result]]:
    sizes = {size: max(size, int(count * scale) // size * size) for size, count in EVENTS_PER_SIZE.items()}
    results: dict[str, list[Result]] = {}
    single = f"HTTP, batch 1, {SINGLE_EVENT_CLIENTS} clients"
    for round_number in range(ROUNDS):
        thousand = make_events(sizes[1000], f"r{round_number}-b1000")
        measured = [await raw_copy(database_url, thousand, 1000)]
        for option, url in servers.single_event.items():
            events = make_events(sizes[1], f"r{round_number}-{len(measured)}")
            await empty_table(database_url)  # each option into an empty table, as the others
            measured.append(
                await through_http(
                    url, events, 1, SINGLE_EVENT_CLIENTS, label=f"{single}: {option.label}", client="light"
                )
            )
        events = make_events(sizes[1], f"r{round_number}-httpx")
        await empty_table(database_url)
        measured.append(
            await through_http(
                servers.default, events, 1, SINGLE_EVENT_CLIENTS, label=f"{single}: as above, httpx client"
            )
        )
        events = make_events(sizes[100], f"r{round_number}-b100")
        measured.append(await through_http(servers.default, events, 100, IN_FLIGHT, label="HTTP, batch 100"))
        measured.append(
            await through_http(servers.default, thousand, 1000, IN_FLIGHT, label="HTTP, batch 1000")
        )
        # The same rows into an empty table again: with the key, then one request at a time, as a
        # lone client sends them.
        await empty_table(database_url)
        measured.append(
            await through_http(
                servers.keyed, thousand, 1000, IN_FLIGHT, label="HTTP, batch 1000, keyed chain"
            )
        )
        await empty_table(database_url)
        measured.append(await through_http(servers.default, thousand, 1000, 1, label=ONE_AT_A_TIME))
        for result in measured:
            results.setdefault(result.label, []).append(result)
    return results


def report(results: dict[str, list[Result]]) -> str:
    medians = {label: statistics.median(r.rate for r in rounds) for label, rounds in results.items()}
    baseline_label = next(iter(results))
    baseline = medians[baseline_label]
    width = max(map(len, results)) + 2
    lines = [f"{'':{width}}{'events/s (median)':>18}{'range':>18}{'vs COPY':>9}"]
    for label, rounds in results.items():
        spread = f"{min(r.rate for r in rounds):.0f}-{max(r.rate for r in rounds):.0f}"
        lines.append(f"{label:{width}}{medians[label]:>18.0f}{spread:>18}{medians[label] / baseline:>9.0%}")
    single = [label for label in results if label.startswith("HTTP, batch 1,")]
    before, now = medians[single[0]], medians[single[len(SINGLE_EVENT_OPTIONS) - 1]]
    unkeyed = medians["HTTP, batch 1000"] / baseline
    keyed = medians["HTTP, batch 1000, keyed chain"] / baseline
    lines.append(
        f"\nsingle events from {SINGLE_EVENT_CLIENTS} clients: {now:.0f}/s as configured by default, "
        f"{now / before:.1f} times the {before:.0f}/s of the first configuration (the light client for both)"
        f"\nbatch-1000 over HTTP reaches {unkeyed:.0%} of raw COPY with the chain unkeyed, {keyed:.0%} "
        f"keyed ({IN_FLIGHT} requests in flight), {medians[ONE_AT_A_TIME] / baseline:.0%} one request "
        f"at a time (medians of {ROUNDS} rounds)"
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
        contextlib.ExitStack() as processes,
    ):

        def datastorage(name: str, *flags: str) -> str:
            process = DataStorageProcess(
                database_url=postgres.url,
                redis_url=redis_server.url,
                log_path=Path(work) / f"datastorage-{name}.log",
                extra_args=["--log-level", "warning", *flags],
            )
            return processes.enter_context(process).url

        servers = Servers(
            single_event={
                option: datastorage(str(number), *option.flags)
                for number, option in enumerate(SINGLE_EVENT_OPTIONS)
            },
            keyed=datastorage("keyed", "--audit-hash-key-file", str(key_file(Path(work)))),
        )
        # The client's loop is uvloop, as the server's: the client's own overhead then weighs less.
        results = uvloop.run(measure(postgres.url, servers, args.scale))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
