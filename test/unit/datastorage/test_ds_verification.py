"""Linking events into a chain, and checking a chain: what each kind of damage looks like in the report."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from datastorage.chain import ChainHead, ChainLink, PreparedRecord, chain_lock_key, link_records
from datastorage.hashing import HMAC_SHA256, EventHasher, HashKey, HashKeyMissing, canonical_bytes
from datastorage.records import AuditRecord
from datastorage.schemas import AuditEventRequest
from datastorage.verification import MAX_LISTED, ChainVerification
from test.integration.datastorage.support import make_event

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UNKEYED = EventHasher()
KEYED = EventHasher(HashKey(b"unit-test-key"))

Chain = list[tuple[AuditRecord, ChainLink]]


def records(count: int, correlation_id: str = "rr-1") -> list[AuditRecord]:
    return [
        AuditEventRequest.model_validate(
            make_event(correlation_id, at=START + timedelta(seconds=n), event_data={"n": n})
        ).to_record()
        for n in range(count)
    ]


def prepared(batch: Sequence[AuditRecord]) -> list[PreparedRecord]:
    return [PreparedRecord(record, canonical_bytes(record)) for record in batch]


def stored_chain(count: int, hasher: EventHasher = UNKEYED) -> tuple[Chain, ChainHead]:
    batch = records(count)
    links, [head] = link_records(prepared(batch), {}, hasher)
    return list(zip(batch, links, strict=True)), head


def verify(chain: Chain, head: ChainHead | None, hasher: EventHasher = UNKEYED) -> ChainVerification:
    verification = ChainVerification("rr-1", head, hasher)
    for record, link in chain:
        verification.check(record, link)
    return verification


def messages(chain: Chain, head: ChainHead | None) -> list[str]:
    report = verify(chain, head).finish(unchained_events=0)
    return [tampered.message for tampered in report.tampered_events]


def test_new_events_continue_their_chain_from_its_head() -> None:
    first, second = records(2)
    other = records(1, "rr-2")[0]
    [link_1], [head] = link_records(prepared([first]), {}, UNKEYED)

    links, heads = link_records(prepared([other, second]), {"rr-1": head}, UNKEYED)

    assert (link_1.chain_sequence, link_1.previous_event_hash) == (1, "")
    assert link_1.event_hash == hashlib.sha256(canonical_bytes(first)).hexdigest()
    assert [(link.chain_sequence, link.previous_event_hash) for link in links] == [
        (1, ""),
        (2, link_1.event_hash),
    ]
    assert {h.correlation_id: (h.event_count, h.last_event_hash, h.last_event_id) for h in heads} == {
        "rr-1": (2, links[1].event_hash, second.event_id),
        "rr-2": (1, links[0].event_hash, other.event_id),
    }


def test_a_chains_lock_key_is_the_start_of_its_sha256_as_a_signed_bigint() -> None:
    digest = hashlib.sha256(b"rr-1").digest()
    assert chain_lock_key("rr-1") == int.from_bytes(digest[:8], "big", signed=True)
    assert -(2**63) <= chain_lock_key("any") < 2**63


def test_an_intact_chain_is_valid() -> None:
    chain, head = stored_chain(5, KEYED)

    report = verify(chain, head, KEYED).finish(unchained_events=2)

    assert (report.is_valid, report.total_events, report.verified_events) == (True, 5, 5)
    assert report.tampered_events == []
    assert report.message == (
        "chain intact: 5 events verified; 2 events stored before the hash chain existed are not part of it"
    )


def test_a_correlation_id_without_events_is_an_empty_valid_chain() -> None:
    report = verify([], None).finish(unchained_events=0)

    assert (report.is_valid, report.total_events) == (True, 0)
    assert report.message == "no chained events with this correlation_id: nothing to verify"


def test_a_modified_event_is_named_with_the_hash_its_fields_give() -> None:
    chain, head = stored_chain(3)
    record, link = chain[1]
    chain[1] = (dataclasses.replace(record, event_data={"n": 99}), link)

    report = verify(chain, head).finish(unchained_events=0)

    [tampered] = report.tampered_events
    assert tampered.event_id == record.event_id
    assert (
        tampered.message == "chain_sequence 2: modified: its stored fields no longer hash to its event_hash"
    )
    assert tampered.actual_hash == link.event_hash
    assert tampered.expected_hash == UNKEYED.link(link.previous_event_hash, canonical_bytes(chain[1][0]))
    assert (report.is_valid, report.verified_events) == (False, 2)


def test_a_deleted_middle_event_breaks_the_link_of_the_next() -> None:
    chain, head = stored_chain(4)
    del chain[1]

    assert messages(chain, head) == [
        "chain_sequence 3: 1 event missing before this one: chain_sequence 3 follows 1"
    ]
    report = verify(chain, head).finish(unchained_events=0)
    assert report.chain_problems == ["the chain head counts 4 events: 3 stored, 0 purged"]


def test_deleted_newest_events_show_against_the_head() -> None:
    chain, head = stored_chain(4)
    del chain[-2:]

    report = verify(chain, head).finish(unchained_events=0)

    [missing] = report.tampered_events
    assert (missing.event_id, missing.expected_hash, missing.actual_hash) == (
        head.last_event_id,
        head.last_event_hash,
        chain[-1][1].event_hash,
    )
    assert "the chain head's newest event is not stored" in missing.message
    assert report.message == (
        "chain broken: 1 failed check; the chain head counts 4 events: 2 stored, 0 purged"
    )


def test_events_swapped_in_the_chain_are_out_of_order() -> None:
    chain, head = stored_chain(4)
    (second, link_2), (third, link_3) = chain[1], chain[2]
    chain[1:3] = [
        (third, link_3._replace(chain_sequence=2)),
        (second, link_2._replace(chain_sequence=3)),
    ]

    assert messages(chain, head) == [
        "chain_sequence 2: does not follow the event before it: its previous_event_hash is not that "
        "event's event_hash (events reordered, or the event before it rewritten)",
        "chain_sequence 3: does not follow the event before it: its previous_event_hash is not that "
        "event's event_hash (events reordered, or the event before it rewritten)",
        "chain_sequence 4: does not follow the event before it: its previous_event_hash is not that "
        "event's event_hash (events reordered, or the event before it rewritten)",
    ]


def test_a_purged_prefix_recorded_on_the_head_is_valid_and_an_unrecorded_one_is_not() -> None:
    chain, head = stored_chain(5)
    purged = dataclasses.replace(head, purged_count=2, purged_through_hash=chain[1][1].event_hash)

    report = verify(chain[2:], purged).finish(unchained_events=0)

    assert (report.is_valid, report.total_events, report.purged_events) == (True, 3, 2)
    assert report.message == "chain intact: 3 events verified, 2 purged by retention"
    assert messages(chain[2:], head) == [
        "chain_sequence 3: 2 events missing before this one: chain_sequence 3 follows 0"
    ]


def test_a_fully_purged_chain_is_valid() -> None:
    _, head = stored_chain(2)
    purged = dataclasses.replace(head, purged_count=2, purged_through_hash=head.last_event_hash)

    assert verify([], purged).finish(unchained_events=0).is_valid


def test_events_without_their_head_are_not_valid() -> None:
    chain, _ = stored_chain(2)

    report = verify(chain, None).finish(unchained_events=0)

    assert report.chain_problems == ["the chain head is missing (deleted)"]
    assert not report.is_valid


def test_keyed_events_cannot_be_checked_without_the_key() -> None:
    chain, head = stored_chain(1, KEYED)

    with pytest.raises(HashKeyMissing):
        verify(chain, head, UNKEYED)


def test_unkeyed_events_after_keyed_ones_are_reported_when_the_key_is_configured() -> None:
    batch = records(2)
    [keyed_link], [head] = link_records(prepared(batch[:1]), {}, KEYED)
    [unkeyed_link], [head] = link_records(prepared(batch[1:]), {"rr-1": head}, UNKEYED)
    chain = [(batch[0], keyed_link), (batch[1], unkeyed_link)]

    report = verify(chain, head, KEYED).finish(unchained_events=0)

    assert keyed_link.hash_algorithm == HMAC_SHA256
    [downgrade] = report.tampered_events
    assert downgrade.message.startswith("chain_sequence 2: hashed without the key after keyed events")


def test_a_report_lists_a_bounded_number_of_failures_and_counts_the_rest() -> None:
    chain, head = stored_chain(MAX_LISTED + 5)
    chain = [(dataclasses.replace(record, severity="low"), link) for record, link in chain]

    report = verify(chain, head).finish(unchained_events=0)

    assert (len(report.tampered_events), report.failed_checks) == (MAX_LISTED, MAX_LISTED + 5)
    assert report.message == f"chain broken: {MAX_LISTED + 5} failed checks ({MAX_LISTED} listed)"
