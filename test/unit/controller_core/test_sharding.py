"""Shards: an SP's shard, the division of the shards among live replicas, and what a change moves."""

from __future__ import annotations

import pytest

from controller.sharding import Shards, shard_of, shards_of
from controller.signalprocessing import SignalProcessing

COUNT = 64


def sp(uid: str, namespace: str = "shop") -> SignalProcessing:
    return SignalProcessing.from_raw(
        {
            "metadata": {"name": f"sp-{uid}", "namespace": namespace, "uid": uid},
            "spec": {
                "remediationRequestRef": {"name": "rr"},
                "signal": {"name": "s", "severity": "critical"},
            },
        }
    )


def division(members: set[str]) -> dict[str, frozenset[int]]:
    return {member: shards_of(member, members, COUNT) for member in members}


def test_a_key_has_one_shard_for_ever() -> None:
    # Pinned: a replica of another version, or a restarted one, must place every SP where this one does.
    assert [shard_of(key, COUNT) for key in ("uid-1", "uid-2", "team-a")] == [55, 3, 52]
    assert all(0 <= shard_of(f"uid-{n}", COUNT) < COUNT for n in range(1000))


@pytest.mark.parametrize("members", [{"r0"}, {"r0", "r1"}, {"r0", "r1", "r2"}, {f"r{n}" for n in range(7)}])
def test_the_live_replicas_own_every_shard_once(members: set[str]) -> None:
    shares = division(members)

    assert sorted(shard for owned in shares.values() for shard in owned) == list(range(COUNT))
    assert all(owned for owned in shares.values()), shares


def test_a_replica_that_is_not_live_owns_nothing() -> None:
    assert shards_of("r9", {"r0", "r1"}, COUNT) == frozenset()


def test_a_replica_joining_takes_shards_only_from_the_others_never_moving_theirs_between_them() -> None:
    before, after = division({"r0", "r1", "r2"}), division({"r0", "r1", "r2", "r3"})

    for member in ("r0", "r1", "r2"):
        assert after[member] <= before[member]
    assert after["r3"] == frozenset().union(*(before[m] - after[m] for m in ("r0", "r1", "r2")))


def test_a_replica_leaving_gives_its_shards_away_and_the_others_keep_theirs() -> None:
    before, after = division({"r0", "r1", "r2"}), division({"r0", "r2"})

    assert before["r0"] <= after["r0"] and before["r2"] <= after["r2"]
    assert (after["r0"] - before["r0"]) | (after["r2"] - before["r2"]) == before["r1"]


def test_shards_report_what_an_update_gained_and_place_sps_by_their_key() -> None:
    shards = Shards("r0", COUNT)
    assert not shards.owns(sp("uid-1"))  # before the first membership, nothing

    gained = shards.update({"r0"})
    assert gained == frozenset(range(COUNT)) and shards.owns(sp("uid-1"))

    gained = shards.update({"r0", "r1"})
    assert gained == frozenset()
    assert shards.owned == shards_of("r0", {"r0", "r1"}, COUNT)
    assert shards.update({"r0"}) == shards_of("r1", {"r0", "r1"}, COUNT)

    by_namespace = Shards("r0", COUNT, key="namespace")
    assert by_namespace.shard(sp("uid-1", "team-a")) == by_namespace.shard(sp("uid-2", "team-a")) == 52
    assert Shards("r0", COUNT).shard(sp("uid-2", "team-a")) == 3
    assert by_namespace.work(sp("uid-1", "team-a")).replica == "r0"
