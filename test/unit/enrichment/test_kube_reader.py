"""ApiClient over HTTP against a scripted local server: paths, answers, errors, paging, credentials."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from controller import kube
from processes.ports import reserve_port


@dataclass
class Script:
    """Answers by path; every request is recorded."""

    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    delay: float = 0.0
    requests: list[web.Request] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.path in self.pages:
            token = request.query.get("continue", "0")
            return web.json_response(self.pages[request.path][int(token)])
        status, body = self.answers.get(request.path, (404, _status(404, "NotFound", "not found")))
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}


@pytest.fixture
async def script() -> AsyncIterator[Script]:
    yield Script()


@pytest.fixture
async def server(script: Script) -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", script.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def reader(server: TestServer) -> AsyncIterator[kube.ApiClient]:
    credentials = kube.Credentials(
        host=f"http://127.0.0.1:{server.port}", authorization=lambda: "Bearer t0k3n"
    )
    # Generous: a loaded machine (two suites at once) can be slow to answer even on loopback; the
    # timeout itself is tested with a server that never answers.
    async with kube.ApiClient(credentials, timeout=30.0) as reader:
        yield reader


POD = {"kind": "Pod", "metadata": {"name": "web", "namespace": "shop"}}


@pytest.mark.parametrize(
    ("resource", "namespace", "name", "path"),
    [
        pytest.param(kube.PODS, "shop", "web", "/api/v1/namespaces/shop/pods/web", id="core-namespaced"),
        pytest.param(kube.NODES, None, "node-a", "/api/v1/nodes/node-a", id="core-cluster-scoped"),
        pytest.param(kube.NAMESPACES, None, "shop", "/api/v1/namespaces/shop", id="namespace"),
        pytest.param(
            kube.DEPLOYMENTS, "shop", "web", "/apis/apps/v1/namespaces/shop/deployments/web", id="apps-group"
        ),
        pytest.param(
            kube.REMEDIATIONREQUESTS,
            "ops",
            "rr-1",
            "/apis/kubernaut.ai/v1alpha1/namespaces/ops/remediationrequests/rr-1",
            id="kubernaut-group",
        ),
        pytest.param(
            kube.PODS, "shop", "a/../b", "/api/v1/namespaces/shop/pods/a%2F..%2Fb", id="name-escaped"
        ),
    ],
)
def test_resource_paths(resource: kube.Resource, namespace: str | None, name: str, path: str) -> None:
    assert resource.path(namespace=namespace, name=name) == path


@pytest.mark.parametrize(
    ("kind", "api_version", "expected"),
    [
        pytest.param("Deployment", None, kube.DEPLOYMENTS, id="kind-only"),
        pytest.param("Deployment", "apps/v1", kube.DEPLOYMENTS, id="same-group"),
        pytest.param("Deployment", "apps/v1beta2", kube.DEPLOYMENTS, id="other-version-same-group"),
        pytest.param("Deployment", "example.com/v1", None, id="other-group"),
        pytest.param("Job", "batch/v1", kube.JOBS, id="job"),
        pytest.param("CronJob", "batch/v1", kube.CRONJOBS, id="cronjob"),
        pytest.param("Node", "v1", kube.NODES, id="core-group"),
        pytest.param("Rollout", "argoproj.io/v1alpha1", None, id="unknown"),
        pytest.param("deployment", None, None, id="case-sensitive"),
    ],
)
def test_resource_for_kind(kind: str, api_version: str | None, expected: kube.Resource | None) -> None:
    assert kube.resource_for_kind(kind, api_version) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("Node", True, id="node"),
        pytest.param("Namespace", True, id="namespace"),
        pytest.param("PersistentVolume", True, id="pv"),
        pytest.param("Deployment", False, id="deployment"),
        pytest.param("Rollout", False, id="unknown-is-namespaced"),
    ],
)
def test_is_cluster_scoped(kind: str, expected: bool) -> None:
    assert kube.is_cluster_scoped(kind) is expected


async def test_get_returns_the_object_and_sends_credentials(reader: kube.ApiClient, script: Script) -> None:
    script.answers["/api/v1/namespaces/shop/pods/web"] = (200, POD)
    assert await reader.get(kube.PODS, "web", namespace="shop") == POD
    assert script.requests[0].headers["Authorization"] == "Bearer t0k3n"
    assert reader.calls == {"get": 1}


async def test_get_of_a_missing_object_is_none(reader: kube.ApiClient) -> None:
    assert await reader.get(kube.PODS, "gone", namespace="shop") is None
    assert reader.calls == {"get": 1}


async def test_get_with_an_empty_name_asks_nothing(reader: kube.ApiClient, script: Script) -> None:
    assert await reader.get(kube.PODS, "", namespace="shop") is None
    assert script.requests == [] and reader.calls == {}


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        pytest.param(403, kube.Forbidden, False, id="403-forbidden"),
        pytest.param(400, kube.ApiError, False, id="400"),
        pytest.param(401, kube.ApiError, False, id="401"),
        pytest.param(408, kube.TransientApiError, True, id="408"),
        pytest.param(429, kube.TransientApiError, True, id="429"),
        pytest.param(500, kube.TransientApiError, True, id="500"),
        pytest.param(502, kube.TransientApiError, True, id="502"),
        pytest.param(503, kube.TransientApiError, True, id="503"),
        pytest.param(504, kube.TransientApiError, True, id="504"),
    ],
)
async def test_error_statuses(
    reader: kube.ApiClient, script: Script, status: int, error: type[kube.ApiError], retryable: bool
) -> None:
    script.answers["/api/v1/namespaces/shop/pods/web"] = (status, _status(status, "SomeReason", "because"))
    with pytest.raises(error) as raised:
        await reader.get(kube.PODS, "web", namespace="shop")
    assert type(raised.value) is error
    assert isinstance(raised.value, kube.TransientApiError) is retryable
    assert raised.value.status == status and raised.value.reason == "SomeReason"
    assert "because" in str(raised.value)


async def test_error_body_that_is_not_a_status(reader: kube.ApiClient, script: Script) -> None:
    script.answers["/api/v1/namespaces/shop/pods/web"] = (502, "<html>" + "x" * 5000)
    with pytest.raises(kube.TransientApiError) as raised:
        await reader.get(kube.PODS, "web", namespace="shop")
    assert len(str(raised.value)) < 600


@pytest.mark.parametrize(
    "body", [pytest.param("not json", id="not-json"), pytest.param([1, 2], id="not-an-object")]
)
async def test_unusable_success_body(reader: kube.ApiClient, script: Script, body: Any) -> None:
    script.answers["/api/v1/namespaces/shop/pods/web"] = (200, body)
    with pytest.raises(kube.ApiError):
        await reader.get(kube.PODS, "web", namespace="shop")


async def test_list_follows_continue_tokens(reader: kube.ApiClient, script: Script) -> None:
    path = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets"
    script.pages[path] = [
        {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "1"}},
        {"items": [{"metadata": {"name": "b"}}], "metadata": {}},
    ]
    items = await reader.list(kube.PODDISRUPTIONBUDGETS, namespace="shop")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert reader.calls == {"list": 2}
    assert [r.query.get("limit") for r in script.requests] == ["500", "500"]


async def test_list_of_an_unserved_kind_raises_not_found(reader: kube.ApiClient) -> None:
    with pytest.raises(kube.NotFound):
        await reader.list(kube.HORIZONTALPODAUTOSCALERS, namespace="shop")


async def test_list_of_nothing_is_empty(reader: kube.ApiClient, script: Script) -> None:
    script.answers["/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"] = (200, {"items": None})
    assert await reader.list(kube.NETWORKPOLICIES, namespace="shop") == []


@pytest.mark.parametrize(
    ("call"),
    [
        pytest.param(lambda r: r.list(kube.PODDISRUPTIONBUDGETS, namespace=""), id="list-cluster-wide"),
        pytest.param(lambda r: r.list(kube.NODES, namespace="shop"), id="list-cluster-scoped-kind"),
        pytest.param(lambda r: r.get(kube.PODS, "web"), id="get-namespaced-without-namespace"),
        pytest.param(
            lambda r: r.get(kube.NODES, "n", namespace="shop"), id="get-cluster-scoped-with-namespace"
        ),
    ],
)
async def test_scope_mistakes_are_refused_before_asking(
    reader: kube.ApiClient, script: Script, call: Any
) -> None:
    with pytest.raises(ValueError):
        await call(reader)
    assert script.requests == []


async def test_slow_server_is_transient(server: TestServer, script: Script) -> None:
    script.delay = 3600.0  # never answers within the test
    credentials = kube.Credentials(host=f"http://127.0.0.1:{server.port}", authorization=lambda: None)
    async with kube.ApiClient(credentials, timeout=0.2) as impatient:
        with pytest.raises(kube.TransientApiError, match="timed out"):
            await impatient.get(kube.PODS, "web", namespace="shop")


async def test_refused_connection_is_transient() -> None:
    with reserve_port() as nobody_listens:
        host = f"http://127.0.0.1:{nobody_listens.port}"
        async with kube.ApiClient(kube.Credentials(host=host)) as reader:
            with pytest.raises(kube.TransientApiError):
                await reader.get(kube.NODES, "n")
            assert reader.calls == {"get": 1}


async def test_credentials_from_a_kubeconfig(tmp_path: Path, server: TestServer, script: Script) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
                "users": [{"name": "u", "user": {"token": "from-kubeconfig"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    credentials = kube.Credentials.from_kubeconfig(str(kubeconfig))
    assert credentials.host == f"http://127.0.0.1:{server.port}"

    script.answers["/api/v1/nodes/node-a"] = (200, {"kind": "Node", "metadata": {"name": "node-a"}})
    async with kube.ApiClient(credentials) as reader:
        assert await reader.get(kube.NODES, "node-a") is not None
    assert script.requests[0].headers["Authorization"] == "Bearer from-kubeconfig"


@pytest.mark.parametrize(
    ("namespace", "path"),
    [
        pytest.param(None, "/apis/kubernaut.ai/v1alpha1/remediationrequests", id="cluster-wide"),
        pytest.param(
            "ops", "/apis/kubernaut.ai/v1alpha1/namespaces/ops/remediationrequests", id="namespaced"
        ),
    ],
)
async def test_check_watch_lists_one_then_opens_a_watch_from_that_version(
    reader: kube.ApiClient, script: Script, namespace: str | None, path: str
) -> None:
    script.answers[path] = (200, {"items": [], "metadata": {"resourceVersion": "42"}})

    await reader.check_watch(kube.REMEDIATIONREQUESTS, namespace=namespace)

    listing, watch = script.requests
    assert (listing.path, dict(listing.query)) == (path, {"limit": "1"})
    assert (watch.path, dict(watch.query)) == (
        path,
        {"watch": "1", "resourceVersion": "42", "timeoutSeconds": "1"},
    )
    assert watch.headers["Authorization"] == "Bearer t0k3n"
    assert reader.calls == {"list": 1, "watch": 1}


async def test_check_watch_raises_forbidden_when_the_list_is_refused(
    reader: kube.ApiClient, script: Script
) -> None:
    path = "/apis/kubernaut.ai/v1alpha1/remediationrequests"
    script.answers[path] = (403, _status(403, "Forbidden", "cannot list resource"))

    with pytest.raises(kube.Forbidden, match="cannot list resource"):
        await reader.check_watch(kube.REMEDIATIONREQUESTS, namespace=None)
    assert len(script.requests) == 1
