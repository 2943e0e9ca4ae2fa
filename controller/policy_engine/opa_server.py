"""`OpaServerEngine`: the policy engine behind an OPA server, spoken to over OPA's HTTP API.

One OPA server per controller (a sidecar, or one per test worker). It is the
reference engine: OPA type-checks a module at upload and refuses it, with
file:line, before it replaces the loaded one. Modules go up through
opa-python-client; evaluations go to OPA's Data API (`/v1/data/...`) and the
module listing to its Policy API (`GET /v1/policies`), on this engine's own
aiohttp session.

Boundary: the only module of the controller that talks to OPA. Its errors
leave as `PolicyError`s, never as HTTP statuses or aiohttp exceptions.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final

import aiohttp
from opa_client import AsyncOpaClient
from opa_client.errors import RegoParseError, TypeException

from controller.policy_engine.protocol import (
    EVALUATION_TIME_LIMIT,
    PolicyEngineUnavailable,
    PolicyEvaluationError,
    PolicyRejected,
    PolicyTimeLimitExceeded,
    encode_input,
    rule_segments,
)

#: How long uploads and module listings may take, and how much longer than its time limit an
#: evaluation's request may take (the round trip, OPA parsing the input) before the engine stops waiting.
REQUEST_TIMEOUT: Final = 5.0
EVALUATION_TRANSPORT_ALLOWANCE: Final = 1.0


def _describe_opa_errors(body: object, fallback: str) -> str:
    """OPA's error body as `file:row:col: code: message` lines (the HTTP status alone says nothing)."""
    if not isinstance(body, Mapping):
        return fallback
    details = body.get("errors")
    lines: list[str] = []
    if isinstance(details, list):
        for error in details:
            if not isinstance(error, Mapping):
                continue
            where = ""
            location = error.get("location")
            if isinstance(location, Mapping):
                where = f"{location.get('file', '')}:{location.get('row', 0)}"
                if location.get("col"):
                    where += f":{location['col']}"
                where += ": "
            lines.append(f"{where}{error.get('code', 'error')}: {error.get('message', '')}")
    if not lines:
        lines.append(str(body.get("message") or fallback))
    return "\n".join(lines)


def _evaluation_seconds(body: Mapping[str, object]) -> float:
    """OPA's own measure of the query's evaluation, from `?metrics=true`; 0 when it gave none."""
    metrics = body.get("metrics")
    nanoseconds = metrics.get("timer_rego_query_eval_ns") if isinstance(metrics, Mapping) else None
    return nanoseconds / 1e9 if isinstance(nanoseconds, int | float) else 0.0


class OpaServerEngine:
    """Evaluates against an OPA server at `url`; one server per controller, never shared.

    OPA merges modules that declare the same package, so two controllers (or
    two test workers) loading into one server would see each other's rules.
    Uploads go through opa-python-client with `rego_compat=False`, so OPA sees
    the text as written instead of a v0-to-v1 rewrite. Queries go straight to
    OPA's Data API on this engine's own session: the client's `query_rule`
    raises on HTTP 500 without reading the body, which is where OPA puts the
    conflict or builtin error, and its retry loop re-sends 500s after sleeping.

    Time limits: each query asks OPA for its metrics, and an answer whose
    evaluation (`timer_rego_query_eval_ns`, OPA's own clock, without the
    round trip) took longer than the call's `time_limit` is discarded with a
    `PolicyEvaluationError`, as the embedded engine does. The request itself
    is abandoned `EVALUATION_TRANSPORT_ALLOWANCE` seconds after the limit
    (OPA stops evaluating when its client goes away) as `PolicyEngineUnavailable`:
    without an answer, a runaway policy and a starved OPA look alike, and only
    the first deserves a permanent failure. Measuring OPA's time rather than the
    round trip keeps a busy machine's scheduling delays from failing an SP
    whose policy is fast.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        transport_allowance: float = EVALUATION_TRANSPORT_ALLOWANCE,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ValueError(f"OPA URL needs scheme, host and port, got {url!r}")
        self._url = url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port
        self._tls = parts.scheme == "https"
        self._timeout = timeout
        self._transport_allowance = transport_allowance
        self._resources = contextlib.AsyncExitStack()
        self._client: AsyncOpaClient | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _opa(self) -> AsyncOpaClient:
        # Created on first use: aiohttp sessions belong to the running loop.
        if self._client is None:
            client = AsyncOpaClient(
                host=self._host, port=self._port, ssl=self._tls, retries=0, timeout=self._timeout
            )
            self._client = await self._resources.enter_async_context(client)
        return self._client

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._session = await self._resources.enter_async_context(session)
        return self._session

    async def load(self, module_id: str, source: str) -> None:
        opa = await self._opa()
        try:
            await opa.update_policy_from_string(source, module_id, rego_compat=False)
        except RegoParseError as error:
            body = {"message": error.message, "errors": error.errors}
            raise PolicyRejected(_describe_opa_errors(body, str(error))) from None
        except TypeException as error:
            raise PolicyRejected(f"{module_id}: {error.expression}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise PolicyEngineUnavailable(
                f"OPA at {self._url} did not take {module_id}: {error!r}"
            ) from error

    async def evaluate(
        self,
        package_path: str,
        rule: str,
        input: Mapping[str, object],
        *,
        time_limit: float = EVALUATION_TIME_LIMIT,
    ) -> object:
        rule_path = f"data.{package_path}.{rule}"
        url = f"{self._url}/v1/data/{'/'.join(rule_segments(package_path, rule))}"
        waited = time_limit + self._transport_allowance
        session = await self._http()
        try:
            async with session.post(
                url,
                data='{"input":' + encode_input(input) + "}",
                params={"strict-builtin-errors": "true", "metrics": "true"},
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=waited),
            ) as response:
                body = await response.json(content_type=None)
                status = response.status
        except aiohttp.ConnectionTimeoutError as error:
            raise PolicyEngineUnavailable(f"OPA at {self._url} unreachable: {error!r}") from error
        except TimeoutError as error:
            # A runaway evaluation, or an OPA too busy to answer (a starved sidecar in an alert storm):
            # no telling which, so it is retried like an unreachable OPA rather than failing the SP for
            # good. A policy that never answers fails its SPs at their deadline.
            raise PolicyEngineUnavailable(
                f"{rule_path}: no answer from OPA within {waited:.1f} s (time limit {time_limit} s)"
            ) from error
        except aiohttp.ClientError as error:
            raise PolicyEngineUnavailable(f"OPA at {self._url} unreachable: {error!r}") from error
        if status != 200:
            raise PolicyEvaluationError(_describe_opa_errors(body, f"HTTP {status} from OPA"))
        if not isinstance(body, Mapping):
            return None
        elapsed = _evaluation_seconds(body)
        if elapsed > time_limit:
            raise PolicyTimeLimitExceeded(
                f"{rule_path} took {elapsed:.3f} s, over its {time_limit} s time limit"
            )
        # OPA leaves `result` out entirely when the rule is undefined.
        return body.get("result")

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        """Those of `module_ids` missing from OPA's module list (`GET /v1/policies`, a few KB).

        An OPA that restarted comes back empty: every module is lost.
        """
        session = await self._http()
        try:
            async with session.get(f"{self._url}/v1/policies") as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise PolicyEngineUnavailable(
                f"OPA at {self._url} did not list its policies: {error!r}"
            ) from error
        modules = body.get("result") if isinstance(body, Mapping) else None
        if not isinstance(modules, list):
            raise PolicyEngineUnavailable(
                f"OPA at {self._url} did not list its policies: HTTP {status} without a module list"
            )
        loaded = {module.get("id") for module in modules if isinstance(module, Mapping)}
        return sorted(module_id for module_id in module_ids if module_id not in loaded)

    async def close(self) -> None:
        await self._resources.aclose()
        self._client = None
        self._session = None
