"""Composes the DataStorage ASGI app: routes, lifespan, error answers, body limit, OpenAPI document.

`create_app(settings, clock=...)` is the only constructor. Its lifespan opens
the service (Redis, migrations, pool, partitions, background tasks) and
closes it; requests reach it through the lifespan state. The injected clock
is the app's only notion of "now", so tests can cross a month boundary.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final, TypedDict

from fastapi import FastAPI

from datastorage.api import audit, chain, health, legal_hold
from datastorage.bodylimit import BodySizeLimit
from datastorage.config import Settings
from datastorage.metrics import Metrics
from datastorage.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from datastorage.ratelimit import RateLimit, is_unlimited
from datastorage.schemas import RFC7807Problem
from datastorage.service import Service, StartupError, open_service
from datastorage.timestamps import Clock, utc_now

API_VERSION: Final = "1.0.0"
_PROBLEM_REF: Final = {"$ref": "#/components/schemas/RFC7807Problem"}
_PROBLEM_DESCRIPTIONS: Final = {
    "400": "invalid request (RFC 7807)",
    "413": "request body too large (RFC 7807)",
    "429": "the client is over its rate limit (when limits are on); retry after Retry-After (RFC 7807)",
    "500": "neither PostgreSQL nor the DLQ took the events; retry (RFC 7807)",
    "503": "PostgreSQL unavailable (RFC 7807)",
}


class LifespanState(TypedDict):
    service: Service


class DataStorageApp(FastAPI):
    """FastAPI with the OpenAPI document adjusted to what the handlers really answer."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        document = super().openapi()
        for path, path_item in document.get("paths", {}).items():
            for method, operation in path_item.items():
                _document_problems(method, operation, rate_limited=not is_unlimited(path))
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["RFC7807Problem"] = RFC7807Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        self.openapi_schema = document
        return document


def _document_problems(method: str, operation: dict[str, Any], *, rate_limited: bool) -> None:
    """Replaces FastAPI's 422 with the problem answers each kind of operation can give."""
    responses = operation.setdefault("responses", {})
    had_validation = responses.pop("422", None) is not None
    codes = []
    if had_validation:
        codes.append("400")
    if method == "post":
        codes += ["413", "500"]
    if operation.get("operationId") in ("queryAuditEvents", "verifyAuditChain"):
        codes.append("503")
    if rate_limited:
        codes.append("429")
    for code in codes:
        responses[code] = {
            # A route that says what a code means for it keeps its own description.
            "description": responses.get(code, {}).get("description", _PROBLEM_DESCRIPTIONS[code]),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
        }


def create_app(settings: Settings, *, clock: Clock = utc_now) -> DataStorageApp:
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[LifespanState]:
        try:
            async with open_service(settings, clock=clock, metrics=metrics) as service:
                yield {"service": service}
        except StartupError as error:
            # Kept for the runner: uvicorn only logs lifespan failures.
            app.state.startup_error = error
            raise

    app = DataStorageApp(
        title="DataStorage audit API",
        version=API_VERSION,
        description="Audit events of kubernaut services: PostgreSQL storage, Redis dead-letter queue.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # Off: DataStorage reports through Prometheus and its log, and FastAPI's OpenTelemetry hooks,
        # idle without a provider, still cost every request about 8 us to find that out.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.metrics = metrics
    app.state.startup_error = None
    app.include_router(audit.router)
    app.include_router(chain.router)
    app.include_router(legal_hold.router)
    app.include_router(health.router)
    install_problem_handlers(app, metrics)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    if settings.rate_limit.enabled:

        def route_templates() -> list[str]:
            return [*app.openapi()["paths"], str(app.openapi_url)]

        # Added last, so outermost: a refused request is never read, validated or queried for.
        app.add_middleware(
            RateLimit, settings=settings.rate_limit, metrics=metrics, route_templates=route_templates
        )
    return app
