"""A large batch is checked a chunk at a time while PostgreSQL stores the chunks before: same answers.

DataStorage starts writing a batch before it has checked every event, so that
checking and storing overlap. An invalid event found on the way must still
refuse the whole batch exactly as a check of the whole batch before writing
did: every invalid event named, schema errors before the time window, nothing
stored, nothing queued.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

import httpx

from datastorage.repository import COPY_FROM_ROWS, FIRST_COPY_ROWS
from test.integration.datastorage.support import (
    BATCH_PATH,
    OpenStack,
    Stack,
    assert_problem,
    dlq_length,
    execute,
    logged,
    make_event,
    seconds_ago,
    sql,
    stored_count_by_id,
)

SIZE: Final = COPY_FROM_ROWS + 200
# Rows PostgreSQL has been handed, counted by a sequence, which a rollback leaves as it is.
COUNT_ROWS: Final = """
CREATE SEQUENCE rows_handed;
CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('rows_handed');
    RETURN NEW;
END $$;
CREATE TRIGGER count_row BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION count_row();
"""


def large_batch(correlation_id: str, changes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """SIZE valid events but for those at the indexes of `changes`, changed as they say."""
    events = [make_event(correlation_id, event_data={"n": n}) for n in range(SIZE)]
    for index, change in changes.items():
        events[index].update(change)
    return events


def test_an_invalid_event_late_in_a_large_batch_refuses_it_whole_naming_every_invalid_event(
    ds_stack: Stack, ds_client: httpx.Client, correlation_id: str
) -> None:
    too_old = {"event_timestamp": seconds_ago(timedelta(days=8).total_seconds()).isoformat()}
    # Index 300 is checked first, but a schema error anywhere comes before the time window.
    invalid = {300: too_old, 600: {"event_outcome": "maybe"}, 650: {"event_outcome": "perhaps"}}

    refused = ds_client.post(BATCH_PATH, json=large_batch(correlation_id, invalid))

    body = assert_problem(refused, 400, "validation-error")
    assert body["index"] == 600
    assert body["detail"].startswith("event at index 600: event_outcome: ")
    assert body["detail"].endswith("(and 1 more errors)")
    assert set(body["field_errors"]) == {"[600].event_outcome", "[650].event_outcome"}
    assert stored_count_by_id(ds_stack.database_url, correlation_id) == {}
    heads = "SELECT 1 FROM audit_chain_heads WHERE correlation_id = $1"
    assert sql(ds_stack.database_url, heads, correlation_id) == []

    too_old_alone = ds_client.post(BATCH_PATH, json=large_batch(correlation_id, {300: too_old}))
    assert_problem(too_old_alone, 400, "validation-error", "event at index 300: invalid timestamp")

    # The connection the refused writes used is fine: the batch, valid, is stored whole.
    assert ds_client.post(BATCH_PATH, json=large_batch(correlation_id, {})).status_code == 201
    assert len(stored_count_by_id(ds_stack.database_url, correlation_id)) == SIZE


def test_postgres_stores_the_first_rows_of_a_large_batch_before_its_last_events_are_checked(
    stack_on_shared_servers: OpenStack, correlation_id: str
) -> None:
    with stack_on_shared_servers() as stack, stack.client() as client:
        execute(stack.database_url, COUNT_ROWS)
        events = large_batch(correlation_id, {SIZE - 1: {"event_outcome": "maybe"}})

        assert_problem(client.post(BATCH_PATH, json=events), 400, "validation-error", f"index {SIZE - 1}")

        [handed] = sql(stack.database_url, "SELECT last_value, is_called FROM rows_handed")
        assert handed["is_called"] and handed["last_value"] >= FIRST_COPY_ROWS
        assert stored_count_by_id(stack.database_url, correlation_id) == {}
        assert dlq_length(stack.redis_url) == 0
        # The write rolled back cleanly: the COPY in flight when the invalid event was found had ended.
        assert [entry for entry in logged(stack.log_path, "") if entry["level"] == "error"] == []
