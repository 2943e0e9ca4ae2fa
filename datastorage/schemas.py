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

import ipaddress
import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from datastorage.records import DEFAULT_RETENTION_DAYS, AuditRecord, SerializedObject, object_json
from datastorage.timestamps import parse_date, parse_rfc3339

EventCategory = Literal[
    "gateway", "notification", "analysis", "signalprocessing", "workflow", "execution", "orchestration"
]
EventOutcome = Literal["success", "failure", "pending"]

# Deep enough for any real event, shallow enough that serialising it can never
# hit Python's recursion limit.
MAX_EVENT_DATA_DEPTH: Final = 64
MAX_DURATION_MS: Final = 2**31 - 1  # the INTEGER column
MAX_RETENTION_DAYS: Final = 2555  # kubernaut's limit, held by the column's CHECK
# The longest text of an IP address: an IPv4-mapped IPv6 address written out in full.
MAX_IP_ADDRESS_LENGTH: Final = 45
# PostgreSQL text cannot hold NUL. Checked in pydantic-core (Rust), which also
# refuses lone surrogates in any constrained string, and shown in the OpenAPI document.
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
# The largest double, 1.8e308, has 309 digits.
_DOUBLE_OVERFLOW_DIGITS: Final = re.compile(r"[0-9]{309}")
# A \u0000 escape in json.dumps output, unless its backslash is itself escaped.
_ESCAPED_NUL: Final = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _rfc3339(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time string")
    try:
        return parse_rfc3339(value)
    except ValueError as error:
        raise PydanticCustomError("datetime_format", "{reason}", {"reason": str(error)}) from None


def _iso_date(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError("date_type", "Input should be a date string such as 2025-01-31")
    try:
        return parse_date(value)
    except ValueError as error:
        raise PydanticCustomError("date_from_datetime_parsing", "{reason}", {"reason": str(error)}) from None


def _ip_address(value: str) -> str:
    """An IPv4 or IPv6 address in the text PostgreSQL's `inet` gives back, so the record and its row agree.

    "" passes (it means absent, as for every optional text). Zones (`fe80::1%eth0`) and
    networks are refused: `inet` cannot hold a zone, and an actor is one address.
    """
    if not value:
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("ip_address", "Input should be an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.scope_id is not None:
        raise PydanticCustomError("ip_address", "IPv6 address must not have a zone (%...)")
    return _inet_text(address)


def _inet_text(address: ipaddress.IPv6Address) -> str:
    """PostgreSQL's text of an IPv6 address: Python's, except that PostgreSQL writes the IPv4 part of
    an IPv4-mapped (`::ffff:1.2.3.4`) or IPv4-compatible (`::1.2.3.4`) address dotted, Python in hex."""
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    number = int(address)
    if number >> 32 == 0 and number >> 16 != 0:  # 96 zero bits, then a non-zero 7th group
        return f"::{ipaddress.IPv4Address(number)}"
    return address.compressed


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
    # Only a number written with more digits can be beyond the largest double (digits in strings
    # only cost the walk).
    if _DOUBLE_OVERFLOW_DIGITS.search(text):
        _check_numbers_fit_doubles(value)
    return SerializedObject(value, text)


def _check_numbers_fit_doubles(value: dict[str, Any]) -> None:
    """The hash chain reads every JSON number as a double (RFC 8785): one beyond the largest cannot be
    hashed, so it is refused here, like Infinity, rather than accepted and never stored."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                raise PydanticCustomError(
                    "event_data_number", "event_data numbers must fit a double (at most about 1.8e308)"
                ) from None


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
Day = Annotated[date, BeforeValidator(_iso_date)]
IpAddress = Annotated[
    str,
    StringConstraints(max_length=MAX_IP_ADDRESS_LENGTH),
    AfterValidator(_ip_address),
    # Lets schema-driven clients and fuzzers produce addresses rather than random text.
    Field(json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"maxLength": 0}]}),
]
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
    actor_ip: IpAddress | None = Field(default=None, description="the actor's IPv4 or IPv6 address")
    resource_type: Annotated[str, _length(0, 100)] | None = Field(
        default=None, description="default: event_category"
    )
    resource_id: Annotated[str, _length(0, 255)] | None = Field(
        default=None, description="default: correlation_id"
    )
    parent_event_id: EventId | None = None
    parent_event_date: Day | None = Field(default=None, description="the parent event's event_date")
    namespace: Annotated[str, _length(0, 253)] | None = None
    cluster_id: Annotated[str, _length(0, 255)] | None = None
    cluster_name: Annotated[str, _length(0, 255)] | None = Field(
        default=None,
        description="deprecated: cluster_id's name before 2026, taken when cluster_id is absent",
        json_schema_extra={"deprecated": True},
    )
    severity: Annotated[str, _length(0, 20)] | None = Field(default=None, description="default: info")
    duration_ms: Annotated[int, Field(ge=0, le=MAX_DURATION_MS)] | None = None
    error_code: Annotated[str, _length(0, 50)] | None = None
    error_message: Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)] | None = None
    retention_days: Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] | None = Field(
        default=DEFAULT_RETENTION_DAYS, description="how long to keep the event, in days"
    )
    is_sensitive: bool | None = False

    @field_validator("cluster_name")
    @classmethod
    def _agrees_with_cluster_id(cls, cluster_name: str | None, info: ValidationInfo) -> str | None:
        """Old clients still send `cluster_name`; one that sends both must not contradict itself."""
        cluster_id = info.data.get("cluster_id")
        if cluster_name and cluster_id and cluster_name != cluster_id:
            raise PydanticCustomError(
                "cluster_name_conflict", "cluster_name is the old name of cluster_id and differs from it"
            )
        return cluster_name

    def to_record(self) -> AuditRecord:
        """Applies kubernaut's defaults; empty strings count as absent, a 0 duration as none.

        Actor fields from the body win; only missing ones get the defaults.
        """
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
            actor_ip=self.actor_ip or None,
            resource_type=self.resource_type or self.event_category,
            resource_id=self.resource_id or self.correlation_id,
            correlation_id=self.correlation_id,
            parent_event_id=self.parent_event_id,
            parent_event_date=self.parent_event_date,
            namespace=self.namespace or None,
            cluster_id=self.cluster_id or self.cluster_name or None,
            severity=self.severity or "info",
            duration_ms=self.duration_ms or None,
            error_code=self.error_code or None,
            error_message=self.error_message or None,
            retention_days=self.retention_days or DEFAULT_RETENTION_DAYS,
            is_sensitive=bool(self.is_sensitive),
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
    actor_ip: str = Field(description="empty when unset")
    resource_type: str
    resource_id: str
    namespace: str = Field(description="empty when unset")
    cluster_id: str = Field(description="empty when unset")
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


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("string_blank", "String must not be blank")
    return value


# Who placed or released a legal hold: a person or service to answer for it, never blank.
Accountable = Annotated[str, _length(1, 255), AfterValidator(_not_blank)]
MAX_HOLD_REASON_LENGTH: Final = 1000


class LegalHoldRequest(BaseModel):
    """A legal hold to place on a case: the audit events of one correlation_id; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    correlation_id: Annotated[str, _length(1, 255)]
    reason: Annotated[str, _length(1, MAX_HOLD_REASON_LENGTH), AfterValidator(_not_blank)] = Field(
        examples=["litigation hold, matter 2026-014"]
    )
    placed_by: Accountable = Field(examples=["legal@example.com"])


class LegalHoldResponse(BaseModel):
    """The hold in force on a case."""

    correlation_id: str
    reason: str
    placed_by: str
    placed_at: datetime
    events_held: int = Field(description="stored events of the case marked on hold")


class LegalHoldReleaseResponse(BaseModel):
    correlation_id: str
    released_by: str
    released_at: datetime
    events_released: int = Field(description="stored events of the case no longer marked on hold")


MAX_KNOWN_EVENTS_QUERY: Final = 1000


class StoredEventKey(BaseModel):
    """An event a client sent before: its id, and its timestamp, which names its partition."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: EventId
    event_timestamp: Timestamp


class KnownEventsRequest(BaseModel):
    """Which of these events are stored; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    events: list[StoredEventKey] = Field(min_length=1, max_length=MAX_KNOWN_EVENTS_QUERY)


class KnownEventsResponse(BaseModel):
    known: list[uuid.UUID] = Field(
        description="the ids of those events that are stored; an event queued in the DLQ is not yet"
    )


class VerifyChainRequest(BaseModel):
    """Which hash chain to verify; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    correlation_id: Annotated[str, _length(1, 255)]


class TamperedEvent(BaseModel):
    """One failed check of one event; for a missing newest event, the one the chain head names."""

    event_id: uuid.UUID
    event_timestamp: datetime
    expected_hash: str = Field(description="what the chain calls for at this point")
    actual_hash: str = Field(description="what is stored")
    previous_hash: str = Field(description="the event's stored previous_event_hash")
    message: str = Field(description="which check failed and what that means")


class ChainVerificationResponse(BaseModel):
    correlation_id: str
    is_valid: bool
    total_events: int = Field(description="chained events stored, all checked")
    verified_events: int = Field(description="events that passed every check")
    purged_events: int = Field(description="oldest events deleted by retention, per the chain head")
    tampered_events: list[TamperedEvent] = Field(description="failed checks in chain order, the first 100")
    message: str
    verification_time: datetime


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
