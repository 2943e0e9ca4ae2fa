"""How validation errors become the `detail` of a 400: field, batch index, and body shape in words."""

from __future__ import annotations

from typing import Any

import pytest

from datastorage.problems import describe_validation_errors


def error(
    loc: tuple[Any, ...], kind: str = "string_too_long", msg: str = "too long", **extra: Any
) -> dict[str, Any]:
    return {"loc": loc, "type": kind, "msg": msg, **extra}


def test_a_batch_error_names_the_element_and_the_field() -> None:
    described = describe_validation_errors([error(("body", 3, "event_type")), error(("body", 4, "version"))])
    assert described.detail == "event at index 3: event_type: too long (and 1 more errors)"
    assert described.index == 3
    assert described.code == "validation-error"
    assert described.field_errors == {"[3].event_type": "too long", "[4].version": "too long"}


def test_event_data_errors_have_their_own_problem_type() -> None:
    described = describe_validation_errors(
        [error(("body", "event_data"), "dict_type", "Input should be a dict")]
    )
    assert described.code == "invalid-event-data"
    assert described.detail == "event_data: Input should be a dict"


@pytest.mark.parametrize(
    ("errors", "detail"),
    [
        pytest.param(
            [error(("body",), "list_type", input={"version": "1.0"})],
            "request body must be a JSON array, not a single object",
            id="object-for-batch",
        ),
        pytest.param(
            [error(("body",), "list_type", input="text")],
            "request body must be a JSON array of audit events, not a string",
            id="string-for-batch",
        ),
        pytest.param(
            [error(("body",), "model_type", input=[1])],
            "request body must be a JSON object (an audit event), not an array",
            id="array-for-single",
        ),
        pytest.param(
            [error(("body",), "model_type", input=b"text")],
            "request body must be JSON, sent with Content-Type: application/json",
            id="not-json-content-type",
        ),
        pytest.param([error(("body",), "missing")], "request body is required", id="no-body"),
        pytest.param(
            [error(("body", 7), "json_invalid", ctx={"error": "Expecting value"})],
            "request body is not valid JSON: Expecting value at position 7",
            id="broken-json",
        ),
        pytest.param(
            [error(("body", 2), "model_type", input=None)],
            "event at index 2: must be a JSON object (an audit event), not null",
            id="null-batch-element",
        ),
    ],
)
def test_body_shape_errors_say_what_was_expected(errors: list[dict[str, Any]], detail: str) -> None:
    described = describe_validation_errors(errors)
    assert described.detail == detail


def test_query_parameter_errors_name_the_parameter() -> None:
    described = describe_validation_errors([error(("query", "limit"), "less_than_equal", "at most 1000")])
    assert described.detail == "Validation failed for query parameters: limit: at most 1000"
    assert described.field_errors == {"limit": "at most 1000"}
