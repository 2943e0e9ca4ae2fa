"""Health, readiness, liveness and Prometheus metrics, as in kubernaut's DataStorage.

`/health` answers for PostgreSQL only (as the original does); readiness
also checks Redis, since without it PostgreSQL outages would lose events, and
turns 503 as soon as shutdown begins. Readiness answers on two paths, one
handler: `/health/ready`, and `/readyz`, where kubernaut's probes look.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from datastorage.api.dependencies import ServiceDep
from datastorage.errors import DataStorageError
from datastorage.schemas import HealthResponse
from datastorage.service import Service

router = APIRouter(tags=["health"])

PING_TIMEOUT: Final = 2.0
_UNHEALTHY: Final[dict[int | str, dict[str, Any]]] = {
    503: {"model": HealthResponse, "description": "not healthy"}
}


@router.get("/health", response_model=HealthResponse, responses=_UNHEALTHY)
async def health(service: ServiceDep) -> JSONResponse:
    error = await _database_error(service)
    if error is not None:
        return JSONResponse(
            {"status": "unhealthy", "database": "unreachable", "error": error}, status_code=503
        )
    return JSONResponse({"status": "healthy", "database": "connected"})


@router.get("/health/ready", response_model=HealthResponse, responses=_UNHEALTHY)
@router.get("/readyz", response_model=HealthResponse, responses=_UNHEALTHY)
async def ready(service: ServiceDep) -> JSONResponse:
    if service.shutting_down:
        return JSONResponse({"status": "not_ready", "reason": "shutting_down"}, status_code=503)
    database_error = await _database_error(service)
    if database_error is not None:
        body = {"status": "not_ready", "reason": "database_unreachable", "error": database_error}
        return JSONResponse(body, status_code=503)
    redis_error = await _redis_error(service)
    if redis_error is not None:
        return JSONResponse(
            {"status": "not_ready", "reason": "redis_unreachable", "error": redis_error}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@router.get("/health/live", response_model=HealthResponse)
async def live() -> JSONResponse:
    return JSONResponse({"status": "alive"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus"}
    },
)
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _database_error(service: Service) -> str | None:
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            await service.store.ping()
    except (DataStorageError, TimeoutError) as error:
        return str(error) or "PostgreSQL did not answer in time"
    return None


async def _redis_error(service: Service) -> str | None:
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            await service.redis.ping()
    except (RedisError, OSError) as error:
        return str(error) or "Redis did not answer in time"
    return None
