"""Readiness that fails closed: `/readyz` opens only with policies loaded, the SignalProcessing watch
allowed and DataStorage ready, says which gate is closed and why, and follows each gate as it closes
and opens again.

Specs that take a gate away start a controller of their own with a 0.2 s probe interval (the
worker's controller keeps the 15 s default); their waits poll, they never sleep.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.policies import POLICY_FILE_NAME
from devstack.controller_process import ControllerProcess
from devstack.datastorage_process import DataStorageProcess
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from processes.child import http_ok
from test.integration.conftest import request_deletion
from test.integration.polling import depending_on, eventually
from test.integration.signalprocessing.conftest import controller_settings
from test.integration.signalprocessing.own_controller import own_controller
from test.integration.signalprocessing.support import metric_value

GATES = ("policies", "watch", "datastorage")
FAST_PROBES = {"READINESS_INTERVAL_SECONDS": "0.2"}
SIGNALPROCESSINGS = "signalprocessings.kubernaut.ai"


def readiness(url: str) -> tuple[int, dict[str, Any]] | None:
    """`/readyz`'s status and body; None while nothing answers (the controller is still starting)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)
    except (urllib.error.URLError, ConnectionError):
        return None


def wait_until_closed(url: str, *gates: str, saying: str = "") -> dict[str, Any]:
    """Waits until exactly `gates` are closed (503, the others open), each for a reason `saying` it;
    returns the report."""

    def probe() -> dict[str, Any] | None:
        answer = readiness(url)
        if answer is None:
            return None
        status, report = answer
        assert (status, report["closed"]) == (503, list(gates)), answer
        assert all(saying in report["gates"][gate]["reason"] for gate in gates), answer
        return report

    return eventually(probe, message=f"{url} did not report exactly {list(gates)} closed, saying {saying!r}")


def wait_until_ready(url: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        answer = readiness(url)
        assert answer is not None and answer[0] == 200, answer
        return answer[1]

    return eventually(probe, message=f"{url} did not turn ready")


def assert_gauges(metrics_url: str, **expected: int) -> None:
    for gate, value in expected.items():
        assert metric_value(metrics_url, "signalprocessing_readiness_gate", gate=gate) == value, gate


@pytest.mark.br("BR-SP-090")
def test_a_controller_with_everything_up_is_ready_and_shows_every_gate_open(
    operator: ControllerProcess, stack: StackState
) -> None:
    report = wait_until_ready(operator.readiness_url)

    gates = report["gates"]
    assert report["ready"] is True and report["closed"] == []
    assert {name: gate["state"] for name, gate in gates.items()} == dict.fromkeys(GATES, "open")
    assert gates["policies"]["reason"].startswith("policy sha256 ")
    assert gates["watch"]["reason"] == f"list and watch of {SIGNALPROCESSINGS} accepted cluster-wide"
    assert gates["datastorage"]["reason"] == f"HTTP 200 from {stack.datastorage_url}/readyz"
    assert all(gate["lastProbe"] for gate in gates.values())
    assert_gauges(operator.metrics_url, policies=1, watch=1, datastorage=1)


@pytest.mark.br("BR-SP-090")
def test_readiness_waits_for_datastorage_and_closes_again_when_it_goes(
    stack: StackState, api_client: client.ApiClient, tmp_path: Path, worker_id: str
) -> None:
    # Not started: its reserved port is held by nobody, so a connection is refused.
    datastorage = DataStorageProcess(
        database_url=stack.database_url, redis_url=stack.redis_url, log_path=tmp_path / "datastorage.log"
    )
    try:
        with own_controller(
            stack, api_client, tmp_path, worker_id, DATA_STORAGE_URL=datastorage.url, **FAST_PROBES
        ) as own:
            url = own.process.readiness_url
            report = wait_until_closed(url, "datastorage")
            assert report["gates"]["datastorage"]["reason"].startswith(f"GET {datastorage.url}/readyz: ")
            assert_gauges(own.process.metrics_url, policies=1, watch=1, datastorage=0)

            datastorage.start()
            report = wait_until_ready(url)
            assert report["gates"]["datastorage"]["reason"] == f"HTTP 200 from {datastorage.url}/readyz"

            datastorage.stop()
            wait_until_closed(url, "datastorage")
            assert_gauges(own.process.metrics_url, datastorage=0)
    finally:
        datastorage.close()


def token_kubeconfig(admin_kubeconfig: str, token: str, path: Path) -> Path:
    """A kubeconfig for the admin's API server that logs in with `token`."""
    cluster = yaml.safe_load(Path(admin_kubeconfig).read_text())["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "token", "user": {"token": token}}],
                "contexts": [{"name": "token", "context": {"cluster": cluster["name"], "user": "token"}}],
                "current-context": "token",
            }
        )
    )
    return path


ACCOUNT = "readiness-no-rights"


@pytest.fixture
def unprivileged_token(api_client: client.ApiClient, namespace: str) -> str:
    """A token of a new ServiceAccount in `namespace` (gone with it) that no role is bound to."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
    request = core.create_namespaced_service_account_token(
        ACCOUNT, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)


@pytest.mark.br("BR-SP-090")
def test_without_the_right_to_list_signalprocessings_the_watch_gate_stays_closed_until_granted(
    stack: StackState,
    api_client: client.ApiClient,
    namespace: str,
    unprivileged_token: str,
    tmp_path: Path,
    worker_id: str,
) -> None:
    kubeconfig = token_kubeconfig(stack.kubeconfig, unprivileged_token, tmp_path / "unprivileged.kubeconfig")
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = f"readiness-{secrets.token_hex(4)}"
    try:
        with own_controller(
            stack, api_client, tmp_path, worker_id, KUBECONFIG=str(kubeconfig), **FAST_PROBES
        ) as own:
            url = own.process.readiness_url
            report = wait_until_closed(url, "watch")
            reason = report["gates"]["watch"]["reason"]
            assert reason.startswith(
                f"cannot list and watch {SIGNALPROCESSINGS} cluster-wide: HTTP 403 Forbidden"
            )
            assert f"system:serviceaccount:{namespace}:{ACCOUNT}" in reason
            assert_gauges(own.process.metrics_url, policies=1, watch=0, datastorage=1)

            rbac.create_cluster_role(
                {
                    "metadata": {"name": role},
                    "rules": [
                        {"apiGroups": ["kubernaut.ai"], "resources": ["signalprocessings"], "verbs": ["list"]}
                    ],
                }
            )
            binding = {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
            }
            rbac.create_cluster_role_binding(binding)
            # list alone is not enough: kopf needs the watch too.
            report = wait_until_closed(url, "watch", saying="cannot watch resource")
            assert "HTTP 403 Forbidden" in report["gates"]["watch"]["reason"]

            rbac.patch_cluster_role(
                role,
                {
                    "rules": [
                        {
                            "apiGroups": ["kubernaut.ai"],
                            "resources": ["signalprocessings"],
                            "verbs": ["list", "watch"],
                        }
                    ]
                },
            )
            report = wait_until_ready(url)
            assert report["gates"]["watch"]["reason"] == (
                f"list and watch of {SIGNALPROCESSINGS} accepted cluster-wide"
            )
    finally:
        request_deletion(rbac.delete_cluster_role_binding, [role])
        request_deletion(rbac.delete_cluster_role, [role])


@pytest.mark.br("BR-SP-090")
def test_a_controller_whose_policy_does_not_load_answers_not_ready_naming_the_policies_gate(
    stack: StackState, tmp_path: Path, worker_id: str
) -> None:
    policy_dir = copy_shipped_policies(tmp_path / "policies")
    (policy_dir / POLICY_FILE_NAME).write_text("package signalprocessing\n\nthis is not rego\n")
    settings = controller_settings(
        stack,
        namespaces=f"spx-{worker_id}-{secrets.token_hex(3)}-*",
        policy_dir=policy_dir,
        opa_url=None,
        **FAST_PROBES,
    )
    process = ControllerProcess(settings=settings, log_path=tmp_path / "controller.log")
    try:
        process.spawn()  # not start(): its liveness endpoint never answers, kopf never finishes starting
        with depending_on(process.death_report):
            report = wait_until_closed(process.readiness_url, "policies")
        reason = report["gates"]["policies"]["reason"]
        assert reason.startswith("not loaded: "), reason
        assert not http_ok(process.health_url)
    finally:
        process.close()
