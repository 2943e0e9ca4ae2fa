"""Membership: the live replicas of a shard group, each known by its Lease (coordination.k8s.io/v1).

Every replica holds a Lease of its own, `<group>-<replica>` in the configured namespace, labelled
with the group, and renews it every third of the lease duration. At each renewal it lists the
group's Leases; a replica is live while its Lease keeps changing. Whether a Lease has changed is
judged by this replica's own clock (when it last saw `renewTime` move), never by comparing
`renewTime` with its clock, so a replica whose clock is off cannot expire the others, nor keep
itself alive. A Lease unchanged for its duration is expired: the survivors' next renewal (a third
of a duration later at most) sees it and takes its shards. A replica that stops cleanly deletes its
Lease, and the others take over at their next renewal. Leases expired for two durations are deleted
(conditionally, so a replica that comes back in between is not deleted).

A replica that cannot renew its own Lease for a whole duration counts itself out: it calls
`on_change` with no members, and so owns no shard, until it renews again. The others will have
taken its shards by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from controller import kube

logger = logging.getLogger(__name__)

GROUP_LABEL: Final = "kubernaut.ai/shard-group"
# A Lease expired this many durations ago is deleted by whichever survivor sees it first.
_FORGET_AFTER_DURATIONS: Final = 2


def _micro_time(at: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Sighting:
    renew_time: str
    seen_at: float  # this replica's monotonic clock when renew_time last changed


class Membership:
    """Holds this replica's Lease and reports the live replicas of the group on every change."""

    def __init__(
        self,
        api: kube.ApiClient,
        *,
        namespace: str,
        group: str,
        replica: str,
        lease_seconds: float,
        on_change: Callable[[frozenset[str]], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._group = group
        self._replica = replica
        self._lease_seconds = lease_seconds
        self._on_change = on_change
        self._clock = clock
        self._wall_clock = wall_clock
        self._own: kube.RawObject | None = None
        self._renewed_at: float | None = None
        self._sightings: dict[str, _Sighting] = {}
        self._members: frozenset[str] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def lease_name(self) -> str:
        return f"{self._group}-{self._replica}"

    @property
    def members(self) -> frozenset[str]:
        return self._members or frozenset()

    async def start(self) -> None:
        """Takes this replica's Lease and reports the first membership, then renews in the background."""
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shard-membership")

    async def close(self) -> None:
        """Stops renewing and deletes this replica's Lease, so the others take over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._own is not None:
            try:
                version = self._own["metadata"]["resourceVersion"]
                await self._api.delete(
                    kube.LEASES, self.lease_name, namespace=self._namespace, resource_version=version
                )
            except kube.ApiError as error:
                logger.warning("could not delete lease %s: %s; it expires by itself", self.lease_name, error)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                await self.beat()
            except Exception:  # the loop must outlive any one bad answer
                logger.exception("shard membership: renewal failed unexpectedly")

    async def beat(self) -> None:
        """Renews this replica's Lease, reads the group's, and reports the live replicas if they changed."""
        try:
            await self._renew()
        except kube.ApiError as error:
            logger.warning("could not renew lease %s: %s", self.lease_name, error)
        if self._renewed_at is None or self._clock() - self._renewed_at >= self._lease_seconds:
            # Not renewed for a whole duration: the others may have taken every shard of this replica.
            await self._report(frozenset())
            return
        try:
            leases = await self._api.list(
                kube.LEASES, namespace=self._namespace, label_selector=f"{GROUP_LABEL}={self._group}"
            )
        except kube.ApiError as error:
            logger.warning("could not list the leases of shard group %s: %s", self._group, error)
            return
        await self._report(await self._live(leases))

    async def _renew(self) -> None:
        now = _micro_time(self._wall_clock())
        if self._own is None:
            self._own = await self._api.get(kube.LEASES, self.lease_name, namespace=self._namespace)
        if self._own is None:
            self._own = await self._api.create(
                kube.LEASES, namespace=self._namespace, body=self._lease(now, None)
            )
        else:
            try:
                self._own = await self._api.replace(
                    kube.LEASES, self.lease_name, namespace=self._namespace, body=self._lease(now, self._own)
                )
            except (kube.Conflict, kube.NotFound):
                self._own = None  # deleted as expired, or changed by hand: start again from what is there
                raise
        self._renewed_at = self._clock()

    def _lease(self, now: str, current: kube.RawObject | None) -> kube.RawObject:
        metadata: dict[str, object] = {"name": self.lease_name, "labels": {GROUP_LABEL: self._group}}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self._replica,
                "leaseDurationSeconds": max(1, round(self._lease_seconds)),
                "renewTime": now,
            },
        }

    async def _live(self, leases: list[kube.RawObject]) -> frozenset[str]:
        now = self._clock()
        live = {self._replica}
        present = set()
        for lease in leases:
            metadata, spec = lease.get("metadata") or {}, lease.get("spec") or {}
            name, holder = str(metadata.get("name", "")), str(spec.get("holderIdentity") or "")
            if not holder or name == self.lease_name:
                continue
            present.add(name)
            renew_time = str(spec.get("renewTime") or "")
            sighting = self._sightings.get(name)
            if sighting is None or sighting.renew_time != renew_time:
                sighting = self._sightings[name] = _Sighting(renew_time, now)
            duration = float(spec.get("leaseDurationSeconds") or self._lease_seconds)
            silent = now - sighting.seen_at
            if silent < duration:
                live.add(holder)
            elif silent >= _FORGET_AFTER_DURATIONS * duration:
                await self._forget(name, str(metadata.get("resourceVersion", "")))
        for gone in set(self._sightings) - present:
            del self._sightings[gone]
        return frozenset(live)

    async def _forget(self, name: str, version: str) -> None:
        try:
            await self._api.delete(kube.LEASES, name, namespace=self._namespace, resource_version=version)
        except kube.ApiError as error:  # renewed in the meantime, or not ours to delete: it stays
            logger.info("lease %s not deleted: %s", name, error)

    async def _report(self, members: frozenset[str]) -> None:
        if members == self._members:
            return
        self._members = members
        logger.info(
            "shard group %s: live replicas %s", self._group, sorted(members) or "none (lease not renewed)"
        )
        await self._on_change(members)
