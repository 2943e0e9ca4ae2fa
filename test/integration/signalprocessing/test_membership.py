"""Shard membership against the real API server: each replica's Lease, the live replicas of a group, and
how a replica that leaves, cleanly or silently, stops being one.

No controller runs here. Each spec drives `controller.membership.Membership` instances in a namespace
of its own, with a shard group of its own, and calls `beat()` itself (one renewal and one look at the
group's Leases) instead of waiting for the background loop; one spec runs the loop. An observer whose
clock is a `FakeClock` sees a silent Lease expire without the spec waiting out its duration, which is
also what shows that expiry is judged on the observer's clock and not on the Lease's `renewTime`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from controller import kube
from controller.membership import GROUP_LABEL, Membership
from devstack.state import StackState
from test.integration.polling import eventually

# Seconds; whole, so the Lease's leaseDurationSeconds is exactly this, and a sum of the fake clock's
# steps (halves) lands on it exactly.
LEASE_SECONDS = 3.0
# The loop spec runs on the real clock: short, so the whole spec takes a few seconds.
LOOP_LEASE_SECONDS = 1.5
LOOP_SPAN = timedelta(seconds=2 * LOOP_LEASE_SECONDS)


@dataclass
class FakeClock:
    """A monotonic clock that moves only when the spec says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Replica:
    """One member of a shard group, and every membership it reported, in order."""

    membership: Membership
    reports: list[frozenset[str]]

    async def beat(self) -> None:
        await self.membership.beat()

    @property
    def members(self) -> frozenset[str]:
        return self.membership.members


Join = Callable[..., Replica]


@pytest.fixture
async def api(stack: StackState) -> AsyncIterator[kube.ApiClient]:
    async with kube.ApiClient(kube.Credentials.from_kubeconfig(stack.kubeconfig)) as opened:
        yield opened


@pytest.fixture
def group() -> str:
    """A shard group no other spec, worker or run shares."""
    return f"sg-{secrets.token_hex(4)}"


@pytest.fixture
async def join(api: kube.ApiClient, namespace: str, group: str) -> AsyncIterator[Join]:
    """Makes replicas of `group` (or of `in_group`) whose Leases live in the spec's namespace; closes
    them all at the end, which stops any background loop and deletes any Lease still there."""
    made: list[Replica] = []

    def make(
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        in_group: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> Replica:
        reports: list[frozenset[str]] = []

        async def record(members: frozenset[str]) -> None:
            reports.append(members)

        membership = Membership(
            api,
            namespace=namespace,
            group=in_group or group,
            replica=name,
            lease_seconds=lease_seconds,
            on_change=record,
            clock=clock,
        )
        replica = Replica(membership, reports)
        made.append(replica)
        return replica

    yield make
    for replica in made:
        await replica.membership.close()


async def leases(api: kube.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    """Every Lease in `namespace`, by name."""
    return {lease["metadata"]["name"]: lease for lease in await api.list(kube.LEASES, namespace=namespace)}


async def beat_all(*replicas: Replica) -> None:
    for replica in replicas:
        await replica.beat()


async def test_each_replica_holds_a_lease_of_its_group_and_reports_the_others_as_live(
    api: kube.ApiClient, namespace: str, group: str, join: Join
) -> None:
    r0, r1, r2 = join("r0"), join("r1"), join("r2")

    await beat_all(r0, r1, r2)  # each sees the Leases of those that beat before it
    await beat_all(r0, r1, r2)

    everyone = frozenset({"r0", "r1", "r2"})
    assert [r0.members, r1.members, r2.members] == [everyone] * 3
    # A change is reported once, when it is seen; an unchanged membership is not reported again.
    assert r0.reports == [{"r0"}, everyone]
    assert r1.reports == [{"r0", "r1"}, everyone]
    assert r2.reports == [everyone]
    held = {
        name: (
            lease["metadata"]["labels"],
            lease["spec"]["holderIdentity"],
            lease["spec"]["leaseDurationSeconds"],
        )
        for name, lease in (await leases(api, namespace)).items()
    }
    assert held == {f"{group}-{r}": ({GROUP_LABEL: group}, r, int(LEASE_SECONDS)) for r in everyone}


async def test_a_replica_that_closes_deletes_its_lease_and_the_next_beat_of_the_others_reports_it_gone(
    api: kube.ApiClient, namespace: str, group: str, join: Join
) -> None:
    r0, r1 = join("r0"), join("r1")
    await beat_all(r0, r1, r0)
    assert r0.members == {"r0", "r1"}

    await r1.membership.close()

    assert set(await leases(api, namespace)) == {f"{group}-r0"}
    await r0.beat()
    assert r0.members == {"r0"}
    assert r0.reports == [{"r0"}, {"r0", "r1"}, {"r0"}]


async def test_a_silent_replica_is_gone_after_a_lease_duration_on_the_observers_clock_and_forgotten_after_two(
    api: kube.ApiClient, namespace: str, group: str, join: Join
) -> None:
    clock = FakeClock()
    observer, silent = join("r0", clock=clock), join("r1")
    await beat_all(observer, silent, observer)
    assert observer.members == {"r0", "r1"}
    # From here on `silent` never renews again, and its Lease is not deleted: a crashed replica.

    clock.advance(LEASE_SECONDS - 0.5)
    await observer.beat()
    assert observer.members == {"r0", "r1"}, "a Lease unchanged for less than its duration expired"

    clock.advance(0.5)
    await observer.beat()
    assert observer.members == {"r0"}, "a Lease unchanged for its whole duration still counts as live"
    assert f"{group}-r1" in await leases(api, namespace), "an expired Lease was deleted at once"

    clock.advance(LEASE_SECONDS - 0.5)
    await observer.beat()
    assert f"{group}-r1" in await leases(api, namespace), "a Lease was deleted before two durations"

    clock.advance(0.5)
    await observer.beat()
    assert set(await leases(api, namespace)) == {f"{group}-r0"}, "a Lease expired two durations ago stayed"
    assert observer.reports == [{"r0"}, {"r0", "r1"}, {"r0"}]


async def test_a_silent_replica_that_renews_before_it_is_forgotten_is_live_again_and_keeps_its_lease(
    api: kube.ApiClient, namespace: str, group: str, join: Join
) -> None:
    clock = FakeClock()
    observer, paused = join("r0", clock=clock), join("r1")
    await beat_all(observer, paused, observer)
    clock.advance(LEASE_SECONDS)
    await observer.beat()
    assert observer.members == {"r0"}

    await paused.beat()  # a new renewTime: the observer's clock for it starts again
    await observer.beat()
    assert observer.members == {"r0", "r1"}

    clock.advance(LEASE_SECONDS)  # two durations after it was first seen, one after it renewed
    await observer.beat()
    assert observer.members == {"r0"}
    assert set(await leases(api, namespace)) == {f"{group}-r0", f"{group}-r1"}
    assert observer.reports == [{"r0"}, {"r0", "r1"}, {"r0"}, {"r0", "r1"}, {"r0"}]


async def test_the_leases_of_another_group_in_the_same_namespace_are_ignored(
    api: kube.ApiClient, namespace: str, group: str, join: Join
) -> None:
    other_group = f"sg-{secrets.token_hex(4)}"
    r0, r1 = join("r0"), join("r1")
    stranger = join("r1", in_group=other_group)  # the same replica name, in another group

    await beat_all(stranger, r0, stranger, r0)

    assert r0.members == {"r0"}
    assert stranger.members == {"r1"}
    assert r0.reports == [{"r0"}] and stranger.reports == [{"r1"}]
    await beat_all(r1, r0)
    assert r0.members == {"r0", "r1"}
    assert stranger.members == {"r1"}
    assert set(await leases(api, namespace)) == {f"{group}-r0", f"{group}-r1", f"{other_group}-r1"}


async def test_the_background_loop_keeps_a_replica_live_and_sees_a_closed_one_leave(
    api_client: client.ApiClient, namespace: str, group: str, join: Join
) -> None:
    r0 = join("r0", lease_seconds=LOOP_LEASE_SECONDS)
    r1 = join("r1", lease_seconds=LOOP_LEASE_SECONDS)
    coordination = client.CoordinationV1Api(api_client)

    renewals: set[datetime] = set()

    def renewed_for_two_durations() -> bool:
        renewals.add(coordination.read_namespaced_lease(f"{group}-r1", namespace).spec.renew_time)
        return max(renewals) - min(renewals) > LOOP_SPAN

    await r0.membership.start()
    await r1.membership.start()
    # The waits poll from a thread, so that the loops keep running on this spec's event loop.
    await asyncio.to_thread(
        eventually,
        lambda: r0.members == r1.members == {"r0", "r1"},
        timeout=30,
        message="the two replicas' loops did not report each other",
    )
    joined = list(r0.reports)
    # Renewed by the loop, again and again, for more than two durations, without a beat from the spec.
    await asyncio.to_thread(
        eventually,
        renewed_for_two_durations,
        timeout=30,
        message="the loop did not keep renewing the Lease for two durations",
    )
    assert r0.reports == joined == [{"r0"}, {"r0", "r1"}], "a replica renewed by its loop was reported gone"

    await r1.membership.close()
    await asyncio.to_thread(
        eventually,
        lambda: r0.members == {"r0"},
        timeout=30,
        message="the loop did not report the closed replica gone",
    )
    assert r0.reports == [{"r0"}, {"r0", "r1"}, {"r0"}]
