"""The TTL cache: expiry by an injected clock, key isolation, size bound, shared loads, uncached failures."""

from __future__ import annotations

import asyncio
import functools

import pytest

from controller.ttlcache import TTLCache

from .fakes import ManualClock


@pytest.fixture
def cache(clock: ManualClock) -> TTLCache[str]:
    return TTLCache(60.0, max_size=3, clock=clock)


@pytest.mark.parametrize(
    ("elapsed", "fresh"),
    [
        pytest.param(0.0, True, id="just-stored"),
        pytest.param(59.9, True, id="before-ttl"),
        pytest.param(60.0, False, id="at-ttl"),
        pytest.param(3600.0, False, id="long-after"),
    ],
)
def test_expiry(cache: TTLCache[str], clock: ManualClock, elapsed: float, fresh: bool) -> None:
    cache.put("shop", "value")
    clock.advance(elapsed)
    assert cache.get("shop") == ("value" if fresh else None)
    assert len(cache) == (1 if fresh else 0)


def test_keys_are_isolated(cache: TTLCache[str]) -> None:
    cache.put("tenant-a", "a")
    cache.put("tenant-b", "b")
    assert (cache.get("tenant-a"), cache.get("tenant-b")) == ("a", "b")
    assert cache.get("tenant") is None
    assert cache.get("tenant-a ") is None
    assert cache.get("TENANT-A") is None


def test_put_renews_the_ttl(cache: TTLCache[str], clock: ManualClock) -> None:
    cache.put("shop", "old")
    clock.advance(50)
    cache.put("shop", "new")
    clock.advance(50)
    assert cache.get("shop") == "new"


def test_size_is_bounded_least_recently_used_out(cache: TTLCache[str]) -> None:
    for key in ("a", "b", "c"):
        cache.put(key, key)
    assert cache.get("a") == "a"  # "b" is now the least recently used
    cache.put("d", "d")
    assert [cache.get(key) for key in ("a", "b", "c", "d")] == ["a", None, "c", "d"]


def test_expired_entries_go_before_fresh_ones(cache: TTLCache[str], clock: ManualClock) -> None:
    cache.put("old", "old")
    clock.advance(59)
    cache.put("b", "b")
    cache.put("c", "c")
    clock.advance(2)
    cache.put("d", "d")
    assert [cache.get(key) for key in ("b", "c", "d")] == ["b", "c", "d"]


def test_clear(cache: TTLCache[str]) -> None:
    cache.put("a", "a")
    cache.clear()
    assert cache.get("a") is None


@pytest.mark.parametrize(
    ("ttl", "max_size"), [pytest.param(0, 1, id="zero-ttl"), pytest.param(1, 0, id="zero-size")]
)
def test_rejects_nonsense_bounds(ttl: float, max_size: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        TTLCache[str](ttl, max_size=max_size)


async def test_get_or_load_loads_once_until_expiry(cache: TTLCache[str], clock: ManualClock) -> None:
    loads: list[str] = []

    async def load() -> str:
        loads.append("load")
        return f"v{len(loads)}"

    assert await cache.get_or_load("shop", load) == "v1"
    assert await cache.get_or_load("shop", load) == "v1"
    clock.advance(61)
    assert await cache.get_or_load("shop", load) == "v2"
    assert loads == ["load", "load"]


async def test_concurrent_misses_share_one_load(cache: TTLCache[str]) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        started.set()
        await release.wait()
        return "value"

    waiters = [asyncio.create_task(cache.get_or_load("shop", load)) for _ in range(10)]
    await started.wait()
    release.set()
    assert await asyncio.gather(*waiters) == ["value"] * 10
    assert loads == 1


async def test_concurrent_loads_of_different_keys_do_not_mix(cache: TTLCache[str]) -> None:
    async def load_for(key: str) -> str:
        await asyncio.sleep(0)
        return f"data-of-{key}"

    keys = ["a", "b", "c"]
    results = await asyncio.gather(*(cache.get_or_load(k, functools.partial(load_for, k)) for k in keys))
    assert results == [f"data-of-{k}" for k in keys]


async def test_failed_load_is_shared_and_not_cached(cache: TTLCache[str]) -> None:
    release = asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise RuntimeError("list failed")

    waiters = [asyncio.create_task(cache.get_or_load("shop", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1

    async def working() -> str:
        return "ok"

    assert await cache.get_or_load("shop", working) == "ok"


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(cache: TTLCache[str]) -> None:
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "value"

    first = asyncio.create_task(cache.get_or_load("shop", load))
    second = asyncio.create_task(cache.get_or_load("shop", load))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "value"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cache.get("shop") == "value"
