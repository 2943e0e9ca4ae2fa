"""The engine check: an engine that lost its module (an OPA restarted) gets the active policy again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from controller.hotreload import PolicyWatcher, ReportedReloadResult
from controller.metrics import ControllerMetrics
from controller.policies import MODULE_ID, POLICY_FILE_NAME, ActivePolicies, PolicyEvaluator
from controller.policy_engine import EmbeddedEngine, PolicyEngineUnavailable

Started = tuple["RestartingEngine", PolicyWatcher, ControllerMetrics]


class RestartingEngine:
    """Modules in a dict, which a test empties as an OPA restart does."""

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}
        self.reachable = True

    async def load(self, module_id: str, source: str) -> None:
        self.modules[module_id] = source

    async def evaluate(
        self, package_path: str, rule: str, input: Mapping[str, object], *, time_limit: float = 5.0
    ) -> object:
        return None

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        if not self.reachable:
            raise PolicyEngineUnavailable("engine down")
        return sorted(module_id for module_id in module_ids if module_id not in self.modules)

    async def close(self) -> None:
        pass


async def no_smoke_check(evaluator: PolicyEvaluator) -> None:
    pass


@pytest.fixture
async def started(tmp_path: Path) -> Started:
    (tmp_path / POLICY_FILE_NAME).write_text("package signalprocessing\n\nlabels := {}\n")
    engine = RestartingEngine()
    policies = ActivePolicies(engine, no_smoke_check)
    await policies.start(tmp_path)
    metrics = ControllerMetrics.create()
    return engine, PolicyWatcher(tmp_path, policies, metrics, engine=engine), metrics  # never started


def restores(metrics: ControllerMetrics) -> float | None:
    return metrics.registry.get_sample_value(
        "signalprocessing_policy_reloads_total", {"result": ReportedReloadResult.RESTORED}
    )


async def test_an_engine_that_lost_its_module_gets_the_active_policy_again(started: Started) -> None:
    engine, watcher, metrics = started
    active = dict(engine.modules)
    engine.modules.clear()

    assert await watcher.check_engine(engine)

    assert engine.modules == active
    assert restores(metrics) == 1


async def test_an_engine_that_holds_its_modules_is_left_alone(started: Started) -> None:
    engine, watcher, metrics = started

    assert not await watcher.check_engine(engine)

    assert restores(metrics) is None


async def test_an_engine_that_cannot_list_its_modules_is_left_alone(started: Started) -> None:
    engine, watcher, metrics = started
    engine.modules.clear()
    engine.reachable = False

    assert not await watcher.check_engine(engine)

    assert engine.modules == {}
    assert restores(metrics) is None


async def test_the_embedded_engine_never_loses_a_module() -> None:
    engine = EmbeddedEngine()
    try:
        assert await engine.lost_modules([MODULE_ID]) == []
    finally:
        await engine.close()
