"""The readiness edge: the probes of the controller's three gates, and `/readyz` over HTTP.

The gates (`controller.readiness` keeps their state):

- ``policies``: a policy is active and the policy engine still holds it. An OPA sidecar that
  restarted holds nothing until the policy watcher loads it again; one that is down cannot say.
  Held closed, with the reason, while the policy loads or when it fails to load.
- ``watch``: a LIST of SignalProcessings and a WATCH from that list's resourceVersion, with the
  controller's own credentials, in the scope kopf watches (cluster-wide, or each named namespace).
  kopf tells nobody when its watch stream is up, and only logs and retries a refused one; this
  proves what the stream needs: the API server answers, the CRD is served, RBAC allows list and
  watch.
- ``datastorage``: a GET of DataStorage's readiness URL answers 2xx.

`/readyz` answers 200 when every gate is open, else 503, with the same JSON body either way. It has
a port of its own: kopf's server on the health port serves only kopf's liveness path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web

from controller import kube
from controller.config import Settings
from controller.policies import MODULE_ID, ActivePolicies
from controller.policy_engine import PolicyEngine
from controller.readiness import Clock, GateClosed, Probe, ReadinessGates, utc_now

logger = logging.getLogger(__name__)

POLICIES: Final = "policies"
WATCH: Final = "watch"
DATASTORAGE: Final = "datastorage"
GATES: Final = (POLICIES, WATCH, DATASTORAGE)
READYZ_PATH: Final = "/readyz"
_MAX_BODY_IN_REASON: Final = 200


def policies_probe(policies: ActivePolicies, engine: PolicyEngine) -> Probe:
    async def probe() -> str:
        active = policies.current
        if active is None:
            raise GateClosed("no policy is active")
        if await engine.lost_modules([MODULE_ID]):
            raise GateClosed(
                f"the policy engine lost {MODULE_ID} (restarted?); the policy watcher loads it again"
            )
        return f"policy sha256 {active.sha256} active and held by the policy engine"

    return probe


def watch_probe(api: kube.ApiClient, resource: kube.Resource, namespaces: Sequence[str]) -> Probe:
    """LIST and WATCH `resource` in each of `namespaces`, or cluster-wide when there are none."""
    kind = f"{resource.plural}.{resource.group}"
    scope = f"in namespaces {', '.join(namespaces)}" if namespaces else "cluster-wide"

    async def probe() -> str:
        for namespace in namespaces or (None,):
            try:
                await api.check_watch(resource, namespace=namespace)
            except kube.ApiError as error:
                where = f"in namespace {namespace}" if namespace else "cluster-wide"
                raise GateClosed(f"cannot list and watch {kind} {where}: {error}") from error
        return f"list and watch of {kind} accepted {scope}"

    return probe


class HttpReadyProbe:
    """GET `url`: any 2xx passes. The gate's timeout bounds it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(self.url) as response:
                if 200 <= response.status < 300:
                    return f"HTTP {response.status} from {self.url}"
                body = (await response.content.read(_MAX_BODY_IN_REASON)).decode(errors="replace")
                raise GateClosed(f"HTTP {response.status} from {self.url}: {body}")
        except aiohttp.ClientError as error:
            raise GateClosed(f"GET {self.url}: {error}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ReadinessServer:
    """`GET /readyz` on `host:port` (port 0: one the kernel picks, then in `port`)."""

    def __init__(self, gates: ReadinessGates, *, port: int, host: str = "0.0.0.0") -> None:
        self._gates = gates
        self._host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(READYZ_PATH, self._readyz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        logger.info("readiness on http://%s:%d%s", self._host, self.port, READYZ_PATH)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _readyz(self, request: web.Request) -> web.Response:
        report = self._gates.report()
        return web.json_response(report, status=200 if report["ready"] else 503)


@dataclass
class Readiness:
    """The gates, their probe loop and `/readyz` of one controller process."""

    gates: ReadinessGates
    server: ReadinessServer
    api: kube.ApiClient
    datastorage: HttpReadyProbe
    loop: asyncio.Task[None]

    async def close(self) -> None:
        self.loop.cancel()
        await asyncio.wait([self.loop])
        await self.server.close()
        await self.datastorage.close()
        await self.api.close()


async def start_readiness(
    settings: Settings, api: kube.ApiClient, watched: kube.Resource, *, clock: Clock = utc_now
) -> Readiness:
    """Serve `/readyz` and probe the watch and DataStorage gates; the policies gate stays closed until
    the runtime attaches its probe. `api` is closed with the result."""
    gates = ReadinessGates(
        GATES,
        interval=settings.readiness_interval_seconds,
        timeout=settings.readiness_timeout_seconds,
        clock=clock,
    )
    gates.attach(WATCH, watch_probe(api, watched, settings.kopf_namespaces))
    datastorage = HttpReadyProbe(settings.datastorage_readiness_url)
    gates.attach(DATASTORAGE, datastorage)
    server = ReadinessServer(gates, port=settings.readiness_port)
    await server.start()
    loop = asyncio.create_task(gates.run(), name="readiness-probes")
    loop.add_done_callback(_report_loop_death)
    return Readiness(gates=gates, server=server, api=api, datastorage=datastorage, loop=loop)


def _report_loop_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.critical(
            "the readiness probe loop died; every gate turns stale and closed", exc_info=task.exception()
        )
