"""Policy files, hashes, text checks, and `ActivePolicies` swapping sets over an in-memory engine."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from controller.policies import (
    ActivePolicies,
    CandidateVerdict,
    Policy,
    PolicyEvaluator,
    PolicyFileError,
    PolicyLoadError,
    PolicyNotActive,
    PolicySet,
    check_policy_text,
    read_policy_set,
)
from controller.policy_engine import PolicyEngineUnavailable, PolicyEvaluationError, PolicyRejected


def source(policy: Policy, marker: str = "v1") -> str:
    return f"package {policy.package}\n\n# {marker}\n{policy.rule} := {{}}\n"


def write_all(directory: Path, marker: str = "v1") -> None:
    for policy in Policy:
        (directory / policy.file_name).write_text(source(policy, marker))


def test_policy_names_files_packages_and_rules() -> None:
    assert [(p.file_name, p.module_id, p.package, p.rule) for p in Policy] == [
        ("environment.rego", "environment.rego", "signalprocessing.environment", "result"),
        ("priority.rego", "priority.rego", "signalprocessing.priority", "result"),
        ("business.rego", "business.rego", "signalprocessing.business", "result"),
        ("customlabels.rego", "customlabels.rego", "signalprocessing.labels", "labels"),
    ]


def test_reading_a_directory_hashes_the_four_files_and_ignores_the_rest(tmp_path: Path) -> None:
    write_all(tmp_path)
    (tmp_path / "priority_test.rego").write_text("package signalprocessing.priority_test\n")
    (tmp_path / "..data").mkdir()
    policies = read_policy_set(tmp_path)
    assert set(policies.texts) == set(Policy)
    data = (tmp_path / "business.rego").read_bytes()
    assert policies[Policy.BUSINESS].source == data.decode()
    assert policies.hashes[Policy.BUSINESS] == hashlib.sha256(data).hexdigest()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    write_all(tmp_path)
    (tmp_path / "priority.rego").unlink()
    with pytest.raises(PolicyFileError, match=re.escape(f"{tmp_path / 'priority.rego'} is missing")):
        read_policy_set(tmp_path)


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    write_all(tmp_path)
    (tmp_path / "environment.rego").write_bytes(b"package x\n\xff\n")
    with pytest.raises(PolicyFileError, match=r"environment\.rego is not UTF-8"):
        read_policy_set(tmp_path)


def test_a_set_needs_all_four_and_cannot_be_changed() -> None:
    with pytest.raises(ValueError, match=r"customlabels\.rego"):
        PolicySet.from_sources(
            {policy: source(policy) for policy in Policy if policy is not Policy.CUSTOMLABELS}
        )
    policies = PolicySet.from_sources({policy: source(policy) for policy in Policy})
    with pytest.raises(TypeError):
        policies.texts[Policy.ENVIRONMENT] = policies[Policy.PRIORITY]  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("package signalprocessing.priority\n", "declares signalprocessing.priority", id="other"),
        pytest.param("# package signalprocessing.environment\n", "declares no package", id="none"),
        pytest.param(
            'package signalprocessing.environment\n\nr := http.send({"url": "x"})\n',
            r"environment\.rego:3: http\.send is not allowed",
            id="network",
        ),
    ],
)
def test_texts_refused_before_any_engine_sees_them(text: str, message: str) -> None:
    with pytest.raises(PolicyRejected, match=message):
        check_policy_text(Policy.ENVIRONMENT, text)


def test_a_network_call_in_a_comment_is_fine() -> None:
    check_policy_text(Policy.ENVIRONMENT, "# no http.send(...) here\npackage signalprocessing.environment\n")


class FakeEngine:
    """Modules in a dict; `evaluate` answers with the loaded text, optionally held at a gate."""

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}
        self.loads: list[str] = []
        self.fail_loads_containing: str | None = None
        self.gate: asyncio.Event | None = None
        self.evaluating = asyncio.Event()

    async def load(self, module_id: str, source: str) -> None:
        self.loads.append(module_id)
        if self.fail_loads_containing and self.fail_loads_containing in source:
            raise PolicyEngineUnavailable("engine down")
        if "REJECT" in source:
            raise PolicyRejected(f"{module_id}:3: nope")
        self.modules[module_id] = source

    async def evaluate(self, package_path: str, rule: str, input: Mapping[str, object]) -> object:
        policy = next(p for p in Policy if p.package == package_path)
        self.evaluating.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.modules.get(policy.module_id)

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        return sorted(module_id for module_id in module_ids if module_id not in self.modules)

    async def close(self) -> None:
        pass


async def smoke(evaluator: PolicyEvaluator) -> None:
    for policy in Policy:
        decision = await evaluator.evaluate(policy, {})
        if "BAD" in str(decision.value):
            raise PolicyEvaluationError(f"{policy.file_name}: smoke failed")


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def active(engine: FakeEngine, tmp_path: Path) -> ActivePolicies:
    write_all(tmp_path)
    policies = ActivePolicies(engine, smoke)
    await policies.start(tmp_path)
    return policies


async def test_start_loads_four_modules(active: ActivePolicies, engine: FakeEngine) -> None:
    assert sorted(engine.modules) == sorted(policy.module_id for policy in Policy)


async def test_evaluating_before_start_is_not_active(engine: FakeEngine) -> None:
    with pytest.raises(PolicyNotActive):
        await ActivePolicies(engine, smoke).evaluate(Policy.ENVIRONMENT, {})


async def test_only_changed_policies_are_loaded(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    engine.loads.clear()
    assert (await active.reload(tmp_path)).status is CandidateVerdict.UNCHANGED
    (tmp_path / "priority.rego").write_text(source(Policy.PRIORITY, "v2"))
    outcome = await active.reload(tmp_path)
    assert (outcome.status, outcome.changed, engine.loads) == (
        CandidateVerdict.ACTIVATED,
        (Policy.PRIORITY,),
        ["priority.rego"],
    )


async def test_a_smoke_failure_reloads_the_previous_texts(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    before = dict(engine.modules)
    (tmp_path / "business.rego").write_text(source(Policy.BUSINESS, "BAD"))
    outcome = await active.reload(tmp_path)
    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.error == "PolicyEvaluationError: business.rego: smoke failed"
    assert engine.modules == before


async def test_a_slow_smoke_evaluation_is_refused(engine: FakeEngine, tmp_path: Path) -> None:
    write_all(tmp_path)
    policies = ActivePolicies(engine, smoke, smoke_budget=0.0)
    with pytest.raises(PolicyLoadError, match=r"over the 0\.0 s budget"):
        await policies.start(tmp_path)


async def test_a_failed_rollback_is_repaired_before_the_next_evaluation(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    good = active.current
    assert good is not None
    (tmp_path / "environment.rego").write_text(source(Policy.ENVIRONMENT, "BAD"))
    engine.fail_loads_containing = "v1"  # the engine goes down just as the old text is reloaded
    assert (await active.reload(tmp_path)).status is CandidateVerdict.REJECTED
    assert "BAD" in engine.modules["environment.rego"]

    with pytest.raises(PolicyEngineUnavailable, match="out of sync"):
        await active.evaluate(Policy.ENVIRONMENT, {})
    engine.fail_loads_containing = None
    decision = await active.evaluate(Policy.ENVIRONMENT, {})
    assert decision.value == good[Policy.ENVIRONMENT].source
    assert decision.policy_hash == good.hashes[Policy.ENVIRONMENT]


async def test_an_engine_that_lost_its_modules_gets_them_back_before_an_answer_is_believed(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    good = active.current
    assert good is not None
    engine.modules.clear()  # an OPA that restarted knows no policy: every rule is undefined

    decision = await active.evaluate(Policy.PRIORITY, {})

    assert decision.value == good[Policy.PRIORITY].source
    assert sorted(engine.modules) == sorted(policy.module_id for policy in Policy)


async def test_an_evaluation_in_flight_finishes_with_the_policy_it_started_with(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    old = active.current
    assert old is not None
    engine.gate = asyncio.Event()
    in_flight = asyncio.create_task(active.evaluate(Policy.PRIORITY, {}))
    await engine.evaluating.wait()

    write_all(tmp_path, "v2")
    reload = asyncio.create_task(active.reload(tmp_path))
    async with asyncio.timeout(5):
        while not active._lock._writers_waiting:  # noqa: ASYNC110 - lock state has no event to await
            await asyncio.sleep(0.001)
    assert not reload.done()
    engine.gate.set()
    first = await in_flight
    assert (await reload).status is CandidateVerdict.ACTIVATED
    second = await active.evaluate(Policy.PRIORITY, {})

    assert (first.value, first.policy_hash) == (old[Policy.PRIORITY].source, old.hashes[Policy.PRIORITY])
    new = active.current
    assert new is not None
    assert (second.value, second.policy_hash) == (new[Policy.PRIORITY].source, new.hashes[Policy.PRIORITY])
