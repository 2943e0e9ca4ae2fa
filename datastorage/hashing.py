"""How one audit event is hashed into its chain: the canonical document, its bytes, and the (keyed) hash.

The rule is written out in README.md ("Hash chain") so that another
implementation can check a chain without this code: the document has one
key per `AuditRecord` field (derived from the dataclass, so a field added to
the record is hashed without a change here), values in the forms
`canonical_document` gives, serialised by RFC 8785 (JCS); the hash is
`hex(HMAC-SHA256(key, previous_hash_hex || canonical_bytes))` with a key,
`hex(SHA256(previous_hash_hex || canonical_bytes))` without.

Pure, except `load_hash_key`, which reads the key file. The key's bytes never
leave `HashKey`: not in its repr, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import re
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import rfc8785

from datastorage.records import AuditRecord, SerializedObject
from datastorage.timestamps import format_timestamp

HMAC_SHA256: Final = "hmac-sha256"
SHA256: Final = "sha256"
# A key file is a secret of a few dozen bytes; anything this long was mounted by mistake.
MAX_KEY_BYTES: Final = 4096
# RFC 8785 numbers are IEEE 754 doubles: integers beyond this lose precision and are hashed as doubles.
_SAFE_INTEGER: Final = 2**53 - 1
_FIELD_NAMES: Final = tuple(field.name for field in fields(AuditRecord))
# Exact types orjson writes in their canonical form, unchecked: text, null, booleans, a UUID lower-case
# 8-4-4-4-12, a date YYYY-MM-DD (and a UTC datetime as `format_timestamp` does, with OPT_UTC_Z).
# Subclasses (asyncpg's UUID) are not among them.
_LEFT_TO_ORJSON: Final = frozenset({str, type(None), bool, uuid.UUID, date})
# Values that are JSON already, by exact type (a dict subclass is checked apart).
_JSON_TYPES: Final = frozenset({str, int, bool, float, list, dict, type(None)})
# In compact JSON a number follows ':', '[' or ','. This finds every float and every integer of 16
# digits or more (2**53 has 16), and such text inside strings too, which only costs the slower path.
# (One branch after the common prefix: Python's engine scans for it faster than for two.)
_FLOAT_OR_LONG_INTEGER: Final = re.compile(r"[:,\[]-?[0-9](?:[0-9]*[.eE]|[0-9]{15})")
# The record's fields in RFC 8785's key order (for these ASCII names, code-point order), read by one
# call; and orjson's options for them: passing dict subclasses (event_data) to `default`, refusing
# integers no double holds exactly, writing UTC as `Z` (as `format_timestamp` does).
_SORTED_FIELD_NAMES: Final = tuple(sorted(_FIELD_NAMES))
_SORTED_FIELD_VALUES: Final = operator.attrgetter(*_SORTED_FIELD_NAMES)
_FAST_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_STRICT_INTEGER


class HashKeyError(ValueError):
    """The key file cannot be used; the message names the file and the reason, never its content."""


class HashKeyMissing(LookupError):
    """An event was hashed with the key, and this instance has none to check it with."""


class HashKey:
    """The secret of the chain's HMAC. Its bytes are never shown: not in repr, logs or errors."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise HashKeyError("the hash key is empty")
        self._secret = secret

    def __repr__(self) -> str:
        return "HashKey(<redacted>)"

    def mac(self, message: bytes) -> str:
        return hmac.digest(self._secret, message, "sha256").hex()


def load_hash_key(path: Path) -> HashKey:
    """The key in `path`: the file's bytes without trailing CR/LF (a Secret file often ends in one).

    Raises HashKeyError naming the file when it is missing, unreadable, empty or too long.
    """
    try:
        with path.open("rb") as file:
            content = file.read(MAX_KEY_BYTES + 1)
    except OSError as error:
        raise HashKeyError(f"cannot read the audit hash key file {path}: {error.strerror}") from None
    if len(content) > MAX_KEY_BYTES:
        raise HashKeyError(f"the audit hash key file {path} is longer than {MAX_KEY_BYTES} bytes")
    secret = content.rstrip(b"\r\n")
    if not secret:
        raise HashKeyError(f"the audit hash key file {path} is empty")
    return HashKey(secret)


@dataclass(frozen=True, slots=True)
class EventHasher:
    """Hashes events with the key when there is one (`hmac-sha256`), with plain SHA-256 otherwise."""

    key: HashKey | None = None

    @property
    def algorithm(self) -> str:
        return SHA256 if self.key is None else HMAC_SHA256

    def link(self, previous_hash: str, canonical: bytes) -> str:
        """The hash of a new event that follows `previous_hash` ("" for a chain's first event)."""
        return self.rehash(self.algorithm, previous_hash, canonical)

    def rehash(self, algorithm: str, previous_hash: str, canonical: bytes) -> str:
        """The hash by the named algorithm, for checking a stored event.

        Raises HashKeyMissing for `hmac-sha256` without a key, ValueError for an unknown algorithm.
        """
        message = previous_hash.encode("ascii") + canonical
        if algorithm == SHA256:
            return hashlib.sha256(message).hexdigest()
        if algorithm == HMAC_SHA256:
            if self.key is None:
                raise HashKeyMissing("events hashed with hmac-sha256 need the hash key")
            return self.key.mac(message)
        raise ValueError(f"unknown hash algorithm {algorithm!r}")


def canonical_document(record: AuditRecord) -> dict[str, Any]:
    """One key per record field, each value in JSON: see README.md, "Hash chain", for the forms."""
    return {name: _json_value(getattr(record, name)) for name in _FIELD_NAMES}


def canonical_bytes(record: AuditRecord) -> bytes:
    """The record's canonical document serialised by RFC 8785 (JCS), as UTF-8.

    Raises ValueError for a number no double can hold (the API refuses such events).
    """
    data = record.event_data
    if (
        type(data) is SerializedObject
        and record.event_timestamp.tzinfo is UTC
        and _canonical_already(data.json_text)
    ):
        # A record as the API makes it: every field of a type orjson writes as RFC 8785 does (the
        # timestamp in UTC, event_data's text canonical already), read in sorted order in one call.
        # Anything else orjson refuses here (an integer beyond 2**53, a subclass such as asyncpg's
        # UUID) takes the way below, which looks at each field.
        try:
            return orjson.dumps(
                dict(zip(_SORTED_FIELD_NAMES, _SORTED_FIELD_VALUES(record), strict=True)),
                default=_stored_text,
                option=_FAST_OPTIONS,
            )
        except orjson.JSONEncodeError:
            pass
    document, written_alike = _document(record)
    if written_alike:
        # orjson (Rust) writes a typical event some 30 times faster than the pure-Python rfc8785
        # package, and the event loop waits for it on every write; the unit tests hold the two
        # equal wherever this path is taken.
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)
    return rfc8785.dumps(_numbers_as_doubles(canonical_document(record)))


def _document(record: AuditRecord) -> tuple[dict[str, Any], bool]:
    """The record's fields, those orjson writes in their canonical form left as they are (event_data
    as its stored text when that is canonical), and whether orjson writes the whole as RFC 8785 does
    (`_written_alike`); one pass, since every write waits."""
    document = {}
    written_alike = True
    for name in _FIELD_NAMES:
        value = getattr(record, name)
        kind = type(value)
        if kind not in _LEFT_TO_ORJSON:
            if kind is SerializedObject and _canonical_already(value.json_text):
                value = orjson.Fragment(value.json_text)
            elif kind in _JSON_TYPES or isinstance(value, dict):
                written_alike = written_alike and _written_alike(value)
            elif kind is not datetime or value.tzinfo is not UTC:
                value = _json_value(value)
        document[name] = value
    return document, written_alike


def _stored_text(value: Any) -> orjson.Fragment:
    """event_data's text, for orjson, which passes it here as a dict subclass."""
    if type(value) is SerializedObject:
        return orjson.Fragment(value.json_text)
    raise TypeError(f"{type(value).__name__} is left to the general way")


def _json_value(value: Any) -> Any:
    """The value in JSON: as it is if it is JSON already, else its text (as orjson writes it)."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) in _JSON_TYPES or isinstance(value, dict):
        return value
    raise TypeError(f"no canonical JSON form for {type(value).__name__}")


def _canonical_already(text: str) -> bool:
    """True when `text`, an object as `records.object_json` wrote it (compact, keys sorted by code
    point, strings escaped as RFC 8785 does), is its RFC 8785 form: `_written_alike` read off the
    text, which is cheaper than walking the object again."""
    return (text.isascii() or max(text) < "\ue000") and not _FLOAT_OR_LONG_INTEGER.search(text)


def _written_alike(value: Any) -> bool:
    """True when orjson with sorted keys writes `value` byte for byte as RFC 8785 does: no floats (their
    shortest forms differ), no integers beyond the double-safe range, and no key with a character from
    U+E000 on (orjson sorts keys by code point, RFC 8785 by UTF-16 code unit). Strings are escaped alike
    by both."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return bool(-_SAFE_INTEGER <= value <= _SAFE_INTEGER)
    if isinstance(value, dict):
        keys = "".join(value)
        return (keys.isascii() or max(keys) < "\ue000") and all(map(_written_alike, value.values()))
    if kind is list:
        return all(map(_written_alike, value))
    return False


def _numbers_as_doubles(value: Any) -> Any:
    """Integers beyond 2^53 - 1 as the double nearest to them, as RFC 8785 reads every JSON number."""
    if isinstance(value, dict):
        return {key: _numbers_as_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_doubles(item) for item in value]
    if type(value) is int and abs(value) > _SAFE_INTEGER:
        try:
            return float(value)
        except OverflowError:
            raise ValueError("a number in event_data is too large for a double") from None
    return value
