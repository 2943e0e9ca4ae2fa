"""A controller of a spec's own, for specs that restart it, starve it of DataStorage or read exact metrics.

The worker's operator is shared by every spec the worker runs, so a spec
that kills a controller, points it at a private DataStorage or needs metric
deltas nobody else can disturb starts its own: its own OPA, its own copy of
the shipped policies, and a namespace pattern (`spx-<worker>-<hex>-*`)
outside the worker's glob, so no other controller ever sees its
SignalProcessings.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from devstack.controller_process import ControllerProcess
from devstack.opa_server import OpaServer
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from envtest import assets
from test.integration.conftest import request_deletion
from test.integration.signalprocessing.conftest import controller_settings


@dataclass
class OwnController:
    """A running controller plus what a spec needs to start another one just like it."""

    process: ControllerProcess
    opa: OpaServer
    prefix: str
    settings: dict[str, str]
    work_dir: Path
    core: client.CoreV1Api
    namespaces: list[str] = field(default_factory=list)

    def make_namespace(self, labels: dict[str, str] | None = None) -> str:
        """A namespace this controller (and only this one) watches."""
        name = f"{self.prefix}{secrets.token_hex(4)}"
        self.core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
        self.namespaces.append(name)
        return name

    def replacement(self, **overrides: str) -> ControllerProcess:
        """A new, not yet started, controller process with the same settings (plus `overrides`)."""
        log = self.work_dir / f"controller-{secrets.token_hex(2)}.log"
        return ControllerProcess(settings={**self.settings, **overrides}, log_path=log)


@contextmanager
def own_controller(
    stack: StackState, api_client: client.ApiClient, work_dir: Path, worker_id: str, **overrides: str
) -> Iterator[OwnController]:
    """Starts a private OPA and controller; `overrides` are controller environment settings."""
    prefix = f"spx-{worker_id}-{secrets.token_hex(3)}-"
    policy_dir = copy_shipped_policies(work_dir / "policies")
    core = client.CoreV1Api(api_client)
    with OpaServer(assets.OPA.path, log_path=work_dir / "opa.log") as opa:
        settings = controller_settings(
            stack, namespaces=f"{prefix}*", policy_dir=policy_dir, opa_url=opa.url, **overrides
        )
        process = ControllerProcess(settings=settings, log_path=work_dir / "controller.log")
        own = OwnController(
            process=process, opa=opa, prefix=prefix, settings=settings, work_dir=work_dir, core=core
        )
        try:
            with process:
                yield own
        finally:
            request_deletion(core.delete_namespace, own.namespaces)
