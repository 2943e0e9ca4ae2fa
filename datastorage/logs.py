"""JSON log lines for DataStorage: one object per record, with any `extra=` fields as keys.

Only the command line (`python -m datastorage`) installs this on the root
logger. An embedded instance (`runner.DataStorageServer`, in tests) leaves
the host's handlers and levels as they are; given a log file, it writes its
own records and those of the libraries it runs on to that file alone
(`logging_to`), so that a host such as a pytest worker prints none of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

# Attributes every LogRecord has; anything else came from `extra=`.
# uvicorn adds `color_message`, a terminal-coloured copy of the message.
_STANDARD_ATTRIBUTES: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_json_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def json_file_handler(path: Path, level: str) -> logging.Handler:
    """JSON lines appended to `path`, for an embedded instance's `logging_to`."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level.upper())
    return handler


# What an embedded instance logs through: its own loggers, and those of uvicorn
# (errors of the ASGI app), asyncpg (the pool), redis-py and asyncio ("exception
# was never retrieved"), with all their children. Other libraries are not the
# instance's to redirect.
EMBEDDED_LOGGERS: Final = ("datastorage", "uvicorn", "asyncpg", "redis", "asyncio")

_instance_handler: ContextVar[logging.Handler | None] = ContextVar("datastorage_instance_log", default=None)
_install_lock = threading.Lock()


class _ToInstance(logging.Filter):
    """On each logger of EMBEDDED_LOGGERS: takes a record made inside `logging_to` to that block's handler,
    and stops it there, before any other handler sees it; lets any other record through untouched.

    A filter on the logger itself, because it runs before every handler: a test
    host attaches handlers of its own to loggers (pytest does, to those that do
    not propagate), so no arrangement of handlers could keep records from them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        handler = _instance_handler.get()
        if handler is None:
            return True
        if record.levelno >= handler.level:
            handler.handle(record)
        return False


_TO_INSTANCE: Final = _ToInstance()


def _is_embedded(name: str) -> bool:
    return any(name == root or name.startswith(f"{root}.") for root in EMBEDDED_LOGGERS)


@contextlib.contextmanager
def logging_to(handler: logging.Handler) -> Iterator[None]:
    """Inside the block, and in every task and callback of an event loop run from it, the records of
    EMBEDDED_LOGGERS go to `handler` only. Records made elsewhere, by other threads, reach the host's
    handlers as before. Loggers' levels are the host's: the block only chooses where records go.

    Only loggers that exist when the block begins are diverted; those of
    DataStorage and its libraries are all made when their modules are imported.
    """
    with _install_lock:
        names = [*EMBEDDED_LOGGERS, *logging.root.manager.loggerDict]
        for name in filter(_is_embedded, names):
            logger = logging.getLogger(name)
            if _TO_INSTANCE not in logger.filters:
                logger.addFilter(_TO_INSTANCE)
    token = _instance_handler.set(handler)
    try:
        yield
    finally:
        _instance_handler.reset(token)
