"""Request bodies parsed by orjson, with the standard library's parser where orjson refuses; plain
requests answered without FastAPI's general request handling (`FastJsonRoute`); answers written by
orjson where they are large.

Parsing is a tenth of the CPU a batch of a thousand events costs (`bench.ingest`), and orjson parses
several times faster than `json`. For valid JSON both give the same values. What orjson refuses and
`json` accepts (NaN and Infinity, lone surrogates, integers beyond 64 bits) is parsed by `json` as
before, so the validators still name the problem; a body neither accepts fails as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class _Request(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class FastJsonRoute(APIRoute):
    """A route whose JSON body is read by `_Request.json`, and, for a route that takes only its body and
    the request, answered without FastAPI's general request handling where its outcome is plain.

    FastAPI's handler (content type, body, dependencies, validation) costs a single event about 20 us
    of CPU beyond the validation itself, a tenth of what DataStorage spends on it (`bench.ingest`).
    For a body sent as `application/json` that parses and validates, FastAPI would call the endpoint
    with the validated body and the request and answer its Response: so does this, validating with
    FastAPI's own field. Any other request (another content type, no body, bad JSON, an invalid
    body) goes to FastAPI's handler, which answers it as always.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        direct = self._direct_call()

        async def handle(request: Request) -> Response:
            request = _Request(request.scope, request.receive)
            if direct is not None and (response := await direct(request)) is not None:
                return response
            return await handler(request)

        return handle

    def _direct_call(self) -> Callable[[Request], Coroutine[Any, Any, Response | None]] | None:
        """The plain case's handler, for an endpoint of a body and the request alone; None otherwise."""
        dependant, body_field = self.dependant, self.body_field
        others = (
            dependant.path_params,
            dependant.query_params,
            dependant.header_params,
            dependant.cookie_params,
            dependant.dependencies,
        )
        if (
            body_field is None
            or len(dependant.body_params) != 1
            or any(others)
            or dependant.request_param_name is None
            or dependant.response_param_name is not None
            or dependant.background_tasks_param_name is not None
        ):
            return None
        arguments = (body_field.name, dependant.request_param_name)
        endpoint = self.endpoint

        async def call(request: Request) -> Response | None:
            if request.headers.get("content-type") != "application/json":
                return None
            try:
                value = await request.json()
            except Exception:  # no body, one too large or unreadable, or not JSON: FastAPI reads it again
                return None
            body, errors = body_field.validate(value, {}, loc=("body",))
            if errors:
                return None
            response = await endpoint(**dict(zip(arguments, (body, request), strict=True)))
            if not isinstance(response, Response):
                raise TypeError(f"{endpoint.__name__} must return a Response to be called directly")
            return response

        return call


class OrjsonResponse(JSONResponse):
    """A JSONResponse written by orjson: for strings, integers, lists and UUIDs (as their text) the
    same bytes as JSONResponse's, and a thousand event ids in a tenth of the time."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
