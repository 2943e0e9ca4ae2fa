"""Rate limiting's pure parts: token buckets on a fake clock, who the client is, what is never limited."""

from __future__ import annotations

import ipaddress

import pytest

from datastorage.config import Network
from datastorage.ratelimit import Refusal, RouteTemplates, TokenBuckets, client_address, is_unlimited


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


def buckets(
    monotonic: FakeMonotonic, *, rps: float = 2.0, burst: int = 3, max_clients: int = 100
) -> TokenBuckets:
    return TokenBuckets(rps=rps, burst=burst, max_clients=max_clients, monotonic=monotonic)


def test_a_new_client_may_make_a_burst_then_is_refused(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=2.0, burst=3)

    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    assert limiter.take("a") == Refusal(retry_after=1, first=True)


def test_tokens_come_back_at_the_rate(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=2.0, burst=3)
    for _ in range(3):
        limiter.take("a")

    monotonic.now += 0.4  # 0.8 of a token: not yet
    assert limiter.take("a") is not None
    monotonic.now += 0.1  # one token
    assert limiter.take("a") is None
    assert limiter.take("a") is not None


def test_a_bucket_holds_no_more_than_the_burst(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=2.0, burst=3)
    limiter.take("a")

    monotonic.now += 1.4  # 2 + 2.8 tokens, of which the bucket keeps 3 (and it is not idle long enough to go)

    assert [limiter.take("a") for _ in range(4)] == [None, None, None, Refusal(retry_after=1, first=True)]


@pytest.mark.parametrize(
    ("rps", "idle", "retry_after"),
    [
        pytest.param(2.0, 0.0, 1, id="half-a-second-rounds-up-to-one"),
        pytest.param(0.25, 0.0, 4, id="four-seconds-per-token"),
        pytest.param(0.25, 1.5, 3, id="part-refilled-2.5s-to-go"),
        pytest.param(0.25, 3.999, 1, id="a-moment-to-go-is-still-one"),
        pytest.param(1000.0, 0.0, 1, id="never-below-one"),
    ],
)
def test_retry_after_is_the_whole_seconds_until_the_next_token(
    monotonic: FakeMonotonic, rps: float, idle: float, retry_after: int
) -> None:
    limiter = buckets(monotonic, rps=rps, burst=1)
    assert limiter.take("a") is None

    monotonic.now += idle
    refusal = limiter.take("a")

    assert refusal is not None
    assert refusal.retry_after == retry_after


def test_waiting_retry_after_is_always_enough(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=0.3, burst=2)
    limiter.take("a")
    limiter.take("a")
    refusal = limiter.take("a")
    assert refusal is not None

    monotonic.now += refusal.retry_after

    assert limiter.take("a") is None


def test_refusals_take_no_tokens(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=1.0, burst=2)
    limiter.take("a")
    limiter.take("a")
    for _ in range(50):
        limiter.take("a")

    monotonic.now += 1.0

    assert limiter.take("a") is None


def test_clients_have_buckets_of_their_own(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, burst=1)

    assert limiter.take("a") is None
    assert limiter.take("a") is not None
    assert limiter.take("b") is None


def test_only_the_first_refusal_after_being_served_is_marked_first(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=1.0, burst=2)  # 1 s between tokens, forgotten after 2 s
    limiter.take("a")
    limiter.take("a")

    firsts = [refusal.first for refusal in (limiter.take("a"), limiter.take("a")) if refusal]
    monotonic.now += 1.0
    assert limiter.take("a") is None
    again = limiter.take("a")

    assert firsts == [True, False]
    assert again is not None and again.first


def test_a_bucket_idle_until_full_is_forgotten(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=2.0, burst=3)  # full again 1.5 s after its last use
    limiter.take("a")
    monotonic.now += 1.0
    limiter.take("b")

    monotonic.now += 0.25
    limiter.take("c")
    assert len(limiter) == 3
    monotonic.now += 0.25
    limiter.take("c")

    assert len(limiter) == 2  # "a" was full, hence forgotten; "b" is not yet
    monotonic.now += 1.0
    limiter.take("c")
    assert len(limiter) == 1


def test_past_the_cap_the_least_recently_seen_client_is_forgotten(monotonic: FakeMonotonic) -> None:
    limiter = buckets(monotonic, rps=1.0, burst=1, max_clients=2)
    limiter.take("a")
    limiter.take("b")
    assert limiter.take("a") is not None  # "a" is now the most recently seen

    limiter.take("c")  # forgets "b"

    assert len(limiter) == 2
    assert limiter.take("a") is not None  # still remembered, still empty
    assert limiter.take("b") is None  # forgotten: a full bucket, as if new


TRUSTED: tuple[Network, ...] = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        pytest.param("192.0.2.1", [], "192.0.2.1", id="direct"),
        pytest.param("192.0.2.1", ["203.0.113.9"], "192.0.2.1", id="untrusted-peer-header-ignored"),
        pytest.param("10.1.2.3", [], "10.1.2.3", id="trusted-peer-without-header"),
        pytest.param("10.1.2.3", ["203.0.113.9"], "203.0.113.9", id="behind-one-proxy"),
        pytest.param("10.1.2.3", ["203.0.113.9, 10.4.4.4"], "203.0.113.9", id="behind-two-proxies"),
        pytest.param("10.1.2.3", ["198.51.100.1", "203.0.113.9"], "203.0.113.9", id="two-header-lines"),
        pytest.param("10.1.2.3", ["6.6.6.6, 203.0.113.9"], "203.0.113.9", id="spoofed-left-part-ignored"),
        pytest.param("10.1.2.3", ["10.9.9.9, 10.4.4.4"], "10.9.9.9", id="all-trusted-leftmost"),
        pytest.param("10.1.2.3", ["203.0.113.9, garbage"], "10.1.2.3", id="unreadable-hop-charges-proxy"),
        pytest.param("10.1.2.3", ["garbage, 10.4.4.4"], "10.4.4.4", id="unreadable-beyond-trusted-hop"),
        pytest.param("::ffff:10.1.2.3", ["203.0.113.9"], "203.0.113.9", id="ipv4-mapped-peer"),
        pytest.param("fd00::1", ["2001:db8::7"], "2001:db8::7", id="ipv6"),
        pytest.param("2001:db8::1", ["203.0.113.9"], "2001:db8::1", id="ipv6-untrusted"),
        pytest.param(None, ["203.0.113.9"], "unknown", id="no-peer"),
    ],
)
def test_the_client_is_the_peer_unless_a_trusted_proxy_names_it(
    peer: str | None, forwarded_for: list[str], client: str
) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == client


def test_without_trusted_proxies_the_header_is_always_ignored() -> None:
    assert client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


@pytest.mark.parametrize(
    ("path", "unlimited"),
    [
        ("/health", True),
        ("/health/ready", True),
        ("/health/live", True),
        ("/readyz", True),
        ("/metrics", True),
        ("/api/v1/audit/events", False),
        ("/healthy", False),
        ("/metrics/more", False),
        ("/openapi.json", False),
    ],
)
def test_probes_and_scrapes_are_never_limited(path: str, unlimited: bool) -> None:
    assert is_unlimited(path) is unlimited


def test_a_path_is_labelled_by_its_route_template_and_unknown_paths_share_one_label() -> None:
    read: list[int] = []

    def templates() -> list[str]:
        read.append(1)
        return ["/api/v1/audit/events", "/api/v1/audit/legal-hold/{correlation_id}"]

    routes = RouteTemplates(templates)

    assert routes.of("/api/v1/audit/events") == "/api/v1/audit/events"
    assert routes.of("/api/v1/audit/legal-hold/c-123") == "/api/v1/audit/legal-hold/{correlation_id}"
    assert routes.of("/api/v1/audit/events/extra") == "unmatched"
    assert routes.of("/api/v1/audit/legal-hold/a/b") == "unmatched"
    assert read == [1]  # read once, on first use
