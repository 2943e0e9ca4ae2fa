"""Times as the SignalProcessing carries them: RFC 3339 whole seconds in UTC, and Go durations.

Kubernetes stores whole seconds, so a status written with `timestamp` and read back is the same
time; that is what keeps an audit trail rebuilt after a restart identical to the first one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds: what Kubernetes stores, so a re-read gives the same time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 time; one without a zone is taken as UTC. Raises ValueError for anything else."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def optional_time(value: object) -> datetime | None:
    """An RFC 3339 time from untrusted JSON; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


_GO_DURATION: Final = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def go_duration(delta: timedelta) -> str:
    """Whole seconds in Go's `Duration.String()` form: "0s", "42s", "5m0s", "26h3m4s"; negatives are 0s."""
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def parse_go_duration(text: str) -> timedelta | None:
    """The inverse of `go_duration` (fractional seconds accepted); None for anything else."""
    match = _GO_DURATION.match(text)
    if match is None or not text:
        return None
    hours, minutes, seconds = match.groups()
    return timedelta(hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))
