"""The audit event as DataStorage stores it: defaults applied, id fixed, ready for SQL or the DLQ.

An `AuditRecord` is built once from a validated request and is then the only
shape that moves on: into PostgreSQL through the repository, or into the
dead-letter queue as a JSON payload and back. Its `event_id` and timestamp are
fixed at acceptance, so every later attempt to store it lands on the same
primary key and is stored at most once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Final, TypeVar, dataclass_transform, overload

import orjson

from datastorage.timestamps import event_date, format_timestamp, parse_rfc3339

# Seven years, kubernaut's default and longest retention; also the column's default.
DEFAULT_RETENTION_DAYS: Final = 2555


class SerializedObject(dict[str, Any]):
    """A JSON object that carries the text it was checked as, so storing it need not serialise it again."""

    __slots__ = ("json_text",)

    def __init__(self, value: dict[str, Any], json_text: str) -> None:
        super().__init__(value)
        self.json_text = json_text


def object_json(value: dict[str, Any]) -> str:
    """The storage form of a JSON object: compact, keys sorted by code point, UTF-8 as is, and NaN
    refused (ValueError). Often also the object's canonical form, which the hash chain then takes
    as it is (`hashing`).

    Every stored event is written here once, by orjson, several times faster than `json`. orjson
    writes NaN and Infinity as `null` instead of refusing them, so a text with `null` in it is
    written again by `json`, which refuses them; so is what orjson refuses (lone surrogates,
    integers beyond 64 bits), for `json` to write or refuse as before. Both escape strings alike.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        text = "null"
    if "null" in text:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)
    return text


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _immutable(cls: type[_T]) -> type[_T]:
    """A dataclass that the type checker holds frozen (no field may be assigned), and that is not frozen
    at run time: there, a frozen dataclass sets each field through object.__setattr__ in __init__,
    which made an AuditRecord cost as much to build as its event to validate (a batch builds a
    thousand while PostgreSQL waits for them)."""
    return dataclass(slots=True)(cls)


@_immutable
class AuditRecord:
    event_id: uuid.UUID
    version: str
    event_timestamp: datetime
    event_type: str
    event_category: str
    event_action: str
    event_outcome: str
    actor_type: str
    actor_id: str
    actor_ip: str | None
    resource_type: str
    resource_id: str
    correlation_id: str
    parent_event_id: uuid.UUID | None
    parent_event_date: date | None
    namespace: str | None
    cluster_id: str | None
    severity: str
    duration_ms: int | None
    error_code: str | None
    error_message: str | None
    retention_days: int
    is_sensitive: bool
    event_data: dict[str, Any]

    @property
    def event_date(self) -> date:
        return event_date(self.event_timestamp)

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready form for the dead-letter queue; `from_payload` reverses it exactly."""
        payload = {field.name: getattr(self, field.name) for field in fields(self)}
        payload["event_id"] = str(self.event_id)
        payload["event_timestamp"] = format_timestamp(self.event_timestamp)
        payload["parent_event_id"] = str(self.parent_event_id) if self.parent_event_id else None
        payload["parent_event_date"] = self.parent_event_date.isoformat() if self.parent_event_date else None
        payload["event_data"] = dict(self.event_data)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AuditRecord:
        """Rebuilds a record from `to_payload` output; raises ValueError naming the first bad key.

        Also reads the payloads of versions before the 2026 fields, which may
        still wait in the queue at an upgrade: `cluster_name` for `cluster_id`,
        and the defaults for the fields they lack.
        """
        try:
            parent = payload["parent_event_id"]
            parent_date = _optional_text(payload, "parent_event_date")
            retention_days = _optional_int(payload, "retention_days")
            record = cls(
                event_id=uuid.UUID(_text(payload, "event_id")),
                version=_text(payload, "version"),
                event_timestamp=parse_rfc3339(_text(payload, "event_timestamp")),
                event_type=_text(payload, "event_type"),
                event_category=_text(payload, "event_category"),
                event_action=_text(payload, "event_action"),
                event_outcome=_text(payload, "event_outcome"),
                actor_type=_text(payload, "actor_type"),
                actor_id=_text(payload, "actor_id"),
                actor_ip=_optional_text(payload, "actor_ip"),
                resource_type=_text(payload, "resource_type"),
                resource_id=_text(payload, "resource_id"),
                correlation_id=_text(payload, "correlation_id"),
                parent_event_id=uuid.UUID(parent) if isinstance(parent, str) else None,
                parent_event_date=date.fromisoformat(parent_date) if parent_date else None,
                namespace=_optional_text(payload, "namespace"),
                cluster_id=_optional_text(
                    payload, "cluster_id" if "cluster_id" in payload else "cluster_name"
                ),
                severity=_text(payload, "severity"),
                duration_ms=_optional_int(payload, "duration_ms"),
                error_code=_optional_text(payload, "error_code"),
                error_message=_optional_text(payload, "error_message"),
                retention_days=DEFAULT_RETENTION_DAYS if retention_days is None else retention_days,
                is_sensitive=_flag(payload, "is_sensitive"),
                event_data=_object(payload, "event_data"),
            )
        except KeyError as missing:
            raise ValueError(f"payload has no {missing.args[0]!r}") from None
        return record

    def event_data_json(self) -> str:
        if isinstance(self.event_data, SerializedObject):
            return self.event_data.json_text
        return object_json(self.event_data)


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload[key]
    if not isinstance(value, str):
        raise ValueError(f"payload {key!r} is not a string")
    return value


def _optional_text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"payload {key!r} is not a string or null")
    return value


def _optional_int(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"payload {key!r} is not an integer or null")
    return value


def _flag(payload: Mapping[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"payload {key!r} is not a boolean")
    return value


def _object(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = payload[key]
    if not isinstance(value, dict):
        raise ValueError(f"payload {key!r} is not an object")
    return value


class PendingRecords(Sequence[AuditRecord]):
    """The records of a batch, made from its events (checked, converted) only as a write reads them.

    A write reads a large batch a chunk at a time (`chunks`), so that PostgreSQL stores one chunk
    while the next is made: on two cores, checking the events and storing them overlap. Making a
    record may fail, for the whole batch (an invalid event): the error comes to whoever reads that
    far, and again to anyone who reads on. `correlation_ids` are known before any record is made,
    so the write can lock its chains first; they include every record's.

    As a Sequence it makes every record first: code that takes the records whole just gets them.
    """

    def __init__(
        self, count: int, correlation_ids: Iterable[str], chunks: Iterator[list[AuditRecord]]
    ) -> None:
        self.correlation_ids = frozenset(correlation_ids)
        self._count = count
        self._pending = chunks
        self._made: list[AuditRecord] = []
        self._failure: BaseException | None = None

    @classmethod
    def of(cls, records: Sequence[AuditRecord]) -> PendingRecords:
        """The records as PendingRecords: themselves if they are, else made already, in one chunk."""
        if isinstance(records, PendingRecords):
            return records
        return cls(len(records), {record.correlation_id for record in records}, iter([list(records)]))

    def chunks(self) -> Iterator[list[AuditRecord]]:
        """The records made so far, then the others, a chunk at a time as they are made."""
        if self._made:
            yield list(self._made)
        while (chunk := self._next_chunk()) is not None:
            yield chunk

    def all(self) -> list[AuditRecord]:
        """Every record, made now if it is not yet."""
        while self._next_chunk() is not None:
            pass
        return self._made

    def _next_chunk(self) -> list[AuditRecord] | None:
        if self._failure is not None:
            raise self._failure
        try:
            chunk = next(self._pending, None)
        except BaseException as failure:
            self._failure = failure
            raise
        if chunk is not None:
            self._made.extend(chunk)
        return chunk

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> AuditRecord: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[AuditRecord]: ...

    def __getitem__(self, index: int | slice) -> AuditRecord | Sequence[AuditRecord]:
        return self.all()[index]

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(self.all())
