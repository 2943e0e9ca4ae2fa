"""The engine check: an engine that lost its module (an OPA restarted) gets the active policy again;
a reload the engine could not take (it was down) is asked again until it can."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from controller.hotreload import PolicyWatcher, ReportedReloadResult
from controller.metrics import ControllerMetrics
from controller.policies import MODULE_ID, POLICY_FILE_NAME, ActivePolicies, CandidateVerdict, PolicyEvaluator
from controller.policy_engine import EmbeddedEngine, PolicyEngineUnavailable
from test.unit.polling import wait_until

Started = tuple["RestartingEngine", PolicyWatcher, ControllerMetrics]


class RestartingEngine:
    """Modules in a dict, which a test empties as an OPA restart does."""

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}
        self.reachable = True

    async def load(self, module_id: str, source: str) -> None:
        if not self.reachable:
            raise PolicyEngineUnavailable("engine down")
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


def reloads(metrics: ControllerMetrics, result: str) -> float | None:
    return metrics.registry.get_sample_value("signalprocessing_policy_reloads_total", {"result": result})


def restores(metrics: ControllerMetrics) -> float | None:
    return reloads(metrics, ReportedReloadResult.RESTORED)


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


async def test_a_reload_the_engine_could_not_take_is_asked_again_until_it_can(tmp_path: Path) -> None:
    """An OPA sidecar restarting while its ConfigMap is edited: the edit is neither refused nor lost."""
    (tmp_path / POLICY_FILE_NAME).write_text("package signalprocessing\n\nlabels := {}\n")
    engine = RestartingEngine()
    policies = ActivePolicies(engine, no_smoke_check)
    good = await policies.start(tmp_path)
    metrics = ControllerMetrics.create()
    watcher = PolicyWatcher(
        tmp_path, policies, metrics, engine=engine, debounce=0.01, engine_check_interval=0.01
    )
    edited = 'package signalprocessing\n\nlabels := {"team": "edited"}\n'
    (tmp_path / POLICY_FILE_NAME).write_text(edited)
    engine.reachable = False
    try:
        outcome = await watcher.reload()

        assert (outcome.status, outcome.active) == (CandidateVerdict.DEFERRED, good)
        assert reloads(metrics, ReportedReloadResult.DEFERRED) == 1
        assert reloads(metrics, ReportedReloadResult.REJECTED) is None
        detail = watcher.probe_detail()
        assert detail["lastReload"]["result"] == ReportedReloadResult.DEFERRED
        assert "lastRejection" not in detail

        engine.reachable = True
        edited_hash = hashlib.sha256(edited.encode()).hexdigest()

        await wait_until(
            lambda: policies.current is not None and policies.current.sha256 == edited_hash,
            what="the edited policy activated",
        )
        assert engine.modules == {MODULE_ID: edited}
        assert reloads(metrics, ReportedReloadResult.ACTIVATED) == 1
    finally:
        await watcher.close()
