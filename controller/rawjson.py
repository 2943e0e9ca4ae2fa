"""Reading untrusted JSON from the API server into typed values, and writing it back compactly.

The API server validates against the CRD, but fields may still be absent, null (a nil map in Go)
or, in objects other controllers wrote, of another type. Every typed model in the controller reads
its raw dicts through these few functions, so "absent" means the same thing everywhere: an empty
string, an empty map, zero, false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def string_map(value: object) -> dict[str, str]:
    """A string map from JSON; null (a nil map) becomes empty, null values are left out."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def int_or_zero(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def str_or_empty(value: object) -> str:
    return value if isinstance(value, str) else ""


def compact(**fields: object) -> dict[str, object]:
    """Drops the fields that say nothing (None, "", empty maps and lists); keeps 0 and False."""
    return {k: v for k, v in fields.items() if v is not None and v != "" and v != {} and v != []}


def section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """A nested object; None when it is absent, null or not an object."""
    value = raw.get(key)
    return value if isinstance(value, Mapping) else None


def optional_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
