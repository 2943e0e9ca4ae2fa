"""Checking one hash chain: rehash every stored event, follow the links, and hold the ends to the head.

`ChainVerification` is fed the chain's events in chain order, one at a time,
so a chain of any length is checked in bounded memory. Per event it checks
that its `chain_sequence` is the next one, that its `previous_event_hash` is
the `event_hash` of the event before it (for the oldest stored event: ""
or, after retention, the head's `purged_through_hash`), and that its stored
fields still hash to its `event_hash` under its own `hash_algorithm`. At
the end it checks that the newest stored event is the head's newest event
and that stored plus purged events make the head's count, which is how the
deletion of the newest events shows. Pure: the caller reads the rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from datastorage.chain import ChainHead, ChainLink
from datastorage.hashing import HMAC_SHA256, SHA256, EventHasher, canonical_bytes
from datastorage.records import AuditRecord

# Problems listed in one report; the rest are counted, so a rewritten chain cannot make the answer huge.
MAX_LISTED: Final = 100


@dataclass(frozen=True, slots=True)
class TamperedEvent:
    """One failed check of one event: what the chain calls for (`expected_hash`) against what is stored
    (`actual_hash`), the event's stored `previous_event_hash`, and what the failure means."""

    event_id: uuid.UUID
    event_timestamp: datetime
    expected_hash: str
    actual_hash: str
    previous_hash: str
    message: str


@dataclass(slots=True)
class ChainReport:
    correlation_id: str
    total_events: int = 0
    verified_events: int = 0
    purged_events: int = 0
    unchained_events: int = 0
    tampered_events: list[TamperedEvent] = field(default_factory=list)
    # Every failed check, listed or not, and what is wrong with the chain as a whole.
    failed_checks: int = 0
    chain_problems: list[str] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return self.failed_checks == 0 and not self.chain_problems

    @property
    def message(self) -> str:
        unchained = (
            f"; {self.unchained_events} events stored before the hash chain existed are not part of it"
            if self.unchained_events
            else ""
        )
        purged = f", {self.purged_events} purged by retention" if self.purged_events else ""
        if self.is_valid:
            if self.total_events == 0 and self.purged_events == 0:
                return f"no chained events with this correlation_id: nothing to verify{unchained}"
            return f"chain intact: {self.verified_events} events verified{purged}{unchained}"
        findings = []
        if self.failed_checks:
            listed = len(self.tampered_events)
            more = f" ({listed} listed)" if listed < self.failed_checks else ""
            checks = "check" if self.failed_checks == 1 else "checks"
            findings.append(f"{self.failed_checks} failed {checks}{more}")
        findings.extend(self.chain_problems)
        return f"chain broken: {'; '.join(findings)}{unchained}"


class ChainVerification:
    """Checks one chain, fed its events in chain order; `finish` gives the report."""

    def __init__(self, correlation_id: str, head: ChainHead | None, hasher: EventHasher) -> None:
        self._head = head
        self._hasher = hasher
        self._report = ChainReport(correlation_id, purged_events=head.purged_count if head else 0)
        self._expected_previous = head.purged_through_hash if head else ""
        self._expected_sequence = (head.purged_count if head else 0) + 1
        self._newest: tuple[AuditRecord, ChainLink] | None = None
        self._keyed_seen = False

    def check(self, record: AuditRecord, link: ChainLink) -> None:
        """Checks the next event of the chain.

        Raises HashKeyMissing for an event hashed with a key this instance does not have.
        """
        report = self._report
        report.total_events += 1
        failures = report.failed_checks
        if (
            link.chain_sequence != self._expected_sequence
            or link.previous_event_hash != self._expected_previous
        ):
            self._fail(
                record,
                link,
                expected=self._expected_previous,
                actual=link.previous_event_hash,
                message=self._link_failure(link),
            )
        try:
            rehashed = self._hasher.rehash(
                link.hash_algorithm, link.previous_event_hash, canonical_bytes(record)
            )
        except ValueError as error:
            self._fail(
                record, link, expected="", actual=link.event_hash, message=f"cannot be rehashed: {error}"
            )
        else:
            if rehashed != link.event_hash:
                self._fail(
                    record,
                    link,
                    expected=rehashed,
                    actual=link.event_hash,
                    message="modified: its stored fields no longer hash to its event_hash",
                )
        if link.hash_algorithm == HMAC_SHA256:
            self._keyed_seen = True
        elif link.hash_algorithm == SHA256 and self._keyed_seen and self._hasher.key is not None:
            self._fail(
                record,
                link,
                expected="",
                actual=link.event_hash,
                message="hashed without the key after keyed events: rewritten without the key, "
                "or the key was missing from the configuration when it was stored",
            )
        if report.failed_checks == failures:
            report.verified_events += 1
        self._expected_previous = link.event_hash
        self._expected_sequence = link.chain_sequence + 1
        self._newest = (record, link)

    def finish(self, *, unchained_events: int) -> ChainReport:
        """The report, once every stored event of the chain was checked."""
        report = self._report
        report.unchained_events = unchained_events
        head = self._head
        if head is None:
            if self._newest is not None:
                report.chain_problems.append("the chain head is missing (deleted)")
            return report
        stored = report.total_events
        if stored + head.purged_count != head.event_count:
            report.chain_problems.append(
                f"the chain head counts {head.event_count} events: "
                f"{stored} stored, {head.purged_count} purged"
            )
        newest_hash = self._newest[1].event_hash if self._newest else head.purged_through_hash
        if newest_hash != head.last_event_hash:
            self._fail_missing_newest(head, actual=newest_hash)
        return report

    def _link_failure(self, link: ChainLink) -> str:
        expected = self._expected_sequence
        if link.chain_sequence > expected:
            missing = link.chain_sequence - expected
            return (
                f"{missing} {'event' if missing == 1 else 'events'} missing before this one: "
                f"chain_sequence {link.chain_sequence} follows {expected - 1}"
            )
        if link.chain_sequence < expected:
            return (
                f"out of order: chain_sequence {link.chain_sequence} where {expected} was expected "
                "(events reordered or duplicated)"
            )
        if self._newest is None:
            start = "purged_through_hash of the chain head" if self._report.purged_events else '""'
            return (
                f"does not start the chain: its previous_event_hash should be {start} "
                "(the oldest events deleted without a purge record, or this event rewritten)"
            )
        return (
            "does not follow the event before it: its previous_event_hash is not that event's "
            "event_hash (events reordered, or the event before it rewritten)"
        )

    def _fail(
        self, record: AuditRecord, link: ChainLink, *, expected: str, actual: str, message: str
    ) -> None:
        self._list(
            TamperedEvent(
                event_id=record.event_id,
                event_timestamp=record.event_timestamp,
                expected_hash=expected,
                actual_hash=actual,
                previous_hash=link.previous_event_hash,
                message=f"chain_sequence {link.chain_sequence}: {message}",
            )
        )

    def _fail_missing_newest(self, head: ChainHead, *, actual: str) -> None:
        self._list(
            TamperedEvent(
                event_id=head.last_event_id,
                event_timestamp=head.last_event_timestamp,
                expected_hash=head.last_event_hash,
                actual_hash=actual,
                previous_hash="",
                message=(
                    f"chain_sequence {head.event_count}: the chain head's newest event is not stored "
                    "(deleted, or the newest events replaced)"
                ),
            )
        )

    def _list(self, tampered: TamperedEvent) -> None:
        self._report.failed_checks += 1
        if len(self._report.tampered_events) < MAX_LISTED:
            self._report.tampered_events.append(tampered)
