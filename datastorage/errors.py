"""Domain errors of DataStorage, free of HTTP.

Validation, storage and queue code raise these; `problems.py` turns them into
RFC 7807 responses once, at the edge. Each error carries the problem `code`
(the last part of its type URI) and a client-readable `detail`.
"""

from __future__ import annotations

from collections.abc import Mapping


class DataStorageError(Exception):
    """Base of all domain errors; `code` names the problem type."""

    code = "internal-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DataStorageError):
    """The request is well-formed JSON but breaks the schema or a business rule (400)."""

    code = "validation-error"

    def __init__(
        self, detail: str, *, field_errors: Mapping[str, str] | None = None, index: int | None = None
    ) -> None:
        super().__init__(detail)
        self.field_errors = dict(field_errors or {})
        self.index = index


class NotFound(DataStorageError):
    """What the request names does not exist: no such case, or no hold in force on it (404)."""

    code = "not-found"


class MalformedRequest(DataStorageError):
    """The body is not JSON, or not the JSON shape the endpoint takes (400)."""

    code = "invalid-request"


class StorageUnavailable(DataStorageError):
    """PostgreSQL could not be reached or refused the work; callers fall back to the DLQ."""

    code = "database-error"


class HashKeyUnavailable(DataStorageError):
    """A chain has events hashed with the key, and this instance has no key to verify them with (500)."""

    code = "hash-key-unavailable"


class QueueUnavailable(DataStorageError):
    """The dead-letter queue could not take the events (Redis down or the queue full)."""

    code = "dlq-error"


class NothingAccepted(DataStorageError):
    """Neither PostgreSQL nor the dead-letter queue took the events: the client must retry (500)."""

    code = "database-error"
