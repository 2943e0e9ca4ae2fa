"""What the controller may ask of a Rego engine, and the errors it gets back.

`PolicyEngine` is all that `policies`, `classify` and `hotreload` see of an
engine: load a module, evaluate one rule with an input, say which loaded
modules it lost, close. Both engines implement it, and both build their
inputs with `encode_input` and their rule paths with `rule_segments`, so they
evaluate byte-identical JSON and accept the same names.

Boundary: the contract only. No engine lives here, and neither OPA's HTTP
API nor regorus is imported; those are `opa_server` and `embedded`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

#: The time limit, in seconds, of an evaluation whose caller names none (kubernaut's limit for custom labels).
EVALUATION_TIME_LIMIT: Final = 5.0

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PolicyError(Exception):
    """Base of every error a policy engine reports."""


class PolicyRejected(PolicyError):
    """The engine refused to load a module; the message names file:line of each problem."""


class PolicyEvaluationError(PolicyError):
    """An evaluation failed: conflicting values or a builtin error."""


class PolicyEngineUnavailable(PolicyError):
    """The engine could not be reached (OPA down or not answering); retrying may help."""


class PolicyTimeLimitExceeded(PolicyEngineUnavailable):
    """An answer came later than its rule's time limit, and is discarded.

    A slow rule and an engine starved of CPU (a busy node, a throttled sidecar) look alike, so it is
    retried like an unreachable engine: a load spike does not fail an SP for good, and a rule that
    is always too slow fails its SPs at their deadline, the overrun in their failure.
    """


class PolicyEngine(Protocol):
    """Loads Rego modules and evaluates rules; implementations are safe to share between tasks."""

    async def load(self, module_id: str, source: str) -> None:
        """Add or replace the module `module_id`; raises `PolicyRejected` and keeps the old one."""

    async def evaluate(
        self,
        package_path: str,
        rule: str,
        input: Mapping[str, object],
        *,
        time_limit: float = EVALUATION_TIME_LIMIT,
    ) -> object:
        """The JSON value of `data.<package_path>.<rule>`, or `None` when the rule is undefined.

        A rule whose value is JSON `null` is also reported as `None`: neither is
        a decision. Sets come back as sorted lists, as OPA serialises them.
        An evaluation that took longer than `time_limit` seconds raises
        `PolicyTimeLimitExceeded`; the engine stays usable for the next call.
        """

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        """Those of `module_ids` the engine no longer holds although they were loaded, sorted.

        An engine that restarted behind the controller's back (an OPA sidecar)
        comes back empty and answers "undefined" for every rule; the caller
        loads the lost modules again. Raises `PolicyEngineUnavailable` when the
        engine cannot say.
        """

    async def close(self) -> None:
        """Release connections or the engine thread; the engine is unusable afterwards."""


def encode_input(input: Mapping[str, object]) -> str:
    """The JSON text both engines evaluate against, so they see byte-identical inputs."""

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError(f"policy input holds a {type(value).__name__}, which is not JSON")

    return json.dumps(input, default=plain, separators=(",", ":"))


def rule_segments(package_path: str, rule: str) -> list[str]:
    """The segments of `data.<package_path>.<rule>`; `ValueError` for one that is no Rego identifier."""
    segments = [*package_path.split("."), rule]
    for segment in segments:
        if not _IDENTIFIER.match(segment):
            raise ValueError(f"not a Rego identifier: {segment!r} in {package_path!r}.{rule!r}")
    return segments
