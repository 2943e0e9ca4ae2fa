"""The suite's private PostgreSQL: a test's database is dropped whoever is still in it.

Every DataStorage spec takes a fresh database and drops it `WITH (FORCE)` at the end. A session of
another role in it, such as an autovacuum worker that happens to be vacuuming it, may only be ended
by a member of `pg_signal_backend`; without that the drop failed, now and then, under load.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg

from localservers import PostgresServer


async def drop_with_another_roles_session_in_it(server: PostgresServer) -> bool:
    url = urlsplit(server.url)
    superuser = await asyncpg.connect(
        host=str(server.socket_dir), port=url.port, user="postgres", database="postgres"
    )
    role = await asyncpg.connect(server.url)
    try:
        await role.execute('CREATE DATABASE "left_open"')
        await superuser.execute("CREATE ROLE other_role LOGIN PASSWORD 'other'")
        session = url._replace(netloc=f"other_role:other@{url.hostname}:{url.port}", path="/left_open")
        left_open = await asyncpg.connect(session.geturl())
        try:
            await role.execute('DROP DATABASE "left_open" WITH (FORCE)')
        finally:
            left_open.terminate()  # the server ended it already (or the drop failed): no goodbye to send
        gone = await role.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'left_open'")
        return bool(gone == 0)
    finally:
        await role.close()
        await superuser.close()


def test_the_clients_role_drops_a_database_with_another_roles_session_in_it() -> None:
    with PostgresServer() as server:
        assert asyncio.run(drop_with_another_roles_session_in_it(server))
