"""DataStorage settings: read once from command-line flags and the environment, checked at start.

A flag wins over its environment variable, which wins over the default. A
missing or malformed setting raises `ConfigError` naming the flag, the
variable and the bad value, so the process stops before serving anything.
Settings are a frozen dataclass grouped by concern; nothing reads the
environment after this.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from datastorage.records import DEFAULT_RETENTION_DAYS
from datastorage.schemas import MAX_RETENTION_DAYS

MEBIBYTE: Final = 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and how to set it."""


@dataclass(frozen=True, slots=True)
class DlqSettings:
    max_len: int = 10_000
    max_attempts: int = 5
    batch_size: int = 100
    poll_interval: float = 1.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    claim_idle: float = 60.0


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """A token bucket per client address (see `datastorage.ratelimit`); off unless `enabled`."""

    enabled: bool = False
    rps: float = 50.0
    burst: int = 100
    max_clients: int = 10_000
    # Peers whose X-Forwarded-For names the client; from anyone else the header is ignored.
    trusted_proxies: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """The purge of events past retention (see `datastorage.retention`); off unless `enabled`."""

    enabled: bool = False
    interval: float = 24 * 3600.0  # the first run comes one interval after start
    batch_size: int = 1000
    # The floor of categories without a row in audit_retention_policies: 7 years, so that
    # no producer can shorten its audit trail (retention_days) unless the operator allows it.
    default_days: int = DEFAULT_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    redis_url: str
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 10 * MEBIBYTE
    db_pool_size: int = 10
    db_timeout: float = 10.0
    redis_timeout: float = 3.0
    partition_months_ahead: int = 2
    partition_check_interval: float = 3600.0
    log_level: str = "info"
    # The file holding the hash chain's HMAC key (a mounted Secret); none: events are hashed unkeyed.
    audit_hash_key_file: Path | None = None
    # uvicorn's HTTP/1.1 parser and the event loop: httptools and uvloop are C, several times cheaper
    # per request than h11 and asyncio's own loop (pure Python), which remain for comparison.
    http: str = "httptools"
    event_loop: str = "uvloop"
    # Single-event requests written in one transaction at most (group commit, see `ingest`); 1: each alone.
    group_commit_max_events: int = 100
    dlq: DlqSettings = field(default_factory=DlqSettings)
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)


@dataclass(frozen=True, slots=True)
class _Option:
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError("must be between 1 and 65535")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _switch(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError("must be true or false")
    return text.lower() == "true"


def _rate(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of requests per second")
    return value


def _retention_days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_RETENTION_DAYS:
        raise ValueError(f"must be between 1 and {MAX_RETENTION_DAYS} days")
    return value


def _networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); empty means none."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as error:
            raise ValueError(f"{error}; expected addresses or CIDRs such as 10.0.0.0/8") from None
    return tuple(networks)


def _database_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ValueError("must look like postgresql://user:password@host:port/database")
    return text


def _redis_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ValueError("must look like redis://host:port/0")
    return text


def _log_level(text: str) -> str:
    if text.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError("must be debug, info, warning or error")
    return text.lower()


def _host(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"must be {' or '.join(choices)}")
        return text.lower()

    return parse


def _file_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must be a file path")
    return Path(text)


_SETTINGS: Final = {
    "database_url": _Option("--database-url", "DATABASE_URL", _database_url, "PostgreSQL URL (required)"),
    "redis_url": _Option("--redis-url", "REDIS_URL", _redis_url, "Redis URL for the DLQ (required)"),
    "host": _Option("--host", "DATASTORAGE_HOST", _host, "address to listen on"),
    "port": _Option("--port", "DATASTORAGE_PORT", _port, "port to listen on"),
    "max_body_bytes": _Option(
        "--max-body-bytes", "DATASTORAGE_MAX_BODY_BYTES", _positive_int, "larger request bodies get 413"
    ),
    "db_pool_size": _Option(
        "--db-pool-size", "DATASTORAGE_DB_POOL_SIZE", _positive_int, "PostgreSQL connections"
    ),
    "db_timeout": _Option(
        "--db-timeout", "DATASTORAGE_DB_TIMEOUT", _positive_float, "seconds before a write goes to the DLQ"
    ),
    "partition_months_ahead": _Option(
        "--partition-months-ahead",
        "DATASTORAGE_PARTITION_MONTHS_AHEAD",
        _non_negative_int,
        "monthly partitions kept ready after the current month",
    ),
    "log_level": _Option("--log-level", "DATASTORAGE_LOG_LEVEL", _log_level, "debug, info, warning or error"),
    "http": _Option(
        "--http",
        "DATASTORAGE_HTTP",
        _one_of("httptools", "h11"),
        "HTTP/1.1 parser: httptools (C) or h11 (pure Python, slower)",
    ),
    "event_loop": _Option(
        "--event-loop",
        "DATASTORAGE_EVENT_LOOP",
        _one_of("uvloop", "asyncio"),
        "event loop: uvloop (C) or asyncio (the standard library's, slower)",
    ),
    "group_commit_max_events": _Option(
        "--group-commit-max-events",
        "DATASTORAGE_GROUP_COMMIT_MAX_EVENTS",
        _positive_int,
        "single-event requests that arrive while a write is in flight are written together in the "
        "next transaction, up to this many; 1 writes each alone",
    ),
    "audit_hash_key_file": _Option(
        "--audit-hash-key-file",
        "DATASTORAGE_AUDIT_HASH_KEY_FILE",
        _file_path,
        "file whose bytes (trailing newline stripped) key the events' HMAC-SHA256 hash chain; "
        "without it events are hashed with plain SHA-256",
    ),
}
_DLQ_SETTINGS: Final = {
    "max_len": _Option("--dlq-max-len", "DATASTORAGE_DLQ_MAX_LEN", _positive_int, "DLQ capacity in events"),
    "max_attempts": _Option(
        "--dlq-max-attempts",
        "DATASTORAGE_DLQ_MAX_ATTEMPTS",
        _positive_int,
        "rejected attempts before an entry moves to audit:dead-letter:events",
    ),
    "poll_interval": _Option(
        "--dlq-poll-interval", "DATASTORAGE_DLQ_POLL_INTERVAL", _positive_float, "seconds between DLQ checks"
    ),
    "backoff_max": _Option(
        "--dlq-backoff-max", "DATASTORAGE_DLQ_BACKOFF_MAX", _positive_float, "longest wait between retries"
    ),
    "claim_idle": _Option(
        "--dlq-claim-idle",
        "DATASTORAGE_DLQ_CLAIM_IDLE",
        _positive_float,
        "seconds before entries held by a vanished instance are taken over",
    ),
}

_RATE_LIMIT_SETTINGS: Final = {
    "enabled": _Option(
        "--rate-limit-enabled",
        "DATASTORAGE_RATE_LIMIT_ENABLED",
        _switch,
        "true: a client over its rate gets 429 (health, readiness and metrics never do)",
    ),
    "rps": _Option(
        "--rate-limit-rps",
        "DATASTORAGE_RATE_LIMIT_RPS",
        _rate,
        "requests per second each client may make, on average",
    ),
    "burst": _Option(
        "--rate-limit-burst",
        "DATASTORAGE_RATE_LIMIT_BURST",
        _positive_int,
        "requests a client may make at once, before its rate applies",
    ),
    "max_clients": _Option(
        "--rate-limit-max-clients",
        "DATASTORAGE_RATE_LIMIT_MAX_CLIENTS",
        _positive_int,
        "client addresses tracked at most; the least recently seen is forgotten first",
    ),
    "trusted_proxies": _Option(
        "--rate-limit-trusted-proxies",
        "DATASTORAGE_RATE_LIMIT_TRUSTED_PROXIES",
        _networks,
        "comma-separated CIDRs of proxies whose X-Forwarded-For names the client",
    ),
}

_RETENTION_SETTINGS: Final = {
    "enabled": _Option(
        "--retention-enabled",
        "DATASTORAGE_RETENTION_ENABLED",
        _switch,
        "true: purge events past retention periodically (never a case on legal hold)",
    ),
    "interval": _Option(
        "--retention-interval",
        "DATASTORAGE_RETENTION_INTERVAL",
        _positive_float,
        "seconds between purge runs; the first comes one interval after start",
    ),
    "batch_size": _Option(
        "--retention-batch-size",
        "DATASTORAGE_RETENTION_BATCH_SIZE",
        _positive_int,
        "events deleted per transaction where a whole month cannot be dropped",
    ),
    "default_days": _Option(
        "--retention-default-days",
        "DATASTORAGE_RETENTION_DEFAULT_DAYS",
        _retention_days,
        "retention floor of categories without a row in audit_retention_policies",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per setting; each defaults to None so that the environment can fill it."""
    for option in (
        *_SETTINGS.values(),
        *_DLQ_SETTINGS.values(),
        *_RATE_LIMIT_SETTINGS.values(),
        *_RETENTION_SETTINGS.values(),
    ):
        parser.add_argument(option.flag, default=None, help=f"{option.help} [env {option.env}]")


def load_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Builds `Settings` from flag values (keyed by setting name) and the environment."""
    chosen = _choose(_SETTINGS, flags, environ)
    dlq = DlqSettings(
        **_choose(_DLQ_SETTINGS, {k.removeprefix("dlq_"): v for k, v in flags.items()}, environ)
    )
    rate_limit = RateLimitSettings(
        **_choose(_RATE_LIMIT_SETTINGS, {k.removeprefix("rate_limit_"): v for k, v in flags.items()}, environ)
    )
    retention = RetentionSettings(
        **_choose(_RETENTION_SETTINGS, {k.removeprefix("retention_"): v for k, v in flags.items()}, environ)
    )
    for required in ("database_url", "redis_url"):
        if required not in chosen:
            option = _SETTINGS[required]
            raise ConfigError(f"{option.env} is not set: set it or pass {option.flag}")
    return Settings(**chosen, dlq=dlq, rate_limit=rate_limit, retention=retention)


def load_database_url(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> str:
    """Only the PostgreSQL URL, for commands that need nothing else (`migrate`)."""
    chosen = _choose({"database_url": _SETTINGS["database_url"]}, flags, environ)
    if "database_url" not in chosen:
        option = _SETTINGS["database_url"]
        raise ConfigError(f"{option.env} is not set: set it or pass {option.flag}")
    return str(chosen["database_url"])


def _choose(
    options: Mapping[str, _Option], flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for name, option in options.items():
        flag_value = flags.get(name)
        if flag_value is not None:
            source, raw = option.flag, flag_value
        elif option.env in environ:
            source, raw = option.env, environ[option.env]
        else:
            continue
        try:
            chosen[name] = option.parse(raw)
        except ValueError as error:
            raise ConfigError(f"{source}={redact_url(raw)!r} is invalid: {error}") from None
    return chosen


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***`, for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url
