"""A small time-to-live cache for per-namespace reads, shared by concurrent reconciles.

Enrichment reads the same namespace, and lists the same PDBs, HPAs and NetworkPolicies, for every
signal in a namespace; a short-lived cache turns those repeats into one read. Entries are keyed by
the exact namespace name, so one namespace (one test, one tenant) can never be served another's
data. Concurrent misses for one key share a single load, so a burst of signals in a new namespace
costs one read, not one per signal. Failed loads are never cached: the next caller tries again.

The cache holds values only; it does no I/O of its own beyond awaiting the loader it is given. It is
safe for any number of tasks on one event loop, not across threads. The clock is injectable so
expiry can be tested without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

V = TypeVar("V")

Clock = Callable[[], float]

# Bounds memory when the controller watches many namespaces; far above the namespaces one
# controller serves, so eviction is a safety net, not a working mode.
DEFAULT_MAX_SIZE: Final = 1024


class TTLCache(Generic[V]):
    """Maps a key to a value for `ttl` seconds; at most `max_size` keys, least recently used out first."""

    def __init__(
        self, ttl: float, *, max_size: int = DEFAULT_MAX_SIZE, clock: Clock = time.monotonic
    ) -> None:
        if ttl <= 0 or max_size <= 0:
            raise ValueError(f"ttl ({ttl}) and max_size ({max_size}) must be positive")
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._loading: dict[str, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """The number of entries still fresh."""
        now = self._clock()
        return sum(1 for expires_at, _ in self._entries.values() if expires_at > now)

    def get(self, key: str) -> V | None:
        """The fresh value for `key`, or None (values are never None themselves)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        self._evict()

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[V]]) -> V:
        """The fresh value for `key`, or the result of `load()`, which is then cached.

        Callers arriving while a load for `key` is under way wait for that same load. If it raises,
        every one of them gets the exception and nothing is cached. A caller that is cancelled does
        not cancel the load the others are waiting for.
        """
        cached = self.get(key)
        if cached is not None:
            return cached
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            task.add_done_callback(_retrieve_exception)
            self._loading[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: str, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
            self.put(key, value)
            return value
        finally:
            del self._loading[key]

    def _evict(self) -> None:
        if len(self._entries) <= self.max_size:
            return
        now = self._clock()
        for key in [key for key, (expires_at, _) in self._entries.items() if expires_at <= now]:
            del self._entries[key]
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)


def _retrieve_exception(task: asyncio.Task[V]) -> None:
    # When every waiter was cancelled nobody reads the load's exception; asyncio would log it as
    # "never retrieved" although it is expected and harmless.
    if not task.cancelled():
        task.exception()
