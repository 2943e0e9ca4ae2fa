"""Policy engines for specs that are not about time limits: they wait for an answer.

Two suites (and their nodes) on 2 cores starve the engines: an OPA for over a second, an
evaluation past its rule's 100 ms now and then. The controller takes neither for a failure (it
retries an unreachable engine and an answer past its time limit), and a spec that asks an engine
itself does the same with these. Specs about the time limits use the engines as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from controller.policy_engine import (
    EVALUATION_TIME_LIMIT,
    EmbeddedEngine,
    OpaServerEngine,
    PolicyEngine,
    PolicyTimeLimitExceeded,
)

# On top of a rule's time limit, how long a spec's OPA client waits for OPA's answer, instead of
# taking slowness for an unreachable OPA.
PATIENT_TRANSPORT_ALLOWANCE: Final = 60.0

# How many times an evaluation is asked while its answer comes past the rule's time limit.
OVERRUN_ATTEMPTS: Final = 5


class PatientEngine:
    """A `PolicyEngine` that asks again when an answer came past its time limit."""

    def __init__(self, engine: PolicyEngine) -> None:
        self._engine = engine

    async def load(self, module_id: str, source: str) -> None:
        await self._engine.load(module_id, source)

    async def evaluate(
        self,
        package_path: str,
        rule: str,
        input: Mapping[str, object],
        *,
        time_limit: float = EVALUATION_TIME_LIMIT,
    ) -> object:
        for _ in range(OVERRUN_ATTEMPTS - 1):
            try:
                return await self._engine.evaluate(package_path, rule, input, time_limit=time_limit)
            except PolicyTimeLimitExceeded:
                continue
        return await self._engine.evaluate(package_path, rule, input, time_limit=time_limit)

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        return await self._engine.lost_modules(module_ids)

    async def close(self) -> None:
        await self._engine.close()


def patient_opa(url: str) -> PatientEngine:
    return PatientEngine(OpaServerEngine(url, transport_allowance=PATIENT_TRANSPORT_ALLOWANCE))


def patient_embedded() -> PatientEngine:
    return PatientEngine(EmbeddedEngine())
