"""An address of this machine besides loopback, for the servers to listen on too, as a node's veth end."""

from __future__ import annotations

import subprocess

import pytest

# A test node's host link comes and goes with the node: no address of one is used here.
_NODE_LINK_PREFIX = "kn-node-"


@pytest.fixture(scope="session")
def machine_address() -> str:
    """The first IPv4 address (`ip -4 -o addr`) of an interface other than loopback and the nodes' links."""
    listing = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        link, address = fields[1], fields[3].partition("/")[0]
        if link != "lo" and not link.startswith(_NODE_LINK_PREFIX):
            return address
    pytest.fail(f"this machine has no IPv4 address besides loopback:\n{listing}")
