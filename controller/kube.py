"""The Kubernetes API edge: the one place the controller talks to the cluster.

Enrichment only ever GETs one object or LISTs one kind in one namespace. This module does exactly
that over one shared ``aiohttp`` session, with the kubeconfig's (or the service account's)
credentials, and nothing else: no caching, no retries, and no watches (`check_watch`, for the
readiness gate, opens one and closes it at once). The only writes are the SignalProcessing
status patch, Event creation, and, with sharding, the replica's own Lease (`replace`, `delete`);
the SPs of shards taken over are found by one cluster-wide LIST. Deciding what an answer means
(degraded, permanent, transient) is the caller's business; this module only sorts failures into a
small error hierarchy so that no aiohttp type leaks out. The original exception is chained as
``__cause__``.

The kubernetes client package is used only to *load credentials* (it knows every kubeconfig
variant and the in-cluster token rotation); requests never go through it, because it is
synchronous.

Everything else reads through the ``Reader`` protocol, which lets unit tests substitute an
in-memory fake for ``ApiClient``.

Hand-written because it is measurably cheaper than a maintained async client (`make
bench-kubeclient`, 2 cores shared with kube-apiserver 1.36.3, medians of 3 interleaved rounds). The
controller's requests for one SignalProcessing (GET Pod and GET RemediationRequest (404) at once, 5
conditional merge patches of /status, 5 Events), made with this client, kubernetes_asyncio 36.1.0
(raw responses) and lightkube 1.0.1 (generic resources), cost the client 5.7, 12.5 and 11.8 ms of
CPU per SP one at a time, and 5.5, 12.0 and 11.9 ms with 32 at once; p50 latency one at a time:
27.8, 36.2 and 33.3 ms; 500 SPs, 32 at once: 41.7, 36.5 and 36.6 SP/s (the API server, at about
38 ms of CPU per SP, sets that pace).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Protocol, TypeAlias, TypedDict, cast
from urllib.parse import quote

import aiohttp
import yarl

RawObject: TypeAlias = dict[str, Any]

DEFAULT_TIMEOUT: Final = 10.0  # seconds per request, the original enricher's budget for a whole enrichment
# Lists are paged so a namespace with thousands of objects cannot produce one unbounded response.
_PAGE_SIZE: Final = 500
# Enough of an error body to explain the failure, never a whole HTML page from a proxy.
_MAX_ERROR_TEXT: Final = 512
# The API server's own "try again" answers, plus the gateway and timeout ones a proxy in front may give.
_TRANSIENT_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


class ApiError(Exception):
    """The API server refused a read, or answered something unusable."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(ApiError):
    """The object, or the kind itself, does not exist (HTTP 404)."""


class Forbidden(ApiError):
    """The credentials may not read this (HTTP 403)."""


class Conflict(ApiError):
    """The object changed since it was read (HTTP 409): a conditional write lost the race."""


class TransientApiError(ApiError):
    """The read may succeed if retried: timeout, connection error, 429, 5xx."""


class RawStatus(TypedDict, total=False):
    """The `Status` body the API server sends with an error."""

    kind: str
    status: str
    message: str
    reason: str
    code: int


class RawOwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool


class RawMeta(TypedDict, total=False):
    name: str
    namespace: str
    creationTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[RawOwnerReference]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: group, version, plural, and whether it is namespaced."""

    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    def path(self, *, namespace: str | None, name: str | None = None) -> str:
        """The URL path of one object (with a name) or of a collection (without)."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
        item = f"/{quote(name, safe='')}" if name is not None else ""
        return f"{root}{scope}/{self.plural}{item}"


NAMESPACES: Final = Resource("", "v1", "namespaces", namespaced=False)
NODES: Final = Resource("", "v1", "nodes", namespaced=False)
PODS: Final = Resource("", "v1", "pods")
SERVICES: Final = Resource("", "v1", "services")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments")
STATEFULSETS: Final = Resource("apps", "v1", "statefulsets")
DAEMONSETS: Final = Resource("apps", "v1", "daemonsets")
REPLICASETS: Final = Resource("apps", "v1", "replicasets")
JOBS: Final = Resource("batch", "v1", "jobs")
CRONJOBS: Final = Resource("batch", "v1", "cronjobs")
PODDISRUPTIONBUDGETS: Final = Resource("policy", "v1", "poddisruptionbudgets")
HORIZONTALPODAUTOSCALERS: Final = Resource("autoscaling", "v2", "horizontalpodautoscalers")
NETWORKPOLICIES: Final = Resource("networking.k8s.io", "v1", "networkpolicies")
REMEDIATIONREQUESTS: Final = Resource("kubernaut.ai", "v1alpha1", "remediationrequests")
LEASES: Final = Resource("coordination.k8s.io", "v1", "leases")

_RESOURCES_BY_KIND: Final[dict[str, Resource]] = {
    "Namespace": NAMESPACES,
    "Node": NODES,
    "Pod": PODS,
    "Service": SERVICES,
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "DaemonSet": DAEMONSETS,
    "ReplicaSet": REPLICASETS,
    "Job": JOBS,
    "CronJob": CRONJOBS,
}

# Kinds we never read but may meet as owners; an owner of these kinds has no namespace.
_OTHER_CLUSTER_SCOPED_KINDS: Final = frozenset(
    {"PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass", "CustomResourceDefinition"}
)


def resource_for_kind(kind: str, api_version: str | None = None) -> Resource | None:
    """The resource we read for `kind` (case-sensitive), or None for a kind we do not read.

    With `api_version` (an ownerReference's), a kind of the same name in another group (say, a
    custom `Deployment`) is not mistaken for the built-in one.
    """
    resource = _RESOURCES_BY_KIND.get(kind)
    if resource is None or api_version is None:
        return resource
    group = api_version.rpartition("/")[0]
    return resource if group == resource.group else None


def is_cluster_scoped(kind: str) -> bool:
    """True for the kinds known to live outside namespaces; unknown kinds are taken as namespaced."""
    resource = _RESOURCES_BY_KIND.get(kind)
    return (resource is not None and not resource.namespaced) or kind in _OTHER_CLUSTER_SCOPED_KINDS


class Reader(Protocol):
    """What enrichment needs from the API. `ApiClient` is the real one."""

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> RawObject | None:
        """One object, or None when it does not exist (404, or an empty name)."""
        ...

    async def list(self, resource: Resource, *, namespace: str) -> builtins.list[RawObject]:
        """All objects of a namespaced kind in one namespace; never cluster-wide."""
        ...


def _no_authorization() -> str | None:
    return None


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to one API server."""

    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_tls: bool = True
    tls_server_name: str | None = None
    # Called per request rather than read once: in-cluster and exec-plugin tokens rotate.
    authorization: Callable[[], str | None] = field(default=_no_authorization, compare=False)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None) -> Credentials:
        """From a kubeconfig file (`$KUBECONFIG` or ~/.kube/config when `path` is None)."""
        from kubernetes import client, config

        load: Callable[..., None] = config.load_kube_config  # untyped upstream
        configuration = client.Configuration()
        load(config_file=path, context=context, client_configuration=configuration, persist_config=False)
        return cls._from_configuration(configuration)

    @classmethod
    def in_cluster(cls) -> Credentials:
        """From the pod's service account (token, CA and the KUBERNETES_SERVICE_* variables)."""
        from kubernetes import client, config

        load: Callable[..., None] = config.load_incluster_config  # untyped upstream
        configuration = client.Configuration()
        load(client_configuration=configuration)
        return cls._from_configuration(configuration)

    @classmethod
    def _from_configuration(cls, configuration: Any) -> Credentials:
        def authorization() -> str | None:
            header: str | None = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
            return header

        return cls(
            host=str(configuration.host).rstrip("/"),
            ca_file=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            verify_tls=bool(configuration.verify_ssl),
            tls_server_name=getattr(configuration, "tls_server_name", None),
            authorization=authorization,
        )


def _ssl_context(credentials: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=credentials.ca_file)
    if credentials.cert_file:
        context.load_cert_chain(credentials.cert_file, credentials.key_file)
    if not credentials.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _error_for(status: int, body: str) -> ApiError:
    reason, message = "", body[:_MAX_ERROR_TEXT]
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        status_body = cast(RawStatus, parsed)
        reason = str(status_body.get("reason", ""))
        message = str(status_body.get("message", ""))[:_MAX_ERROR_TEXT]
    text = f"HTTP {status}{f' {reason}' if reason else ''}: {message}"
    if status == 404:
        return NotFound(text, status=status, reason=reason)
    if status == 403:
        return Forbidden(text, status=status, reason=reason)
    if status == 409:
        return Conflict(text, status=status, reason=reason)
    if status in _TRANSIENT_STATUSES:
        return TransientApiError(text, status=status, reason=reason)
    return ApiError(text, status=status, reason=reason)


class ApiClient:
    """A `Reader` over HTTP, plus the controller's only writes (`patch_status`, `create`, and for the
    sharding Leases `replace` and `delete`).

    Open it once per process and `close()` it (or use `async with`).

    `calls` counts requests per verb ("get", "list", "patch", "create", ...; every page of a list
    counts), failed ones included, so a benchmark can report API calls per SignalProcessing.
    """

    def __init__(self, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = _ssl_context(credentials) if credentials.host.startswith("https:") else None
        self._session: aiohttp.ClientSession | None = None
        self.calls: collections.Counter[str] = collections.Counter()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> RawObject | None:
        _check_scope(resource, namespace)
        if not name:
            # An empty name would address the collection, not an object.
            return None
        try:
            return await self._request("get", resource.path(namespace=namespace, name=name), {})
        except NotFound:
            return None

    async def list(
        self, resource: Resource, *, namespace: str, label_selector: str = ""
    ) -> builtins.list[RawObject]:
        if not resource.namespaced or not namespace:
            raise ValueError(f"{resource.plural}: only namespaced lists in a named namespace are allowed")
        return await self._list_pages(resource.path(namespace=namespace), label_selector)

    async def list_everywhere(self, resource: Resource) -> builtins.list[RawObject]:
        """Every object of `resource` in every namespace (the SPs of shards taken over)."""
        return await self._list_pages(resource.path(namespace=None), "")

    async def _list_pages(self, path: str, label_selector: str) -> builtins.list[RawObject]:
        items: builtins.list[RawObject] = []
        selection = {"labelSelector": label_selector} if label_selector else {}
        params = {"limit": str(_PAGE_SIZE), **selection}
        while True:
            page = await self._request("list", path, params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {"limit": str(_PAGE_SIZE), "continue": token, **selection}

    async def patch_status(
        self, resource: Resource, name: str, *, namespace: str, patch: RawObject
    ) -> RawObject:
        """A JSON merge patch of the status subresource; returns the object as written.

        A patch that carries `metadata.resourceVersion` is conditional: the API server refuses it
        with `Conflict` when the object has changed since that version.
        """
        path = resource.path(namespace=namespace, name=name) + "/status"
        return await self._request(
            "patch", path, {}, method="PATCH", body=patch, content_type="application/merge-patch+json"
        )

    async def create(self, resource: Resource, *, namespace: str, body: RawObject) -> RawObject:
        return await self._request(
            "create",
            resource.path(namespace=namespace),
            {},
            method="POST",
            body=body,
            content_type="application/json",
        )

    async def replace(self, resource: Resource, name: str, *, namespace: str, body: RawObject) -> RawObject:
        """A PUT of the whole object; conditional on the `metadata.resourceVersion` it carries
        (`Conflict` when the object changed since)."""
        return await self._request(
            "replace",
            resource.path(namespace=namespace, name=name),
            {},
            method="PUT",
            body=body,
            content_type="application/json",
        )

    async def delete(self, resource: Resource, name: str, *, namespace: str, resource_version: str) -> None:
        """Deletes the object if it is still at `resource_version` (`Conflict` otherwise); gone is fine."""
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": resource_version},
        }
        with contextlib.suppress(NotFound):
            await self._request(
                "delete",
                resource.path(namespace=namespace, name=name),
                {},
                method="DELETE",
                body=body,
                content_type="application/json",
            )

    async def check_watch(self, resource: Resource, *, namespace: str | None) -> None:
        """What an operator needs to follow `resource`, done once: a LIST of one item, then a WATCH from
        that list's resourceVersion, closed as soon as the API server accepts it (no event is read).

        Cluster-wide when `namespace` is None. Raises like every read: `Forbidden` when the credentials
        may not list or watch, `NotFound` when the kind is not served, `TransientApiError` when the API
        server cannot be reached.
        """
        path = resource.path(namespace=namespace)
        page = await self._request("list", path, {"limit": "1"})
        version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        self.calls["watch"] += 1
        params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "1"}
        try:
            async with self._open_session().get(
                yarl.URL(self._credentials.host + path, encoded=True),
                params=params,
                headers=self._headers(""),
                server_hostname=self._credentials.tls_server_name,
            ) as response:
                if response.status != 200:
                    raise _error_for(response.status, (await response.read()).decode(errors="replace"))
                response.close()  # accepted: the stream itself is kopf's business
        except _TRANSPORT_ERRORS as e:
            raise _transport_error(f"watch {path}", e) from e

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        authorization = self._credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl else aiohttp.TCPConnector()
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def _request(
        self,
        verb: str,
        path: str,
        params: dict[str, str],
        *,
        method: str = "GET",
        body: RawObject | None = None,
        content_type: str = "",
    ) -> RawObject:
        self.calls[verb] += 1
        headers = self._headers(content_type)
        data = json.dumps(body).encode() if body is not None else None
        # Built by hand, not via `base_url`: a host may carry a path prefix (an API proxy).
        url = yarl.URL(self._credentials.host + path, encoded=True)
        session = self._open_session()
        try:
            async with session.request(
                method,
                url,
                params=params,
                headers=headers,
                data=data,
                server_hostname=self._credentials.tls_server_name,
            ) as response:
                answer = await response.read()
                if response.status not in (200, 201):
                    raise _error_for(response.status, answer.decode(errors="replace"))
        except _TRANSPORT_ERRORS as e:
            raise _transport_error(f"{verb} {path}", e) from e
        try:
            decoded = json.loads(answer)
        except ValueError as e:
            raise ApiError(f"{verb} {path}: the response is not JSON") from e
        if not isinstance(decoded, dict):
            raise ApiError(f"{verb} {path}: the response is not a JSON object")
        return decoded


_TRANSPORT_ERRORS: Final = (TimeoutError, aiohttp.ClientError)


def _transport_error(what: str, error: TimeoutError | aiohttp.ClientError) -> ApiError:
    """A request that got no answer: a timeout or a broken connection may pass if retried."""
    if isinstance(error, TimeoutError):
        return TransientApiError(f"{what}: timed out")
    if isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return TransientApiError(f"{what}: {error}")
    return ApiError(f"{what}: {error}")


def _check_scope(resource: Resource, namespace: str | None) -> None:
    if resource.namespaced and not namespace:
        raise ValueError(f"{resource.plural} are namespaced: a namespace is required")
    if not resource.namespaced and namespace:
        raise ValueError(f"{resource.plural} are cluster-scoped: no namespace is allowed")
