"""PostgreSQL and Redis reached beyond loopback: at the extra addresses they are given, and only there.

A test node's Pods reach the host at the host end of the node's veth pair;
these specs stand in for that end with an address the machine has anyway.
PostgreSQL admits its role, with its password, from the address's network
only; Redis, once it listens beyond loopback, wants its password from every
client. A server given no extra address is not there at all.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import asyncpg
import pytest
import redis

from localservers import LocalServerError, PostgresServer, RedisServer

# The PostgreSQL protocol's version 3.0, as a StartupMessage gives it.
_PROTOCOL_3_0 = 196608
# A source address on loopback that no rule of pg_hba.conf admits (only 127.0.0.1/32 is).
_OUTSIDER = "127.0.0.2"
# TEST-NET-3 (RFC 5737): an address no machine of ours has.
_ABSENT_ADDRESS = "203.0.113.77"


@pytest.fixture(scope="module")
def exposed_postgres(machine_address: str) -> Iterator[PostgresServer]:
    with PostgresServer(extra_addresses=[f"{machine_address}/32"]) as server:
        yield server


@pytest.fixture(scope="module")
def exposed_redis(machine_address: str) -> Iterator[RedisServer]:
    with RedisServer(extra_addresses=[machine_address]) as server:
        yield server


def first_answer_to_a_startup(server: PostgresServer, *, at: str, source: str) -> tuple[bytes, bytes]:
    """The kind and body of PostgreSQL's first message to a client from `source` that connects at `at`.

    b"R" asks the client to authenticate (pg_hba.conf admits it, password
    still to come); b"E" turns it away, the reason in the body.
    """
    parameters = f"user\0{server.user}\0database\0{server.database}\0\0".encode()
    startup = struct.pack("!ii", 8 + len(parameters), _PROTOCOL_3_0) + parameters
    with socket.create_connection((at, server.port), timeout=10, source_address=(source, 0)) as connection:
        connection.sendall(startup)
        answers = connection.makefile("rb")
        kind = answers.read(1)
        (length,) = struct.unpack("!i", answers.read(4))
        return kind, answers.read(length - 4)


def refuses_connections(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_postgres_admits_its_role_at_the_extra_address(
    exposed_postgres: PostgresServer, machine_address: str
) -> None:
    connection = await asyncpg.connect(exposed_postgres.url_at(machine_address))
    try:
        assert await connection.fetchval("SELECT host(inet_server_addr())") == machine_address
    finally:
        await connection.close()


def test_postgres_turns_away_clients_from_outside_the_addresss_network(
    exposed_postgres: PostgresServer, machine_address: str
) -> None:
    inside = first_answer_to_a_startup(exposed_postgres, at=machine_address, source=machine_address)
    outside = first_answer_to_a_startup(exposed_postgres, at=machine_address, source=_OUTSIDER)
    assert inside[0] == b"R", inside
    assert outside[0] == b"E", outside
    assert b"no pg_hba.conf entry" in outside[1], outside


async def test_postgres_keeps_loopback_for_the_clients_on_this_machine(
    exposed_postgres: PostgresServer,
) -> None:
    connection = await asyncpg.connect(exposed_postgres.url)
    try:
        assert await connection.fetchval("SELECT host(inet_server_addr())") == "127.0.0.1"
    finally:
        await connection.close()


def test_redis_answers_at_the_extra_address_with_its_password(
    exposed_redis: RedisServer, machine_address: str
) -> None:
    url = exposed_redis.url_at(machine_address)
    assert exposed_redis.password is not None and f":{exposed_redis.password}@{machine_address}:" in url
    with redis.Redis.from_url(url, decode_responses=True) as client:
        assert client.ping()
        assert client.client_info()["laddr"] == f"{machine_address}:{exposed_redis.port}"


def test_redis_wants_its_password_from_every_client_once_beyond_loopback(
    exposed_redis: RedisServer, machine_address: str
) -> None:
    for address in (machine_address, "127.0.0.1"):
        with (
            redis.Redis(host=address, port=exposed_redis.port) as client,
            pytest.raises(redis.AuthenticationError),
        ):
            client.ping()
    with redis.Redis.from_url(exposed_redis.url) as client:
        assert client.ping()


@pytest.mark.parametrize("server_type", [PostgresServer, RedisServer], ids=["postgres", "redis"])
def test_a_server_without_extra_addresses_is_on_loopback_only(
    server_type: type[PostgresServer] | type[RedisServer], machine_address: str
) -> None:
    with server_type() as server:
        assert refuses_connections(machine_address, server.port)
        with pytest.raises(LocalServerError, match="does not listen on"):
            server.url_at(machine_address)


@pytest.mark.parametrize("server_type", [PostgresServer, RedisServer], ids=["postgres", "redis"])
def test_an_extra_address_the_machine_lacks_fails_the_start(
    server_type: type[PostgresServer] | type[RedisServer],
) -> None:
    server = server_type(extra_addresses=[_ABSENT_ADDRESS])
    with pytest.raises(LocalServerError, match=f"cannot listen on {_ABSENT_ADDRESS}"):
        server.start()
    assert not server.is_running
