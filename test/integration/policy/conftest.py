"""OPA for the policy tests: one server per xdist worker, started from the main thread.

Tests that load another `package signalprocessing` than the shipped
`policy.rego` use their own `fresh_opa_server`; other tests on the shared one
use unique packages, because OPA merges every module that declares the same
package.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.policies import PolicyText, read_policy
from devstack.opa_server import OpaServer
from envtest import assets

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    path = Path(assets.OPA.path)
    if not path.is_file():
        pytest.fail(f"OPA binary missing at {path}; build it with `make assets`")
    return path


@pytest.fixture(scope="session")
def opa_server(opa_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    with OpaServer(opa_binary, log_path=tmp_path_factory.mktemp("opa") / "opa.log") as server:
        yield server


@pytest.fixture
def fresh_opa_server(opa_binary: Path, tmp_path: Path) -> Iterator[OpaServer]:
    with OpaServer(opa_binary, log_path=tmp_path / "opa.log") as server:
        yield server


@pytest.fixture(scope="session")
def shipped() -> PolicyText:
    return read_policy(POLICY_DIR)


@pytest.fixture
def package() -> str:
    """A package (and module id) no other test on the shared OPA server uses."""
    return f"t{secrets.token_hex(6)}"
