"""RFC 7807 answers for every error, decided once at the edge of the app.

Domain errors, FastAPI's request validation errors (which would otherwise be
422), Starlette's HTTP errors (404, 405, 413, unreadable bodies) and anything
unexpected all leave as `application/problem+json` with `type`
`https://kubernaut.ai/problems/<code>`, `title`, `status`, `detail` and
`instance`; batch errors add the `index` of the bad element and validation
errors a `field_errors` map. Validation details name the field and, for
batches, the element, so a client can fix its request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from datastorage.errors import (
    DataStorageError,
    HashKeyUnavailable,
    InvalidInput,
    MalformedRequest,
    NotFound,
    NothingAccepted,
    StorageUnavailable,
)
from datastorage.metrics import Metrics
from datastorage.schemas import NO_NUL_PATTERN

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE: Final = "https://kubernaut.ai/problems/"
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_TITLES: Final = {
    "validation-error": "Validation Error",
    "invalid-request": "Invalid Request",
    "invalid-event-data": "Invalid Event Data",
    "database-error": "Database Error",
    "service-unavailable": "Service Unavailable",
    "payload-too-large": "Payload Too Large",
}
_HTTP_CODES: Final = {
    400: "invalid-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str,
    index: int | None = None,
    field_errors: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": _TITLES.get(code) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if index is not None:
        body["index"] = index
    if field_errors:
        body["field_errors"] = dict(field_errors)
    return ProblemResponse(body, status_code=status, headers=dict(headers) if headers else None)


def install_problem_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def on_domain_error(request: Request, error: Exception) -> ProblemResponse:
        assert isinstance(error, DataStorageError)
        if isinstance(error, InvalidInput):
            field = next(iter(error.field_errors), "body")
            metrics.validation_failures.labels(field=field, reason=error.code).inc()
            return problem(
                request,
                status=400,
                code=error.code,
                detail=error.detail,
                index=error.index,
                field_errors=error.field_errors,
            )
        if isinstance(error, MalformedRequest):
            return problem(request, status=400, code=error.code, detail=error.detail)
        if isinstance(error, NotFound):
            return problem(request, status=404, code=error.code, detail=error.detail)
        if isinstance(error, NothingAccepted | HashKeyUnavailable):
            return problem(request, status=500, code=error.code, detail=error.detail)
        if isinstance(error, StorageUnavailable):
            return problem(
                request,
                status=503,
                code="service-unavailable",
                detail=error.detail,
                headers={"Retry-After": "5"},
            )
        log.error("unexpected domain error", exc_info=error)
        return problem(request, status=500, code=error.code, detail=error.detail)

    async def on_invalid_request(request: Request, error: Exception) -> ProblemResponse:
        assert isinstance(error, RequestValidationError)
        invalid = describe_validation_errors(error.errors())
        metrics.validation_failures.labels(field=invalid.field, reason=invalid.reason).inc()
        return problem(
            request,
            status=400,
            code=invalid.code,
            detail=invalid.detail,
            index=invalid.index,
            field_errors=invalid.field_errors,
        )

    async def on_http_error(request: Request, error: Exception) -> ProblemResponse:
        assert isinstance(error, StarletteHTTPException)
        status = error.status_code
        headers = error.headers
        if status == 413:
            detail = f"request body is larger than {request.app.state.max_body_bytes} bytes"
        elif status == 404:
            detail = f"no such resource: {request.method} {request.url.path}"
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            headers = {"Allow": ", ".join(_allowed_methods(request))}
        else:
            detail = str(error.detail)
        code = _HTTP_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "-")
        return problem(request, status=status, code=code, detail=detail, headers=headers)

    async def on_unexpected(request: Request, error: Exception) -> ProblemResponse:
        log.error("unhandled error", exc_info=error, extra={"path": request.url.path})
        return problem(
            request, status=500, code="internal-error", detail="unexpected error; see the server log"
        )

    app.add_exception_handler(DataStorageError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed_methods(request: Request) -> list[str]:
    """Methods documented for this path; Starlette's 405 names only the first matching route's."""
    operations = request.app.openapi().get("paths", {}).get(request.url.path, {})
    return sorted(method.upper() for method in operations)


@dataclass(frozen=True, slots=True)
class InvalidRequestDescription:
    """The first validation error in words, plus a field map of all of them."""

    code: str
    detail: str
    field: str
    reason: str
    index: int | None
    field_errors: dict[str, str]


def describe_validation_errors(errors: Sequence[Any]) -> InvalidRequestDescription:
    """Turns pydantic/FastAPI error dicts (loc, type, msg, input) into one client-facing description."""
    first = errors[0]
    location = tuple(first.get("loc", ()))
    reason = str(first.get("type", "invalid"))
    source = location[0] if location else "body"
    path = location[1:]
    field_errors = {_path_text(tuple(e.get("loc", ()))[1:]) or "body": _message(e) for e in errors}
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""

    if reason == "json_invalid":
        message = first.get("ctx", {}).get("error", "invalid JSON")
        position = path[0] if path else "?"
        detail = f"request body is not valid JSON: {message} at position {position}"
        return InvalidRequestDescription(
            code="invalid-request",
            detail=detail,
            field="body",
            reason="invalid_json",
            index=None,
            field_errors={},
        )
    if source == "body" and not path:
        return InvalidRequestDescription(
            code="invalid-request",
            detail=_describe_body_shape(first),
            field="body",
            reason=reason,
            index=None,
            field_errors={},
        )
    if source == "body":
        index = path[0] if isinstance(path[0], int) else None
        field_path = path[1:] if index is not None else path
        field_name = str(field_path[0]) if field_path else "body"
        prefix = f"event at index {index}: " if index is not None else ""
        if not field_path:
            detail = f"{prefix}must be a JSON object (an audit event), not {_json_kind(first.get('input'))}"
        else:
            detail = f"{prefix}{_path_text(field_path)}: {_message(first)}{more}"
        code = "invalid-event-data" if field_name == "event_data" else "validation-error"
        return InvalidRequestDescription(
            code=code, detail=detail, field=field_name, reason=reason, index=index, field_errors=field_errors
        )
    parameter = _path_text(path) or str(source)
    return InvalidRequestDescription(
        code="validation-error",
        detail=f"Validation failed for {source} parameters: {parameter}: {_message(first)}{more}",
        field=parameter,
        reason=reason,
        index=None,
        field_errors=field_errors,
    )


def _message(error: Mapping[str, Any]) -> str:
    if (
        error.get("type") == "string_pattern_mismatch"
        and error.get("ctx", {}).get("pattern") == NO_NUL_PATTERN
    ):
        return "String must not contain the NUL character (\\u0000)"
    return str(error.get("msg"))


def _describe_body_shape(error: Mapping[str, Any]) -> str:
    given = error.get("input")
    if error.get("type") == "missing":
        return "request body is required"
    if isinstance(given, bytes | bytearray):
        return "request body must be JSON, sent with Content-Type: application/json"
    if error.get("type") == "list_type":
        if isinstance(given, dict):
            return "request body must be a JSON array, not a single object"
        return f"request body must be a JSON array of audit events, not {_json_kind(given)}"
    return f"request body must be a JSON object (an audit event), not {_json_kind(given)}"


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _path_text(path: Sequence[object]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
