"""Refuses request bodies over the configured size with 413, before they are read into memory.

A declared `Content-Length` over the limit is answered at once. A body sent
without one (chunked) is counted as it arrives, and the read that crosses the
limit raises an HTTP 413 that the app's error handlers render like any other
problem. Either way the answer is `application/problem+json`.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datastorage.problems import problem


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            response = problem(
                Request(scope),
                status=413,
                code="payload-too-large",
                detail=f"request body is larger than {self._max_body_bytes} bytes",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body_bytes:
                    raise HTTPException(413)
            return message

        await self._app(scope, counting_receive, send)
