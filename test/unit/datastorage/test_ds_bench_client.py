"""The light client of `bench.ingest`: one keep-alive connection, every answer read whole, any status but
201 an error, so that a single-event figure counts only stored events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bench.ingest import KeepAliveClient


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server on one connection answering 201, 201, then 400, each with a body; its URL and what it
    read (each request whole: head and body)."""
    received: list[bytes] = []
    statuses = iter([b"201 Created", b"201 Created", b"400 Bad Request"])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client closes the connection
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                received.append(head + await reader.readexactly(length))
                body = b'{"detail": "' + b"x" * 70_000 + b'"}'  # larger than one read
                writer.write(
                    b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (next(statuses), len(body), body)
                )
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield f"http://127.0.0.1:{port}", received


async def test_each_answer_is_read_whole_and_any_but_201_raises(server: tuple[str, list[bytes]]) -> None:
    url, received = server
    client = await KeepAliveClient.connect(url)
    try:
        await client.post_created("/events", b'{"n": 1}')
        await client.post_created("/events", b'{"n": 2}')
        with pytest.raises(RuntimeError, match="400 Bad Request"):
            await client.post_created("/events", b'{"n": 3}')
    finally:
        await client.close()

    assert [request.split(b"\r\n\r\n")[1] for request in received] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert all(request.startswith(b"POST /events HTTP/1.1\r\n") for request in received)
