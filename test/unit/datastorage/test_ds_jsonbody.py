"""`FastJsonRoute`: a route of a body and the request answers plain requests itself, and every request as
FastAPI's own handling would."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from datastorage.api.jsonbody import FastJsonRoute, OrjsonResponse


class Event(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str
    count: int = 0


class FastApiOnly(FastJsonRoute):
    """FastJsonRoute with FastAPI's handler for every request: the answers to match."""

    def _direct_call(self) -> None:
        return None


def app_with(route_class: type[APIRoute]) -> FastAPI:
    router = APIRouter(route_class=route_class)

    @router.post("/events", status_code=201)
    async def create(event: Event, request: Request) -> JSONResponse:
        return JSONResponse(
            {"name": event.name, "count": event.count, "path": request.url.path}, status_code=201
        )

    app = FastAPI()
    app.include_router(router)
    return app


@pytest.fixture
def fastapi_handled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of the requests FastAPI's own handler answered."""
    handled: list[str] = []
    original = APIRoute.get_route_handler

    def counting(route: APIRoute) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = original(route)

        async def handle(request: Request) -> Response:
            handled.append(request.url.path)
            return await handler(request)

        return handle

    monkeypatch.setattr(APIRoute, "get_route_handler", counting)
    yield handled


REQUESTS = [
    pytest.param("application/json", b'{"name": "a", "count": 2}', id="plain"),
    pytest.param("application/json", b'{"name": "a", "count": "2"}', id="invalid"),
    pytest.param("application/json", b'{"name": "a",', id="not-json"),
    pytest.param("application/json", b"", id="no-body"),
    pytest.param("application/json", b"null", id="null"),
    pytest.param("application/json; charset=utf-8", b'{"name": "a"}', id="charset"),
    pytest.param("text/plain", b'{"name": "a"}', id="not-json-content-type"),
    pytest.param(None, b'{"name": "a"}', id="no-content-type"),
    pytest.param("application/json", b"[1]", id="array"),
]


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(("content_type", "body"), REQUESTS)
async def test_every_request_gets_fastapis_answer(content_type: str | None, body: bytes) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with client_of(app_with(FastJsonRoute)) as direct, client_of(app_with(FastApiOnly)) as general:
        answers = [
            await client.post("/events", content=body, headers=headers) for client in (direct, general)
        ]

    assert answers[0].status_code == answers[1].status_code
    assert answers[0].headers["content-type"] == answers[1].headers["content-type"]
    assert answers[0].content == answers[1].content


async def test_a_plain_request_is_answered_without_fastapis_handler_and_others_with_it(
    fastapi_handled: list[str],
) -> None:
    async with client_of(app_with(FastJsonRoute)) as client:
        created = await client.post("/events", json={"name": "a", "count": 2})
        refused = await client.post("/events", json={"name": 1})

    assert (created.status_code, created.json()) == (201, {"name": "a", "count": 2, "path": "/events"})
    assert refused.status_code == 422
    assert fastapi_handled == ["/events"]


def test_an_orjson_answer_has_the_bytes_of_a_jsonresponse() -> None:
    event_id = uuid.uuid4()
    content = {"status": "accepted", "message": "1 audit events créés", "event_ids": [str(event_id)], "n": 2}

    assert OrjsonResponse(content).body == JSONResponse(content).body
    assert OrjsonResponse({**content, "event_ids": [event_id]}).body == JSONResponse(content).body
