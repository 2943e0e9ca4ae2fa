"""How an event is hashed: the canonical document, RFC 8785 bytes, the keyed hash, and the key file."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from datastorage.hashing import (
    HMAC_SHA256,
    SHA256,
    EventHasher,
    HashKey,
    HashKeyError,
    HashKeyMissing,
    canonical_bytes,
    canonical_document,
    load_hash_key,
)
from datastorage.records import AuditRecord
from datastorage.schemas import AuditEventRequest
from test.integration.datastorage.support import make_event

EVENT_ID = uuid.UUID("0f8e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
AT = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def record(**changes: Any) -> AuditRecord:
    event = AuditEventRequest.model_validate(
        make_event("rr-1", at=AT, event_id=str(EVENT_ID), event_data={"phase": "Completed"})
    )
    return dataclasses.replace(event.to_record(), **changes)


# The example of README.md ("Hash chain"): another implementation can check itself against it.
EXAMPLE_CANONICAL = (
    b'{"actor_id":"signalprocessing-service","actor_ip":null,"actor_type":"service","cluster_id":null,'
    b'"correlation_id":"rr-1","duration_ms":null,"error_code":null,"error_message":null,'
    b'"event_action":"processed","event_category":"signalprocessing","event_data":{"phase":"Completed"},'
    b'"event_id":"0f8e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b","event_outcome":"success",'
    b'"event_timestamp":"2026-03-01T12:00:00.250000Z","event_type":"signalprocessing.signal.processed",'
    b'"is_sensitive":false,"namespace":"default","parent_event_date":null,"parent_event_id":null,'
    b'"resource_id":"rr-1","resource_type":"signalprocessing","retention_days":2555,"severity":"info",'
    b'"version":"1.0"}'
)


def test_the_readme_example_hashes_to_the_documented_values() -> None:
    canonical = canonical_bytes(record())
    first = EventHasher().link("", canonical)

    assert canonical == EXAMPLE_CANONICAL
    assert first == "29da7bab367e4a35049f1dc0105f493ae3dbecb7685cc767db0a3ffb9ce86f10"
    assert EventHasher(HashKey(b"example-key")).link(first, canonical) == (
        "203f25c0c8d0cd434a352dfa4169131a3ff92b869ac9b06a00a9e041f9b6e657"
    )


def test_every_record_field_is_a_key_of_the_document() -> None:
    document = canonical_document(record())
    assert list(document) == [field.name for field in dataclasses.fields(AuditRecord)]


@pytest.mark.parametrize(
    ("changes", "key", "form"),
    [
        pytest.param(
            {"event_timestamp": datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))},
            "event_timestamp",
            "2026-03-01T12:00:00Z",
            id="timestamp-in-utc-without-a-zero-fraction",
        ),
        pytest.param(
            {"event_timestamp": datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)},
            "event_timestamp",
            "2026-03-01T12:00:00.000005Z",
            id="timestamp-microseconds-in-six-digits",
        ),
        pytest.param(
            {"parent_event_id": uuid.UUID("ABCDEF00-0000-4000-8000-000000000000")},
            "parent_event_id",
            "abcdef00-0000-4000-8000-000000000000",
            id="uuid-lower-case",
        ),
        pytest.param({"parent_event_date": date(2026, 2, 28)}, "parent_event_date", "2026-02-28", id="date"),
        pytest.param({"namespace": None}, "namespace", None, id="null-kept"),
    ],
)
def test_values_take_their_canonical_form(changes: dict[str, Any], key: str, form: object) -> None:
    changed = record(**changes)

    assert canonical_document(changed)[key] == form
    assert canonical_bytes(changed) == rfc8785.dumps(canonical_document(changed))


@pytest.mark.parametrize(
    ("data", "written"),
    [
        pytest.param({"n": 1.0}, b'{"n":1}', id="integral-float"),
        pytest.param({"n": 1e21}, b'{"n":1e+21}', id="large-float"),
        pytest.param({"n": 1e-7}, b'{"n":1e-7}', id="small-float"),
        pytest.param({"n": 2**60}, b'{"n":1152921504606847000}', id="integer-beyond-2-53-as-double"),
        pytest.param(
            {"\U0001f600": 1, "\ufb01": 2}, '{"\U0001f600":1,"\ufb01":2}'.encode(), id="utf16-order"
        ),
        pytest.param({"s": 'a"\\\n\x1f\u2028'}, b'{"s":"a\\"\\\\\\n\\u001f\xe2\x80\xa8"}', id="escapes"),
    ],
)
def test_event_data_is_written_as_rfc8785_writes_it(data: dict[str, Any], written: bytes) -> None:
    canonical = canonical_bytes(record(event_data=data))
    assert b'"event_data":' + written + b',"event_id"' in canonical


def test_a_field_beyond_2_53_is_written_as_the_double_nearest_to_it() -> None:
    """As RFC 8785 reads every number, for a field as for event_data (the API never makes such a record,
    but a hash must not depend on who made it)."""
    canonical = canonical_bytes(record(duration_ms=2**60))
    assert b'"duration_ms":1152921504606847000,' in canonical


def test_a_number_beyond_any_double_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="too large"):
        canonical_bytes(record(event_data={"n": 10**400}))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@given(data=st.dictionaries(st.text(), JSON_VALUES, max_size=6))
def test_the_bytes_are_rfc8785_of_the_document_with_numbers_as_doubles(data: dict[str, Any]) -> None:
    document = canonical_document(record(event_data=data))
    document["event_data"] = _as_doubles(data)

    assert canonical_bytes(record(event_data=data)) == rfc8785.dumps(document)


@given(data=st.dictionaries(st.text(), JSON_VALUES, max_size=6))
@example(data={"\U0001f600": 1, "\ufb01": 2})  # code-point order is not RFC 8785's UTF-16 order
@example(data={"n": [1e16, 2**60, "x:1.5"]})
def test_event_data_checked_by_the_api_is_hashed_from_its_stored_text_alike(data: dict[str, Any]) -> None:
    """The API keeps event_data's stored text, and the hash takes it as the canonical form when it is
    one: the bytes are the same RFC 8785 bytes either way."""
    try:
        event = AuditEventRequest.model_validate(make_event("rr-1", at=AT, event_data=data))
    except ValidationError:
        assume(False)  # refused by the API (NUL, numbers no double holds): never hashed
    checked = event.to_record()
    document = canonical_document(checked)
    document["event_data"] = _as_doubles(data)

    assert canonical_bytes(checked) == rfc8785.dumps(document)


def _as_doubles(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_doubles(item) for item in value]
    if type(value) is int and abs(value) >= 2**53:
        return float(value)
    return value


def test_the_algorithm_follows_the_key() -> None:
    assert EventHasher().algorithm == SHA256
    assert EventHasher(HashKey(b"k")).algorithm == HMAC_SHA256


def test_each_stored_algorithm_is_checked_by_its_own_rule() -> None:
    keyed = EventHasher(HashKey(b"k"))
    assert keyed.rehash(SHA256, "", b"{}") == EventHasher().link("", b"{}")
    with pytest.raises(HashKeyMissing):
        EventHasher().rehash(HMAC_SHA256, "", b"{}")
    with pytest.raises(ValueError, match="unknown hash algorithm 'md5'"):
        keyed.rehash("md5", "", b"{}")


def test_the_key_is_the_file_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"s3cret\r\n")

    key = load_hash_key(path)

    assert key.mac(b"m") == HashKey(b"s3cret").mac(b"m")
    assert "s3cret" not in repr(key)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(None, "cannot read", id="missing"),
        pytest.param(b"\n", "is empty", id="empty"),
        pytest.param(b"x" * 4097, "longer than 4096 bytes", id="too-long"),
    ],
)
def test_an_unusable_key_file_is_named_and_its_content_never_shown(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(HashKeyError, match=reason) as raised:
        load_hash_key(path)

    assert str(path) in str(raised.value)
    assert "xxxx" not in str(raised.value)
