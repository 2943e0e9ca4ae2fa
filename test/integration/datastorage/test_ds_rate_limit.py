"""Rate limits on a real DataStorage: 429 problems with Retry-After, per client address, probes never limited.

Each spec opens a DataStorage of its own with a low limit. Clients are told
apart by their source address: the suite's client connects from 127.0.0.1,
a second one binds 127.0.0.2 (the whole of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import ipaddress
import time

import httpx

from datastorage.config import RateLimitSettings
from test.integration.datastorage.support import (
    EVENTS_PATH,
    OpenStack,
    Stack,
    assert_problem,
    logged,
    scrape,
)
from test.integration.polling import eventually

LIMITED = "datastorage_rate_limited_requests_total"
# One token every 1000 s: none comes back while a spec spends its burst of 3 and looks at the refusals,
# however loaded the machine (one every 5 s did, beside a second suite).
SLOW = RateLimitSettings(enabled=True, rps=0.001, burst=3)
SLOW_SECONDS_PER_TOKEN = 1000
SMALL_BODY = 1024
JSON = {"content-type": "application/json"}


def client_from(stack: Stack, source: str, **headers: str) -> httpx.Client:
    """A client whose connections leave from `source`, one of the loopback addresses."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=stack.url, timeout=30, transport=transport, headers=headers)


def query(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.get(EVENTS_PATH, params={"limit": 1}, headers=headers)


def spend_burst(client: httpx.Client, burst: int, **headers: str) -> httpx.Response:
    """Makes `burst` requests, which must all be served, and returns the refusal of the next one."""
    served = [query(client, **headers).status_code for _ in range(burst)]
    assert served == [200] * burst
    return query(client, **headers)


def retry_after(response: httpx.Response) -> int:
    value = response.headers["retry-after"]
    assert value.isdigit(), f"Retry-After must be whole seconds, not {value!r}"
    return int(value)


def test_a_client_over_its_limit_gets_429_while_another_client_is_served(
    stack_on_shared_servers: OpenStack,
) -> None:
    with (
        stack_on_shared_servers(rate_limit=SLOW, max_body_bytes=SMALL_BODY) as stack,
        client_from(stack, "127.0.0.1") as flooding,
        client_from(stack, "127.0.0.2") as other,
    ):
        refused = spend_burst(flooding, SLOW.burst)
        again = query(flooding)
        # Refused before the body is read or validated: a flood costs next to nothing.
        unread = flooding.post(EVENTS_PATH, content=b"{" * (SMALL_BODY + 1), headers=JSON)
        served = [query(other).status_code for _ in range(SLOW.burst)]

        body = assert_problem(refused, 429, "rate-limit-exceeded", "too many requests from 127.0.0.1")
        assert body["title"] == "Too Many Requests"
        assert body["instance"] == EVENTS_PATH
        assert 1 <= retry_after(refused) <= SLOW_SECONDS_PER_TOKEN
        assert_problem(again, 429, "rate-limit-exceeded")
        assert_problem(unread, 429, "rate-limit-exceeded")  # not 413 (too large) nor 400 (not JSON)
        assert served == [200] * SLOW.burst
        # One line per episode, not per refusal: a flood must not flood the log too.
        (line,) = logged(stack.log_path, "client over its rate limit")
        assert (line["client"], line["path"]) == ("127.0.0.1", EVENTS_PATH)


def test_x_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_limit(
    stack_on_shared_servers: OpenStack,
) -> None:
    with stack_on_shared_servers(rate_limit=SLOW) as stack, client_from(stack, "127.0.0.1") as client:
        spend_burst(client, SLOW.burst)

        disguised = query(client, **{"X-Forwarded-For": "203.0.113.9"})

        assert_problem(disguised, 429, "rate-limit-exceeded", "from 127.0.0.1:")


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    stack_on_shared_servers: OpenStack,
) -> None:
    limits = RateLimitSettings(
        enabled=True, rps=SLOW.rps, burst=SLOW.burst, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    with (
        stack_on_shared_servers(rate_limit=limits) as stack,
        client_from(stack, "127.0.0.1") as proxy,
        client_from(stack, "127.0.0.2") as untrusted,
    ):
        first = {"X-Forwarded-For": "203.0.113.9"}
        refused = spend_burst(proxy, SLOW.burst, **first)
        # Only the right-most hop was written by the trusted proxy; what the client put left of it is ignored.
        spoofed = query(proxy, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
        second = query(proxy, **{"X-Forwarded-For": "198.51.100.7"})
        proxy_itself = query(proxy)
        # A peer that is no trusted proxy is its own client, whatever it forwards.
        from_untrusted = query(untrusted, **first)

        assert_problem(refused, 429, "rate-limit-exceeded", "too many requests from 203.0.113.9:")
        assert_problem(spoofed, 429, "rate-limit-exceeded", "from 203.0.113.9:")
        assert second.status_code == 200, second.text
        assert proxy_itself.status_code == 200, proxy_itself.text
        assert from_untrusted.status_code == 200, from_untrusted.text


def test_health_readiness_and_metrics_are_never_limited(stack_on_shared_servers: OpenStack) -> None:
    with stack_on_shared_servers(rate_limit=SLOW) as stack, client_from(stack, "127.0.0.1") as client:
        assert_problem(spend_burst(client, SLOW.burst), 429, "rate-limit-exceeded")

        answers = {
            path: [client.get(path).status_code for _ in range(SLOW.burst + 2)]
            for path in ("/health", "/health/ready", "/health/live", "/readyz", "/metrics")
        }

        assert answers == {path: [200] * (SLOW.burst + 2) for path in answers}


def test_refusals_are_counted_by_route_template(stack_on_shared_servers: OpenStack) -> None:
    with stack_on_shared_servers(rate_limit=SLOW) as stack, client_from(stack, "127.0.0.1") as client:
        spend_burst(client, SLOW.burst)
        query(client)
        document = client.get("/openapi.json")
        made_up = client.get("/api/v1/audit/no-such-thing-5f3a")

        page = scrape(client)

        assert (document.status_code, made_up.status_code) == (429, 429)
        assert page.counter(LIMITED, path=EVENTS_PATH) == 2
        assert page.counter(LIMITED, path="/openapi.json") == 1
        # Paths no route has share one series, so that made-up paths cannot grow the metric.
        assert page.counter(LIMITED, path="unmatched") == 1
        assert "no-such-thing" not in str(page.samples(LIMITED))


def test_after_retry_after_the_client_is_served_again(stack_on_shared_servers: OpenStack) -> None:
    limits = RateLimitSettings(enabled=True, rps=0.5, burst=1)
    with stack_on_shared_servers(rate_limit=limits) as stack, client_from(stack, "127.0.0.1") as client:
        refused = spend_burst(client, limits.burst)
        assert_problem(refused, 429, "rate-limit-exceeded")
        wait_until = time.monotonic() + retry_after(refused)

        eventually(lambda: time.monotonic() >= wait_until, message="Retry-After has passed", interval=0.1)

        served = query(client)
        assert served.status_code == 200, served.text
