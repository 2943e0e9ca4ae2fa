"""Per-client rate limiting: a token bucket per client address, and the ASGI middleware that applies it.

The middleware is the app's outermost, so a refused request costs a dict
look-up and a small 429 answer, never a body read, validation or a query.
The answer is an RFC 7807 problem (`rate-limit-exceeded`) with `Retry-After`:
the whole seconds until the client's bucket holds a token again.

Health, readiness and metrics (`/health`, `/health/...`, `/readyz`,
`/metrics`) are never limited: a probe refused for a busy client would get a
healthy pod restarted or taken out of its Service.

Who the client is: the TCP peer address. Only when the peer is one of the
configured trusted proxies is `X-Forwarded-For` read, and then the client is
the right-most address in it that is not itself a trusted proxy; the
addresses to the left of that were written by the client and prove nothing.
Anyone else's `X-Forwarded-For` is ignored, so a header cannot dodge the limit.

Memory is bounded twice over. A bucket idle for `burst / rps` seconds has
refilled completely and is exactly a new one, so it is forgotten then (with
the defaults, after 2 s). And at most `max_clients` buckets are kept: a new
client past that forgets the least recently seen one, which then starts over
with a full bucket, as if new.

Refusals are counted in `datastorage_rate_limited_requests_total{path}` by
route template (`unmatched` for paths no route has), and logged once per
client per episode (the first refusal after the client was last served). They
are deliberately not written as audit events: under a flood that would turn
each cheap refusal into a database (or DLQ) write, the very load the limit
keeps out, and fill the audit trail with the flood.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from datastorage.config import Network, RateLimitSettings
from datastorage.metrics import Metrics
from datastorage.problems import problem

log = logging.getLogger(__name__)

UNMATCHED_ROUTE: Final = "unmatched"
# Probes and scrapes: refusing them would make a busy service look dead.
_UNLIMITED_PATHS: Final = frozenset({"/health", "/readyz", "/metrics"})
# The client of a request without a TCP peer (a Unix socket); all such requests share one bucket.
_NO_PEER: Final = "unknown"


def is_unlimited(path: str) -> bool:
    """Health, readiness and metrics endpoints, which are never rate limited."""
    return path in _UNLIMITED_PATHS or path.startswith("/health/")


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address a request's bucket is keyed by.

    `peer` is the TCP peer's address, `forwarded_for` the request's
    X-Forwarded-For headers in order. Without a trusted peer the headers are
    ignored. Behind trusted proxies the client is the right-most hop that is
    not trusted; if every hop is trusted, the left-most one; if a hop cannot
    be read as an address, the trusted hop that named it (proxies write
    addresses, so the request is charged to the proxy rather than to a name
    someone may have made up).
    """
    if peer is None:
        return _NO_PEER
    address = _address(peer)
    if address is None:
        return peer
    if not _is_trusted(address, trusted):
        return str(address)
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        hop_address = _address(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _is_trusted(address, trusted):
            break
    return str(address)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; they are IPv4 clients.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float  # monotonic seconds when `tokens` was last brought up to date
    refusing: bool = False  # refused since it was last served


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over its client's rate."""

    retry_after: int  # whole seconds until the bucket holds a token, at least 1
    first: bool  # the first refusal since the client was last served


class TokenBuckets:
    """One token bucket per client: `burst` tokens at most, refilled at `rps` per second, one per request.

    Pure logic on an injected monotonic clock. Buckets are kept in
    the order their clients were last seen, so both idle expiry and the cap
    forget from the front.
    """

    def __init__(
        self, *, rps: float, burst: int, max_clients: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._rps = rps
        self._burst = burst
        self._max_clients = max_clients
        self._monotonic = monotonic
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    @property
    def idle_expiry(self) -> float:
        """Seconds after which an unused bucket is full again, hence forgotten."""
        return self._burst / self._rps

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> Refusal | None:
        """Takes a token from the client's bucket: None when there was one, else how long to wait."""
        now = self._monotonic()
        self._forget_idle(now)
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._max_clients:
                self._buckets.popitem(last=False)
            bucket = self._buckets[client] = _Bucket(tokens=self._burst, updated=now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rps)
            bucket.updated = now
            self._buckets.move_to_end(client)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.refusing = False
            return None
        first = not bucket.refusing
        bucket.refusing = True
        # tokens < 1, so the wait is positive and its ceiling at least 1.
        return Refusal(retry_after=math.ceil((1 - bucket.tokens) / self._rps), first=first)

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated < self.idle_expiry:
                return
            self._buckets.popitem(last=False)


class RouteTemplates:
    """Names the path template (`/things/{id}`) a request path is for: a metric label of bounded cardinality.

    The templates are read on first use, when every route has been added.
    """

    def __init__(self, read_templates: Callable[[], Iterable[str]]) -> None:
        self._read_templates = read_templates
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def of(self, path: str) -> str:
        """The template `path` matches, whatever the method; `unmatched` if none."""
        if self._patterns is None:
            self._patterns = [(compile_path(template)[0], template) for template in self._read_templates()]
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return UNMATCHED_ROUTE


class RateLimit:
    """ASGI middleware: refuses a client over its rate with 429 before the request goes any further."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: RateLimitSettings,
        metrics: Metrics,
        route_templates: Callable[[], Iterable[str]],
    ) -> None:
        self._app = app
        self._trusted = settings.trusted_proxies
        self._metrics = metrics
        self._routes = RouteTemplates(route_templates)
        self._buckets = TokenBuckets(rps=settings.rps, burst=settings.burst, max_clients=settings.max_clients)
        self._limits = f"{settings.rps:g} requests per second, bursts of {settings.burst}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_unlimited(scope["path"]):
            await self._app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        client = client_address(peer, Headers(scope=scope).getlist("x-forwarded-for"), self._trusted)
        refusal = self._buckets.take(client)
        if refusal is None:
            await self._app(scope, receive, send)
            return
        route = self._routes.of(scope["path"])
        self._metrics.rate_limited.labels(path=route).inc()
        if refusal.first:
            log.warning(
                "client over its rate limit",
                extra={"client": client, "path": route, "retry_after": refusal.retry_after},
            )
        response = problem(
            Request(scope),
            status=429,
            code="rate-limit-exceeded",
            detail=f"too many requests from {client}: the limit is {self._limits}; "
            f"retry after {refusal.retry_after} s",
            headers={"Retry-After": str(refusal.retry_after)},
        )
        await response(scope, receive, send)
