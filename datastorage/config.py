"""DataStorage settings: read once from command-line flags and the environment, checked at start.

A flag wins over its environment variable, which wins over the default. A
missing or malformed setting raises `ConfigError` naming the flag, the
variable and the bad value, so the process stops before serving anything.
Settings are a frozen dataclass grouped by concern; nothing reads the
environment after this.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

MEBIBYTE: Final = 1024 * 1024


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
    dlq: DlqSettings = field(default_factory=DlqSettings)


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per setting; each defaults to None so that the environment can fill it."""
    for option in (*_SETTINGS.values(), *_DLQ_SETTINGS.values()):
        parser.add_argument(option.flag, default=None, help=f"{option.help} [env {option.env}]")


def load_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Builds `Settings` from flag values (keyed by setting name) and the environment."""
    chosen = _choose(_SETTINGS, flags, environ)
    dlq = DlqSettings(
        **_choose(_DLQ_SETTINGS, {k.removeprefix("dlq_"): v for k, v in flags.items()}, environ)
    )
    for required in ("database_url", "redis_url"):
        if required not in chosen:
            option = _SETTINGS[required]
            raise ConfigError(f"{option.env} is not set: set it or pass {option.flag}")
    return Settings(**chosen, dlq=dlq)


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
