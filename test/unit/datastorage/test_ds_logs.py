"""An embedded instance's log: inside `logging_to`, DataStorage and its libraries log to its file only.

Each test makes its loggers before the block, as importing a module does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest

from datastorage.logs import EMBEDDED_LOGGERS, json_file_handler, logging_to


class Collected(logging.Handler):
    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


def host_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize("logger", [f"{name}.module" for name in EMBEDDED_LOGGERS])
def test_inside_the_block_records_go_to_the_instance_handler_only(
    logger: str, caplog: pytest.LogCaptureFixture
) -> None:
    instance = Collected()
    log = logging.getLogger(logger)
    with logging_to(instance):
        log.warning("inside")

    assert instance.messages == ["inside"]
    assert host_messages(caplog) == []


def test_tasks_of_an_event_loop_run_inside_the_block_log_there(caplog: pytest.LogCaptureFixture) -> None:
    instance = Collected()
    log = logging.getLogger("datastorage.dlq")

    async def background() -> None:
        log.warning("from a task")

    async def main() -> None:
        await asyncio.create_task(background())

    with logging_to(instance):
        asyncio.run(main())

    assert instance.messages == ["from a task"]
    assert host_messages(caplog) == []


def test_records_made_outside_the_block_reach_the_host_as_before(caplog: pytest.LogCaptureFixture) -> None:
    instance = Collected()
    in_block = threading.Event()
    leave = threading.Event()

    def instance_thread() -> None:
        with logging_to(instance):
            in_block.set()
            leave.wait(10)

    thread = threading.Thread(target=instance_thread)
    thread.start()
    try:
        in_block.wait(10)
        logging.getLogger("datastorage.service").warning("host thread, while an instance runs")
        logging.getLogger("urllib3.connectionpool").warning("not an instance library")
    finally:
        leave.set()
        thread.join()
    logging.getLogger("asyncio").error("host thread, after")

    assert instance.messages == []
    assert host_messages(caplog) == [
        "host thread, while an instance runs",
        "not an instance library",
        "host thread, after",
    ]


def test_the_instance_handler_level_applies(caplog: pytest.LogCaptureFixture) -> None:
    instance = Collected(level=logging.ERROR)
    log = logging.getLogger("datastorage.ingest")
    with logging_to(instance):
        log.warning("below the level")
        log.error("at the level")

    assert instance.messages == ["at the level"]
    assert host_messages(caplog) == []


def test_the_file_holds_one_json_object_per_record_with_its_extra_fields(tmp_path: Path) -> None:
    handler = json_file_handler(tmp_path / "datastorage.log", "info")
    log = logging.getLogger("datastorage.dlq")
    try:
        with logging_to(handler):
            log.warning("Redis unreachable", extra={"error": "refused"})
    finally:
        handler.close()

    [line] = (tmp_path / "datastorage.log").read_text().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"], entry["error"]) == (
        "warning",
        "datastorage.dlq",
        "Redis unreachable",
        "refused",
    )
