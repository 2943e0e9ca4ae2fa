"""Time rules of the audit API, as pure functions of an injected clock.

Parsing of event timestamps (RFC 3339) and of the query bounds `since` and
`until` (RFC 3339, a date, or a duration back from now such as `24h` or
`7d`), the accepted window for event timestamps, and the UTC calendar day
that decides an event's partition. Nothing here does I/O; "now" always comes
from a `Clock`, so tests can move time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Final

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; the app's only source of "now"."""

FUTURE_TOLERANCE: Final = timedelta(minutes=5)
MAX_AGE: Final = timedelta(days=7)

_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_LOCAL_DATETIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+", re.ASCII)
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
# A duration longer than this reaches before year 1 and would overflow datetime.
_LONGEST_DURATION: Final = timedelta(days=365 * 1000)


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with an offset (`Z` or `±hh:mm`), in UTC; fractions beyond microseconds are cut.

    Raises ValueError with a message fit for an API client.
    """
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"'{text}' is not an RFC 3339 date-time such as 2025-01-31T12:00:00Z")
    try:
        # fromisoformat cuts fractions beyond microseconds (Go sends nanoseconds) but wants
        # upper-case T and Z; converting to UTC surfaces offsets that pass year 1 or 9999.
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"'{text}' is not a valid date-time: {error}") from None


def parse_date(text: str) -> date:
    """A calendar day written `YYYY-MM-DD` (RFC 3339 full-date); raises ValueError for anything else."""
    if not _DATE.fullmatch(text):
        raise ValueError(f"'{text}' is not a date such as 2025-01-31")
    return _checked(lambda: datetime.fromisoformat(text), text).date()


def check_event_time(timestamp: datetime, now: datetime) -> None:
    """Raises ValueError unless `timestamp` is at most 5 minutes ahead of `now` and at most 7 days old."""
    if timestamp > now + FUTURE_TOLERANCE:
        raise ValueError(
            "timestamp is in the future (server time: "
            f"{format_timestamp(now)}, event time: {format_timestamp(timestamp)})"
        )
    age = now - timestamp
    if age > MAX_AGE:
        raise ValueError(f"timestamp is too old (must be within 7 days, age: {_describe(age)})")


def parse_time_bound(text: str, now: datetime) -> datetime:
    """A `since`/`until` value: RFC 3339, `YYYY-MM-DDTHH:MM:SS` (UTC), `YYYY-MM-DD` (UTC midnight),
    or a duration such as `24h`, `90m`, `1h30m` or `7d` meaning that long before `now`.
    """
    if _DURATION.fullmatch(text):
        return now - parse_duration(text)
    if _DATE.fullmatch(text):
        return _checked(lambda: datetime.fromisoformat(text).replace(tzinfo=UTC), text)
    if _LOCAL_DATETIME.fullmatch(text):
        return _checked(lambda: datetime.fromisoformat(text).replace(tzinfo=UTC), text)
    if _RFC3339.fullmatch(text):
        return parse_rfc3339(text)
    raise ValueError(
        f"'{text}' is not a time: use RFC 3339 (2025-01-31T12:00:00Z), a date (2025-01-31) "
        "or a duration back from now (24h, 90m, 7d)"
    )


def parse_duration(text: str) -> timedelta:
    """Go-style durations (`1h30m`, `500ms`) plus days (`7d`); raises ValueError if out of range."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"'{text}' is not a duration such as 24h, 90m or 7d")
    seconds = sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text))
    if seconds > _LONGEST_DURATION.total_seconds():
        raise ValueError(f"duration '{text}' is too long")
    return timedelta(seconds=seconds)


def event_date(timestamp: datetime) -> date:
    """The UTC calendar day of an event: its partition key, the same on every retry of the event."""
    return timestamp.astimezone(UTC).date()


def format_timestamp(timestamp: datetime) -> str:
    """RFC 3339 in UTC with `Z`, keeping microseconds only when there are any."""
    utc = timestamp.astimezone(UTC)
    text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _checked(parse: Callable[[], datetime], text: str) -> datetime:
    try:
        return parse()
    except ValueError as error:
        raise ValueError(f"'{text}' is not a valid date: {error}") from None


def _describe(age: timedelta) -> str:
    hours, remainder = divmod(int(age.total_seconds()), 3600)
    return f"{hours}h{remainder // 60}m{remainder % 60}s"
