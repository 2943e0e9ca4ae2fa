"""Shards: which SignalProcessings this replica processes when several replicas work at once.

An SP belongs to one of `count` shards, by a stable hash of its shard key (its UID, or its
namespace). The live replicas divide the shards between them by rendezvous hashing: each shard goes
to the replica whose hash with the shard is highest. Every replica that sees the same live set
computes the same division, without talking to the others, and a replica joining or leaving moves
only the shards it takes or gives up (about count/replicas), never shards between the others.

Two replicas may briefly both think they own a shard (one has seen a membership change the other
has not yet). That costs a wasted step, never a double write: every status write is conditional on
the resourceVersion the step started from, and the loser re-reads (`pipeline`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.signalprocessing import SignalProcessing


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def shard_of(key: str, count: int) -> int:
    """The shard of a shard key: the same on every replica, in every process, for ever."""
    return _hash(key) % count


def shards_of(replica: str, members: Iterable[str], count: int) -> frozenset[int]:
    """The shards `replica` owns when `members` are the live replicas (rendezvous hashing)."""
    live = sorted(set(members))
    if replica not in live:
        return frozenset()
    return frozenset(
        shard
        for shard in range(count)
        if max(live, key=lambda member: (_hash(f"{shard}/{member}"), member)) == replica
    )


@dataclass(frozen=True)
class ShardWork:
    """Who processes an SP: the replica, and the shard that brought the SP to it."""

    replica: str
    shard: int


@dataclass
class Shards:
    """This replica's share of the work: the shards it owns now, and the key that places an SP.

    `owns` is asked for every SP event and every retry; `update` is called by the membership
    whenever the live replicas change, and returns the shards gained, whose SPs the caller
    must look for (their events came and went while another replica owned them).
    """

    replica: str
    count: int
    key: str = "uid"  # or "namespace"
    owned: frozenset[int] = field(default_factory=frozenset)

    def shard(self, sp: SignalProcessing) -> int:
        key = sp.metadata.namespace if self.key == "namespace" else sp.metadata.uid
        return shard_of(key, self.count)

    def owns(self, sp: SignalProcessing) -> bool:
        return self.shard(sp) in self.owned

    def work(self, sp: SignalProcessing) -> ShardWork:
        return ShardWork(self.replica, self.shard(sp))

    def update(self, members: Iterable[str]) -> frozenset[int]:
        """Takes the shards this replica owns among `members`; returns those it did not own before."""
        owned = shards_of(self.replica, members, self.count)
        gained = owned - self.owned
        self.owned = owned
        return gained
