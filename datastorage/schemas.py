"""Wire schemas of the audit API: what clients send and what they get back.

`AuditEventRequest` enforces everything that can be checked without a clock
or a database: required fields, lengths (matching the column widths, so a
valid request always fits its row), enums, explicit nulls, `event_data` as a
JSON object PostgreSQL can store, and RFC 3339 timestamps. Types are strict:
a number where a string belongs is an error, not a conversion. The response
models document the API in the OpenAPI document; handlers return plain JSON
of the same shape. Names follow kubernaut's `data-storage-v1.yaml`.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from datastorage.records import AuditRecord, SerializedObject, object_json
from datastorage.timestamps import parse_rfc3339

EventCategory = Literal[
    "gateway", "notification", "analysis", "signalprocessing", "workflow", "execution", "orchestration"
]
EventOutcome = Literal["success", "failure", "pending"]

# Deep enough for any real event, shallow enough that serialising it can never
# hit Python's recursion limit.
MAX_EVENT_DATA_DEPTH: Final = 64
MAX_DURATION_MS: Final = 2**31 - 1  # the INTEGER column
# PostgreSQL text cannot hold NUL. Checked in pydantic-core (Rust), which also
# refuses lone surrogates in any constrained string, and shown in the OpenAPI document.
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
# A \u0000 escape in json.dumps output, unless its backslash is itself escaped.
_ESCAPED_NUL: Final = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _rfc3339(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time string")
    try:
        return parse_rfc3339(value)
    except ValueError as error:
        raise PydanticCustomError("datetime_format", "{reason}", {"reason": str(error)}) from None


def _storable_json_object(value: dict[str, Any]) -> dict[str, Any]:
    """Rejects what jsonb cannot hold (NUL, lone surrogates, NaN/Infinity) and absurd nesting.

    Runs for every event of every batch, so the strings are checked on one
    serialisation in C rather than one by one in Python.
    """
    try:
        text = object_json(value)
    except ValueError:
        raise PydanticCustomError(
            "event_data_number", "event_data numbers must be finite, not NaN or Infinity"
        ) from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise PydanticCustomError("nul_character", "event_data strings must not contain \\u0000")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "string_unicode", "event_data strings must be valid Unicode (no lone surrogates)"
            ) from None
    # Fewer brackets than levels allowed (brackets in strings only add to the count): no walk needed.
    if text.count("{") + text.count("[") > MAX_EVENT_DATA_DEPTH:
        _check_depth(value)
    return SerializedObject(value, text)


def _check_depth(value: dict[str, Any]) -> None:
    containers: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while containers:
        container, depth = containers.pop()
        if depth > MAX_EVENT_DATA_DEPTH:
            raise PydanticCustomError(
                "event_data_depth",
                "event_data nests deeper than {limit} levels",
                {"limit": MAX_EVENT_DATA_DEPTH},
            )
        children = container.values() if isinstance(container, dict) else container
        containers.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]
# Lax for this one type: a UUID arrives as a JSON string, which strict mode would refuse.
EventId = Annotated[uuid.UUID, Field(strict=False)]
EventData = Annotated[dict[str, Any], AfterValidator(_storable_json_object)]


def _length(min_length: int, max_length: int) -> Any:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL_PATTERN)


class AuditEventRequest(BaseModel):
    """One audit event as a client sends it; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    version: Annotated[str, _length(1, 20)] = Field(examples=["1.0"])
    event_type: Annotated[str, _length(1, 100)] = Field(examples=["signalprocessing.signal.processed"])
    event_timestamp: Timestamp = Field(description="RFC 3339; at most 5 minutes ahead and 7 days old")
    event_category: EventCategory
    event_action: Annotated[str, _length(1, 50)] = Field(examples=["processed"])
    event_outcome: EventOutcome
    correlation_id: Annotated[str, _length(1, 255)]
    event_data: EventData = Field(description="a JSON object")
    event_id: EventId | None = Field(
        default=None, description="client-chosen id; a repeat of a stored id is accepted and not stored twice"
    )
    actor_type: Annotated[str, _length(0, 50)] | None = Field(default=None, description="default: service")
    actor_id: Annotated[str, _length(0, 255)] | None = Field(
        default=None, description="default: <event_category>-service"
    )
    resource_type: Annotated[str, _length(0, 100)] | None = Field(
        default=None, description="default: event_category"
    )
    resource_id: Annotated[str, _length(0, 255)] | None = Field(
        default=None, description="default: correlation_id"
    )
    parent_event_id: EventId | None = None
    namespace: Annotated[str, _length(0, 253)] | None = None
    cluster_name: Annotated[str, _length(0, 255)] | None = None
    severity: Annotated[str, _length(0, 20)] | None = Field(default=None, description="default: info")
    duration_ms: Annotated[int, Field(ge=0, le=MAX_DURATION_MS)] | None = None

    def to_record(self) -> AuditRecord:
        """Applies kubernaut's defaults; empty strings count as absent, a 0 duration as none."""
        return AuditRecord(
            event_id=self.event_id or uuid.uuid4(),
            version=self.version,
            event_timestamp=self.event_timestamp,
            event_type=self.event_type,
            event_category=self.event_category,
            event_action=self.event_action,
            event_outcome=self.event_outcome,
            actor_type=self.actor_type or "service",
            actor_id=self.actor_id or f"{self.event_category}-service",
            resource_type=self.resource_type or self.event_category,
            resource_id=self.resource_id or self.correlation_id,
            correlation_id=self.correlation_id,
            parent_event_id=self.parent_event_id,
            namespace=self.namespace or None,
            cluster_name=self.cluster_name or None,
            severity=self.severity or "info",
            duration_ms=self.duration_ms or None,
            event_data=self.event_data,
        )


class AuditEventResponse(BaseModel):
    event_id: uuid.UUID
    event_timestamp: datetime
    message: str = Field(examples=["Audit event created successfully"])


class AuditEventAccepted(BaseModel):
    """202: PostgreSQL was unavailable; the event is in the dead-letter queue and will be stored."""

    status: Literal["accepted"]
    message: str
    event_id: uuid.UUID
    event_timestamp: datetime


class BatchAuditEventResponse(BaseModel):
    event_ids: list[uuid.UUID] = Field(description="in request order")
    message: str = Field(examples=["3 audit events created successfully"])


class BatchAuditEventAccepted(BaseModel):
    """202: PostgreSQL was unavailable; the whole batch is in the dead-letter queue."""

    status: Literal["accepted"]
    message: str
    event_ids: list[uuid.UUID]


class AuditEvent(BaseModel):
    """A stored event; every key is always present, as in kubernaut's responses."""

    event_id: uuid.UUID
    event_timestamp: datetime
    event_date: date
    version: str
    event_type: str
    event_category: str
    event_action: str
    event_outcome: str
    correlation_id: str
    parent_event_id: uuid.UUID | None
    parent_event_date: date | None
    actor_type: str
    actor_id: str
    resource_type: str
    resource_id: str
    namespace: str = Field(description="empty when unset")
    cluster_name: str = Field(description="empty when unset")
    severity: str
    duration_ms: int = Field(description="0 when unset")
    error_code: str
    error_message: str
    retention_days: int
    is_sensitive: bool
    event_data: dict[str, Any]


class Pagination(BaseModel):
    limit: int
    offset: int
    total: int
    has_more: bool


class AuditEventsQueryResponse(BaseModel):
    data: list[AuditEvent] = Field(description="newest first")
    pagination: Pagination


class RFC7807Problem(BaseModel):
    type: str = Field(examples=["https://kubernaut.ai/problems/validation-error"])
    title: str
    status: int
    detail: str
    instance: str
    index: int | None = Field(default=None, description="batch requests: position of the bad element")
    field_errors: dict[str, str] | None = None


class HealthResponse(BaseModel):
    status: str
    database: str | None = None
    redis: str | None = None
    reason: str | None = None
    error: str | None = None
