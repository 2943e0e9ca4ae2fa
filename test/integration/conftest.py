"""Session layer of the integration suite: one shared stack for every worker, a namespace per test.

The stack (control plane, and PostgreSQL, Redis and DataStorage) is started
by the first worker to need it and stopped by the last one done
(devstack.shared). Everything a worker shares with others comes from the
stack's state file; each worker builds its own clients from it. Every wait
of every spec fails at once if one of the stack's servers dies.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devstack.shared import SharedStack
from devstack.state import StackState
from devstack.supervisor import DEFAULT_COMPONENTS
from test.integration.polling import depending_on

_INTEGRATION_SPECS = Path(__file__).resolve().parent
# Specs that need only the stack's PostgreSQL and Redis, not its control plane.
_DATASTORAGE_SPECS = _INTEGRATION_SPECS / "datastorage"


def _components(items: list[pytest.Item]) -> tuple[str, ...]:
    """The whole stack, unless every integration spec of the run is a DataStorage one; the node only
    for a run with `node` specs. Every worker collects the same items, so whichever starts the stack
    starts the same components."""
    integration = [item for item in items if item.path.is_relative_to(_INTEGRATION_SPECS)]
    node = ("node",) if any(item.get_closest_marker("node") for item in integration) else ()
    if integration and all(item.path.is_relative_to(_DATASTORAGE_SPECS) for item in integration):
        return ("datastorage", *node)
    return (*DEFAULT_COMPONENTS, *node)


def _run_directory(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    # Under xdist every worker's basetemp sits in one per-run directory; without
    # xdist the basetemp itself is per run.
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, request: pytest.FixtureRequest
) -> Iterator[StackState]:
    main_pid = os.getpid() if worker_id == "master" else os.getppid()
    components = _components(request.session.items)
    with (
        SharedStack(_run_directory(tmp_path_factory, worker_id), components, main_pid) as state,
        depending_on(state.death_report),
    ):
        yield state


@pytest.fixture(scope="session")
def kubeconfig(stack: StackState) -> Path:
    return Path(stack.kubeconfig)


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient, worker_id: str) -> Iterator[str]:
    """A fresh namespace per test. Deletion is requested, never awaited: nothing finalises it here."""
    name = f"it-{worker_id}-{secrets.token_hex(4)}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    request_deletion(core.delete_namespace, [name])


def request_deletion(delete: Callable[[str], object], names: Iterable[str]) -> None:
    """Asks the API server to delete each named object, one already gone included, and does not wait:
    nothing in the suite's control plane ever finalises a namespace or a node."""
    for name in names:
        try:
            delete(name)
        except ApiException as error:
            if error.status != 404:
                raise
