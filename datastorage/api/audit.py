"""`/api/v1/audit/events`: write one event, write a batch atomically, and query stored events.

The handlers apply the rules that need a clock or a database (timestamp
window, parent event exists), convert requests into `AuditRecord`s and hand
them to `AuditIngest`, which stores or queues them. 201 means stored, 202
queued in the DLQ. Errors are raised as domain errors; `problems.py` answers.
A batch's events are checked a chunk at a time as they are written, with the
answers a check of the whole batch before writing gives (`_checked_as_written`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from datastorage.api.dependencies import ServiceDep, service_of
from datastorage.api.jsonbody import FastJsonRoute, OrjsonResponse
from datastorage.errors import InvalidInput, StorageUnavailable
from datastorage.ingest import Outcome
from datastorage.records import AuditRecord, PendingRecords
from datastorage.repository import EventFilter
from datastorage.schemas import (
    NO_NUL_PATTERN,
    AuditEventAccepted,
    AuditEventRequest,
    AuditEventResponse,
    AuditEventsQueryResponse,
    BatchAuditEventAccepted,
    BatchAuditEventResponse,
    EventOutcome,
    KnownEventsRequest,
    KnownEventsResponse,
)
from datastorage.timestamps import check_event_time, format_timestamp, parse_time_bound

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], route_class=FastJsonRoute)

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_MAX_OFFSET: Final = 2**63 - 1  # PostgreSQL's OFFSET is a bigint
MAX_DETAIL_VALUE_LENGTH: Final = 1000
# Batch events checked at a time, as the write needs them (`_checked_as_written`): few, so that the
# first rows reach PostgreSQL soon.
CHECK_CHUNK_EVENTS: Final = 50
_EVENTS: Final = TypeAdapter(list[AuditEventRequest])


@router.post(
    "/events",
    operation_id="createAuditEvent",
    status_code=201,
    response_model=AuditEventResponse,
    responses={
        202: {"model": AuditEventAccepted, "description": "PostgreSQL unavailable; queued in the DLQ"}
    },
)
async def create_audit_event(event: AuditEventRequest, request: Request) -> JSONResponse:
    """Stores one event (201), or queues it when PostgreSQL is unavailable (202)."""
    service = service_of(request)
    _check_time(event, service.clock(), index=None)
    record = event.to_record()
    if record.parent_event_id is not None:
        try:
            parent_exists = await service.store.exists(record.parent_event_id)
        except StorageUnavailable:
            parent_exists = True  # cannot tell now; the event will be queued anyway
        if not parent_exists:
            raise InvalidInput("parent event does not exist", field_errors={"parent_event_id": "not found"})
    outcome = await service.ingest.accept_one(record)
    if outcome is Outcome.STORED:
        body = {
            "event_id": str(record.event_id),
            "event_timestamp": format_timestamp(record.event_timestamp),
            "message": "Audit event created successfully",
        }
        return OrjsonResponse(body, status_code=201)
    queued = {
        "status": "accepted",
        "message": "audit event queued for async processing",
        "event_id": str(record.event_id),
        "event_timestamp": format_timestamp(record.event_timestamp),
    }
    return OrjsonResponse(queued, status_code=202)


@router.post(
    "/events/batch",
    operation_id="createAuditEventsBatch",
    status_code=201,
    response_model=BatchAuditEventResponse,
    responses={
        202: {"model": BatchAuditEventAccepted, "description": "PostgreSQL unavailable; queued in the DLQ"}
    },
    # The events are checked by `_checked_as_written`, not by FastAPI; the document says what they are.
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"items": {"$ref": "#/components/schemas/AuditEventRequest"}, "minItems": 1}
                }
            }
        }
    },
)
async def create_audit_events_batch(
    events: Annotated[list[Any], Body(description="a non-empty JSON array of audit events")],
    request: Request,
) -> JSONResponse:
    """Stores all events or none (201), or queues all when PostgreSQL is unavailable (202)."""
    service = service_of(request)
    if not events:
        raise InvalidInput("batch cannot be empty")
    records = _checked_as_written(events, service.clock())
    outcome = await service.ingest.accept(records, table_label="audit_events_batch")
    event_ids = [record.event_id for record in records]
    if outcome is Outcome.STORED:
        body = {"event_ids": event_ids, "message": f"{len(records)} audit events created successfully"}
        return OrjsonResponse(body, status_code=201)
    queued = {
        "status": "accepted",
        "message": f"{len(records)} audit events queued for async processing",
        "event_ids": event_ids,
    }
    return OrjsonResponse(queued, status_code=202)


def _checked_as_written(events: list[Any], now: datetime) -> PendingRecords:
    """The batch's records, each chunk of events checked (schema, then time window) and converted only
    as the write reaches it, so that PostgreSQL stores one chunk while the next is checked.

    At the first problem the whole batch is checked as it was before any write, and that check's
    error is raised: every invalid event named (RequestValidationError, as FastAPI would raise it),
    else the first event out of the time window (InvalidInput); the write then rolls back.
    """

    def chunks() -> Iterator[list[AuditRecord]]:
        for start in range(0, len(events), CHECK_CHUNK_EVENTS):
            try:
                checked = _EVENTS.validate_python(
                    events[start : start + CHECK_CHUNK_EVENTS], from_attributes=True
                )
                for event in checked:
                    check_event_time(event.event_timestamp, now)
            except ValueError:  # pydantic's ValidationError, or the time window's
                _check_batch(events, now)
                raise
            yield [event.to_record() for event in checked]

    return PendingRecords(len(events), _correlation_ids(events), chunks())


def _check_batch(events: list[Any], now: datetime) -> None:
    """Every event checked, as FastAPI and then the time window checked them before a write began."""
    try:
        checked = _EVENTS.validate_python(events, from_attributes=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors(include_url=False)],
            body=events,
        ) from None
    for index, event in enumerate(checked):
        _check_time(event, now, index=index)


def _correlation_ids(events: list[Any]) -> set[str]:
    """The correlation_ids the events name that PostgreSQL can take as text: a superset of those of
    the records made from them (a record's is its event's), so their chains can be locked first."""
    return {
        value
        for event in events
        if isinstance(event, dict)
        and type(value := event.get("correlation_id")) is str
        and "\x00" not in value
        and (value.isascii() or _is_utf8(value))
    }


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


@router.post("/events/known", operation_id="knownAuditEvents", response_model=KnownEventsResponse)
async def known_audit_events(request: KnownEventsRequest, service: ServiceDep) -> JSONResponse:
    """Which of these events are stored (200), so a client re-sending what it sent before, after a restart,
    can leave out what arrived. Read-only: nothing is stored or queued."""
    known = await service.store.known([(event.event_id, event.event_timestamp) for event in request.events])
    ids = dict.fromkeys(event.event_id for event in request.events if event.event_id in known)
    return JSONResponse({"known": [str(event_id) for event_id in ids]})


@router.get("/events", operation_id="queryAuditEvents", response_model=AuditEventsQueryResponse)
async def query_audit_events(
    service: ServiceDep,
    event_type: Annotated[str | None, Query(max_length=100, pattern=NO_NUL_PATTERN)] = None,
    event_category: Annotated[str | None, Query(max_length=50, pattern=NO_NUL_PATTERN)] = None,
    event_outcome: EventOutcome | None = None,
    severity: Annotated[str | None, Query(max_length=20, pattern=NO_NUL_PATTERN)] = None,
    correlation_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL_PATTERN)] = None,
    cluster_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL_PATTERN)] = None,
    detail_key: Annotated[
        str | None,
        Query(
            max_length=255,
            pattern=NO_NUL_PATTERN,
            description="events whose event_data has this top-level key (with detail_value: that value)",
        ),
    ] = None,
    detail_value: Annotated[
        str | None,
        Query(
            max_length=MAX_DETAIL_VALUE_LENGTH,
            pattern=NO_NUL_PATTERN,
            description=(
                "needs detail_key; the key's value as text: a string's content, true or false, or a number"
                " as PostgreSQL writes it (42, 0.5, 100 for 1e2); null, objects and arrays never match"
            ),
        ),
    ] = None,
    since: Annotated[
        str | None, Query(max_length=64, description="RFC 3339, YYYY-MM-DD, or a duration back: 24h, 7d")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description="RFC 3339, YYYY-MM-DD, or a duration back: 24h, 7d")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=_MAX_OFFSET)] = 0,
) -> JSONResponse:
    """Stored events matching every given filter, newest first, one page at a time."""
    now = service.clock()
    event_filter = EventFilter(
        event_type=event_type,
        event_category=event_category,
        event_outcome=event_outcome,
        severity=severity,
        correlation_id=correlation_id,
        cluster_id=cluster_id,
        since=_time_bound("since", since, now),
        until=_time_bound("until", until, now),
        detail_key=detail_key,
        detail_value=detail_value,
    )
    if detail_value is not None and detail_key is None:
        raise InvalidInput(
            "Validation failed for query parameters: detail_value: needs detail_key",
            field_errors={"detail_value": "needs detail_key"},
        )
    if event_filter.since and event_filter.until and event_filter.since > event_filter.until:
        raise InvalidInput("since is after until", field_errors={"since": "after until"})
    rows, total = await service.store.find_page(event_filter, limit=limit, offset=offset)
    body = {
        "data": [_event_json(row) for row in rows],
        "pagination": {
            "limit": limit,
            "offset": offset,
            "total": total,
            "has_more": offset + len(rows) < total,
        },
    }
    return JSONResponse(body)


def _check_time(event: AuditEventRequest, now: datetime, *, index: int | None) -> None:
    try:
        check_event_time(event.event_timestamp, now)
    except ValueError as error:
        prefix = f"event at index {index}: " if index is not None else ""
        key = f"[{index}].event_timestamp" if index is not None else "event_timestamp"
        raise InvalidInput(
            f"{prefix}invalid timestamp: {error}", field_errors={key: str(error)}, index=index
        ) from None


def _time_bound(name: str, text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time_bound(text, now)
    except ValueError as error:
        raise InvalidInput(
            f"Validation failed for query parameters: {name}: {error}", field_errors={name: str(error)}
        ) from None


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "event_id": str(row["event_id"]),
        "event_timestamp": format_timestamp(row["event_timestamp"]),
        "event_date": row["event_date"].isoformat(),
        "parent_event_id": _optional_text(row["parent_event_id"]),
        "parent_event_date": _optional_date(row["parent_event_date"]),
    }


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def _optional_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()
