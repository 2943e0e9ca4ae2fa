"""Extra addresses of the local servers: where the server listens too, and whose clients it admits there."""

from __future__ import annotations

import ipaddress

import pytest

from localservers import LocalServerError
from localservers._server import parse_extra_address


@pytest.mark.parametrize(
    ("given", "listens_on", "admits"),
    [
        pytest.param("10.213.0.1", "10.213.0.1", "10.213.0.0/24", id="bare-ipv4-admits-its-24"),
        pytest.param("10.213.0.1/30", "10.213.0.1", "10.213.0.0/30", id="ipv4-with-its-network"),
        pytest.param("192.0.2.2/32", "192.0.2.2", "192.0.2.2/32", id="ipv4-itself-only"),
        pytest.param("fd00:213::1", "fd00:213::1", "fd00:213::/64", id="bare-ipv6-admits-its-64"),
        pytest.param(" 10.213.3.1 ", "10.213.3.1", "10.213.3.0/24", id="surrounding-blanks"),
    ],
)
def test_an_extra_address_names_where_to_listen_and_whose_clients_to_admit(
    given: str, listens_on: str, admits: str
) -> None:
    parsed = parse_extra_address(given)
    assert parsed.ip == ipaddress.ip_address(listens_on)
    assert parsed.network == ipaddress.ip_network(admits)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        pytest.param("node.local", "not an IP address", id="a-name"),
        pytest.param("10.213.0.1/33", "not an IP address", id="a-bad-prefix"),
        pytest.param("127.0.0.1", "loopback", id="loopback"),
        pytest.param("::1", "loopback", id="ipv6-loopback"),
    ],
)
def test_an_extra_address_that_is_none_is_refused_naming_it(given: str, reason: str) -> None:
    with pytest.raises(LocalServerError, match=reason) as refused:
        parse_extra_address(given)
    assert repr(given) in str(refused.value)
