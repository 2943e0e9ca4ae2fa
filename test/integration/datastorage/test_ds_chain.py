"""The hash chain per correlation_id: written by concurrent clients and by the DLQ, checked by verify-chain.

Tampering is done as the database owner would: with the immutability
trigger disabled, in one transaction, straight against PostgreSQL. Each
kind of damage must come back from `POST /api/v1/audit/verify-chain` named,
on the event where it shows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from datastorage.chain import READ_HEADS, chain_lock_key, locked_transaction
from datastorage.migrations import migrate
from datastorage.service import StartupError
from test.integration.datastorage.support import (
    BATCH_PATH,
    EVENTS_PATH,
    VERIFY_CHAIN_PATH,
    OpenStack,
    OpenStackWithServers,
    Stack,
    assert_problem,
    counter,
    dlq_length,
    make_event,
    seconds_ago,
    sql,
    waits_for_advisory_lock,
)
from test.integration.polling import eventually

CHAIN_ROWS = """
SELECT event_id::text AS event_id, event_timestamp, chain_sequence, previous_event_hash, event_hash,
       hash_algorithm
FROM audit_events WHERE correlation_id = $1 ORDER BY chain_sequence
"""
RETRIES = "datastorage_chain_write_retries_total"


def verify(client: httpx.Client, correlation_id: str) -> dict[str, Any]:
    response = client.post(VERIFY_CHAIN_PATH, json={"correlation_id": correlation_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def chain_rows(database_url: str, correlation_id: str) -> list[dict[str, Any]]:
    return sql(database_url, CHAIN_ROWS, correlation_id)


def assert_linked(rows: list[dict[str, Any]]) -> None:
    """One unbroken chain from its first event: 1, 2, 3, ... each following the hash before it."""
    assert [row["chain_sequence"] for row in rows] == list(range(1, len(rows) + 1))
    assert [row["previous_event_hash"] for row in rows] == ["", *(row["event_hash"] for row in rows[:-1])]


def tamper(database_url: str, statement: str, *arguments: Any) -> None:
    """Runs `statement` as the tables' owner can: with the immutability trigger off, in one transaction."""

    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                await connection.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_immutable")
                await connection.execute(statement, *arguments)
                await connection.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_immutable")
        finally:
            await connection.close()

    asyncio.run(run())


def store_chain(client: httpx.Client, correlation_id: str, count: int) -> list[str]:
    """`count` events of one chain, stored one request each, oldest first; their ids in chain order."""
    ids = []
    for n in range(count):
        event = make_event(correlation_id, at=seconds_ago(60 - n), event_data={"n": n})
        response = client.post(EVENTS_PATH, json=event)
        assert response.status_code == 201, response.text
        ids.append(response.json()["event_id"])
    return ids


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A Secret-like key file: one line, a secret unique to the test."""
    path = tmp_path / "audit-hash-key"
    path.write_text(f"chain-key-{uuid.uuid4().hex}\n")
    return path


def test_concurrent_writers_on_one_correlation_id_keep_one_unbroken_chain(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    # Four clients at once, 50 events each: two send them one by one, two in batches of ten.
    def client_sends(number: int) -> list[int]:
        with ds_stack.client() as client:
            events = [make_event(correlation_id, event_data={"client": number, "n": n}) for n in range(50)]
            if number % 2:
                return [
                    client.post(BATCH_PATH, json=events[i : i + 10]).status_code for i in range(0, 50, 10)
                ]
            return [client.post(EVENTS_PATH, json=event).status_code for event in events]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = [status for sent in pool.map(client_sends, range(4)) for status in sent]

    assert set(statuses) == {201}
    rows = chain_rows(ds_stack.database_url, correlation_id)
    assert len(rows) == 200
    assert_linked(rows)
    report = verify(ds_client, correlation_id)
    assert (report["is_valid"], report["total_events"], report["verified_events"]) == (True, 200, 200)
    assert report["tampered_events"] == []
    assert report["message"] == "chain intact: 200 events verified"


def test_a_chain_of_more_than_ten_thousand_events_is_verified_whole(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    for _ in range(11):
        batch = [make_event(correlation_id) for _ in range(1000)]
        # 202 too: on a loaded machine a batch may outlast the database timeout and go through the DLQ.
        assert ds_client.post(BATCH_PATH, json=batch).status_code in (201, 202)

    def all_stored() -> dict[str, Any] | None:
        report = verify(ds_client, correlation_id)
        return report if report["total_events"] == 11_000 else None

    report = eventually(all_stored, timeout=120, message="all 11,000 events were not stored")

    assert (report["is_valid"], report["total_events"], report["verified_events"]) == (True, 11_000, 11_000)


def test_repeated_events_are_linked_once(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    first, second, third = (make_event(correlation_id, event_id=str(uuid.uuid4())) for _ in range(3))
    assert ds_client.post(BATCH_PATH, json=[first, second, second]).status_code == 201

    # A client's retry of stored events, with one new event among them.
    assert ds_client.post(BATCH_PATH, json=[second, first, third]).status_code == 201

    rows = chain_rows(ds_stack.database_url, correlation_id)
    assert [row["event_id"] for row in rows] == [first["event_id"], second["event_id"], third["event_id"]]
    assert_linked(rows)
    assert verify(ds_client, correlation_id)["total_events"] == 3


def test_an_unknown_correlation_id_is_an_empty_valid_chain(
    ds_client: httpx.Client, correlation_id: str
) -> None:
    report = verify(ds_client, correlation_id)

    assert report.keys() == {
        "correlation_id",
        "is_valid",
        "total_events",
        "verified_events",
        "purged_events",
        "tampered_events",
        "message",
        "verification_time",
    }
    assert (report["correlation_id"], report["is_valid"], report["total_events"]) == (correlation_id, True, 0)
    assert report["message"] == "no chained events with this correlation_id: nothing to verify"


def modify_the_second(database_url: str, ids: list[str]) -> None:
    tamper(
        database_url,
        """UPDATE audit_events SET event_data = '{"n": 99}' WHERE event_id = $1""",
        uuid.UUID(ids[1]),
    )


def delete_the_second(database_url: str, ids: list[str]) -> None:
    sql(database_url, "DELETE FROM audit_events WHERE event_id = $1", uuid.UUID(ids[1]))


def delete_the_newest(database_url: str, ids: list[str]) -> None:
    sql(database_url, "DELETE FROM audit_events WHERE event_id = $1", uuid.UUID(ids[-1]))


def swap_the_second_and_third_timestamps(database_url: str, ids: list[str]) -> None:
    tamper(
        database_url,
        """
        UPDATE audit_events AS e SET event_timestamp = o.event_timestamp
        FROM audit_events AS o
        WHERE (e.event_id, o.event_id) IN (($1::uuid, $2::uuid), ($2::uuid, $1::uuid))
        """,
        uuid.UUID(ids[1]),
        uuid.UUID(ids[2]),
    )


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        pytest.param(
            modify_the_second,
            [(1, "chain_sequence 2: modified: its stored fields no longer hash to its event_hash")],
            id="modified-row",
        ),
        pytest.param(
            delete_the_second,
            [(2, "chain_sequence 3: 1 event missing before this one: chain_sequence 3 follows 1")],
            id="middle-deleted",
        ),
        pytest.param(
            delete_the_newest,
            [
                (
                    3,
                    "chain_sequence 4: the chain head's newest event is not stored "
                    "(deleted, or the newest events replaced)",
                )
            ],
            id="newest-deleted",
        ),
        pytest.param(
            swap_the_second_and_third_timestamps,
            [
                (1, "chain_sequence 2: modified: its stored fields no longer hash to its event_hash"),
                (2, "chain_sequence 3: modified: its stored fields no longer hash to its event_hash"),
            ],
            id="timestamps-reordered",
        ),
    ],
)
def test_each_kind_of_tampering_is_found_and_named_on_its_event(
    ds_stack: Stack,
    ds_client: httpx.Client,
    correlation_id: str,
    damage: Callable[[str, list[str]], None],
    found: list[tuple[int, str]],
) -> None:
    ids = store_chain(ds_client, correlation_id, 4)
    assert verify(ds_client, correlation_id)["is_valid"]

    damage(ds_stack.database_url, ids)
    report = verify(ds_client, correlation_id)

    assert report["is_valid"] is False
    assert report["message"].startswith("chain broken: ")
    listed = [(tampered["event_id"], tampered["message"]) for tampered in report["tampered_events"]]
    assert listed == [(ids[index], message) for index, message in found]


def test_a_modified_event_is_reported_with_both_hashes(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    ids = store_chain(ds_client, correlation_id, 3)
    before = chain_rows(ds_stack.database_url, correlation_id)

    modify_the_second(ds_stack.database_url, ids)
    [tampered] = verify(ds_client, correlation_id)["tampered_events"]

    assert tampered["actual_hash"] == before[1]["event_hash"]
    assert tampered["previous_hash"] == before[0]["event_hash"]
    assert len(tampered["expected_hash"]) == 64
    assert tampered["expected_hash"] != tampered["actual_hash"]


def test_stored_events_and_chain_heads_refuse_updates_but_legal_hold_columns_change(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    [event_id] = store_chain(ds_client, correlation_id, 1)
    url = ds_stack.database_url

    for change in ("event_type = 'x'", "event_hash = event_hash", "chain_sequence = 7"):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="is immutable"):
            sql(url, f"UPDATE audit_events SET {change} WHERE event_id = $1", uuid.UUID(event_id))
    for change in ("event_count = 0", "last_event_hash = 'x'", "purged_through_hash = 'x'"):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="only moves forward"):
            sql(url, f"UPDATE audit_chain_heads SET {change} WHERE correlation_id = $1", correlation_id)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="cannot be deleted"):
        sql(url, "DELETE FROM audit_chain_heads WHERE correlation_id = $1", correlation_id)

    sql(
        url,
        "UPDATE audit_events SET legal_hold = true, legal_hold_reason = 'case', legal_hold_placed_by = 'qa', "
        "legal_hold_placed_at = now() WHERE event_id = $1",
        uuid.UUID(event_id),
    )
    assert verify(ds_client, correlation_id)["is_valid"]


def test_a_deadlock_over_two_chains_is_retried_with_fresh_hashes(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    chains = sorted([f"{correlation_id}-a", f"{correlation_id}-b"], key=chain_lock_key)
    first, second = (chain_lock_key(chain) for chain in chains)
    before = counter(ds_client, RETRIES, reason="40P01")

    with asyncio.Runner() as runner, concurrent.futures.ThreadPoolExecutor(1) as pool:
        # Another writer holds the second chain, so DataStorage, holding the first, waits for it...
        other = runner.run(asyncpg.connect(ds_stack.database_url))
        runner.run(other.execute("BEGIN"))
        runner.run(other.execute("SELECT pg_advisory_xact_lock($1)", second))
        batch = [make_event(chain) for chain in chains]
        answer = pool.submit(ds_client.post, BATCH_PATH, json=batch)
        eventually(
            lambda: waits_for_advisory_lock(ds_stack.database_url, second),
            message="DataStorage waits for the lock",
        )
        # ... and then wants the first: PostgreSQL ends DataStorage's transaction (40P01), which tries again.
        runner.run(other.execute("SELECT pg_advisory_xact_lock($1)", first))
        runner.run(other.execute("COMMIT"))
        runner.run(other.close())
        assert answer.result().status_code == 201

    assert counter(ds_client, RETRIES, reason="40P01") == before + 1
    for chain in chains:
        assert verify(ds_client, chain)["is_valid"]
        assert_linked(chain_rows(ds_stack.database_url, chain))


def test_a_locked_transaction_holds_its_chains_from_its_start_and_ends_as_a_transaction_does(
    fresh_database: str,
) -> None:
    """BEGIN and the locks go in one round trip (`chain.locked_transaction`); it commits at the end of
    its block, and rolls back when the block raises or the locks cannot be taken, leaving no
    transaction open on the connection."""
    asyncio.run(migrate(fresh_database))
    held = "SELECT NOT pg_try_advisory_xact_lock($1)"  # taken by another session?
    insert = "INSERT INTO written (name) VALUES ($1)"

    async def run() -> None:
        connection, other = await asyncpg.connect(fresh_database), await asyncpg.connect(fresh_database)
        try:
            await connection.execute("CREATE TABLE written (name text)")
            async with locked_transaction(connection, ["rr-1", "rr-2"]):
                assert connection.is_in_transaction()
                assert [await other.fetchval(held, chain_lock_key(c)) for c in ("rr-1", "rr-2", "rr-3")] == [
                    True,
                    True,
                    False,
                ]
                await connection.execute(insert, "committed")
            assert not connection.is_in_transaction()
            assert not await other.fetchval(held, chain_lock_key("rr-1"))

            with pytest.raises(RuntimeError, match="in the block"):
                async with locked_transaction(connection, ["rr-1"]):
                    await connection.execute(insert, "rolled-back")
                    raise RuntimeError("in the block")
            assert not connection.is_in_transaction()

            # The locks cannot be taken: another session holds one, and this one waits 50 ms at most.
            await connection.execute("SET lock_timeout = '50ms'")
            async with other.transaction():
                await other.execute("SELECT pg_advisory_xact_lock($1)", chain_lock_key("rr-2"))
                with pytest.raises(asyncpg.LockNotAvailableError):
                    async with locked_transaction(connection, ["rr-1", "rr-2"]):
                        raise AssertionError("the block never runs")
            assert not connection.is_in_transaction()
            assert [row["name"] for row in await connection.fetch("SELECT name FROM written")] == [
                "committed"
            ]
        finally:
            await connection.close()
            await other.close()

    asyncio.run(run())


def test_chain_heads_are_read_by_key_however_many_chains_were_added_since_the_statement_was_prepared(
    fresh_database: str,
) -> None:
    """A pooled connection prepares the read of the heads once, on a young table, and keeps it while
    the table gains a row for every chain ever written: each read must still look its chains up."""
    asyncio.run(migrate(fresh_database))
    wanted = ",".join(f"rr-{n}" for n in range(1, 126))
    explain = f"EXPLAIN (FORMAT JSON) EXECUTE read_heads ('{{{wanted}}}')"

    async def plan_when_grown() -> str:
        connection = await asyncpg.connect(fresh_database)
        try:
            await connection.execute(f"PREPARE read_heads (text[]) AS {READ_HEADS}")
            for _ in range(6):  # past the five custom plans after which PostgreSQL may settle on one
                await connection.fetchval(explain)
            await connection.execute(
                "INSERT INTO audit_chain_heads (correlation_id, event_count, last_event_hash, last_event_id, "
                "last_event_timestamp) SELECT 'rr-' || n, 1, repeat('a', 64), gen_random_uuid(), now() "
                "FROM generate_series(1, 20000) AS n"
            )
            plan: str = await connection.fetchval(explain)
            return plan
        finally:
            await connection.close()

    plan = asyncio.run(plan_when_grown())
    assert "audit_chain_heads_pkey" in plan
    assert "Seq Scan" not in plan


def test_events_stored_late_from_the_dlq_link_to_the_chain_as_it_then_is(
    stack_with_own_servers: OpenStackWithServers, correlation_id: str
) -> None:
    with stack_with_own_servers() as stack, stack.client() as client:
        store_chain(client, correlation_id, 2)
        stack.postgres.stop(keep_data=True)
        # Older than the events already stored: the chain's order is storage order, not event time.
        late = [make_event(correlation_id, at=seconds_ago(600 + n)) for n in range(3)]
        queued = client.post(BATCH_PATH, json=late)
        assert queued.status_code == 202
        stack.postgres.start()
        eventually(lambda: dlq_length(stack.redis_url) == 0, timeout=30, message="the DLQ drains")
        store_chain(client, correlation_id, 1)

        report = verify(client, correlation_id)
        rows = chain_rows(stack.database_url, correlation_id)

    assert (report["is_valid"], report["total_events"]) == (True, 6)
    assert_linked(rows)
    assert [row["event_id"] for row in rows[2:5]] == queued.json()["event_ids"]
    assert all(row["event_timestamp"] < rows[1]["event_timestamp"] for row in rows[2:5])


def test_with_a_key_events_are_hmac_hashed_and_the_key_is_never_logged(
    stack_on_shared_servers: OpenStack, key_file: Path, correlation_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = key_file.read_text().strip()
    # The host's levels decide what an embedded instance logs: let it log everything it does at start.
    caplog.set_level(logging.DEBUG, logger="datastorage")
    with stack_on_shared_servers(audit_hash_key_file=key_file) as stack, stack.client() as client:
        store_chain(client, correlation_id, 3)
        report = verify(client, correlation_id)
        # An error on the way (a refused event) must not show the key either.
        assert client.post(EVENTS_PATH, json=make_event(correlation_id, event_data=[1])).status_code == 400
        rows = chain_rows(stack.database_url, correlation_id)

    assert {row["hash_algorithm"] for row in rows} == {"hmac-sha256"}
    assert (report["is_valid"], report["verified_events"]) == (True, 3)
    log = stack.log_path.read_text()
    assert "DataStorage started" in log
    assert secret not in log


def test_without_a_key_events_are_sha256_hashed(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    store_chain(ds_client, correlation_id, 2)

    assert {row["hash_algorithm"] for row in chain_rows(ds_stack.database_url, correlation_id)} == {"sha256"}


def test_keyed_events_without_a_configured_key_are_a_500_problem(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    [event_id] = store_chain(ds_client, correlation_id, 1)
    tamper(
        ds_stack.database_url,
        "UPDATE audit_events SET hash_algorithm = 'hmac-sha256' WHERE event_id = $1",
        uuid.UUID(event_id),
    )

    response = ds_client.post(VERIFY_CHAIN_PATH, json={"correlation_id": correlation_id})

    assert_problem(response, 500, "hash-key-unavailable", "has no hash key (DATASTORAGE_AUDIT_HASH_KEY_FILE)")


def test_an_unreadable_key_file_stops_the_start_naming_the_file(
    stack_on_shared_servers: OpenStack, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-key"

    with (
        pytest.raises(StartupError, match=f"cannot read the audit hash key file {missing}"),
        stack_on_shared_servers(audit_hash_key_file=missing),
    ):
        pass
