"""The event_data detail filter: which JSON values a `detail_value` text can match."""

from __future__ import annotations

import json

import pytest

from datastorage.repository import detail_matches


@pytest.mark.parametrize(
    ("value", "candidates"),
    [
        pytest.param("Completed", ["Completed"], id="text"),
        pytest.param("42", ["42", 42], id="integer"),
        pytest.param("-0.50", ["-0.50", -0.5], id="decimal-as-postgresql-writes-it"),
        pytest.param("true", ["true", True], id="boolean"),
        pytest.param("1e2", ["1e2"], id="exponent-postgresql-never-writes"),
        pytest.param("042", ["042"], id="leading-zero-postgresql-never-writes"),
        pytest.param("+1", ["+1"], id="plus-sign"),
        pytest.param("null", ["null"], id="null-only-as-text"),
        pytest.param('{"a": 1}', ['{"a": 1}'], id="object-only-as-text"),
        pytest.param("NaN", ["NaN"], id="nan-only-as-text"),
        pytest.param("", [""], id="empty"),
    ],
)
def test_a_detail_value_matches_the_string_and_the_scalar_postgresql_writes_as_it(
    value: str, candidates: list[object]
) -> None:
    assert [json.loads(match)["phase"] for match in detail_matches("phase", value)] == candidates


def test_the_key_is_quoted_as_json() -> None:
    assert [json.loads(match) for match in detail_matches('a "b"\\', "1")] == [
        {'a "b"\\': "1"},
        {'a "b"\\': 1},
    ]
