"""The policy file, its hash, text checks, and `ActivePolicies` swapping texts over an in-memory engine."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from controller.policies import (
    LABELS_TIME_LIMIT,
    LEGACY_FILE_NAMES,
    MODULE_ID,
    POLICY_FILE_NAME,
    SMOKE_ATTEMPTS,
    ActivePolicies,
    CandidateVerdict,
    PolicyEvaluator,
    PolicyFileError,
    PolicyLoadError,
    PolicyNotActive,
    Rule,
    check_policy_text,
    read_policy,
)
from controller.policy_engine import (
    PolicyEngineUnavailable,
    PolicyEvaluationError,
    PolicyRejected,
    PolicyTimeLimitExceeded,
)
from test.unit.polling import wait_until


def source(marker: str = "v1") -> str:
    return f"package signalprocessing\n\n# {marker}\nlabels := {{}}\n"


def write(directory: Path, marker: str = "v1") -> None:
    (directory / POLICY_FILE_NAME).write_text(source(marker))


def test_rules_and_their_time_limits() -> None:
    assert {rule.value: rule.time_limit for rule in Rule} == {
        "environment": 0.1,
        "severity": 0.1,
        "priority": 0.1,
        "labels": 5.0,
        "cluster": 0.1,
        "business": 0.1,
    }
    assert LABELS_TIME_LIMIT == 5.0


def test_reading_a_directory_hashes_policy_rego_and_ignores_the_rest(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "policy_test.rego").write_text("package signalprocessing_test\n")
    (tmp_path / "..data").mkdir()
    policy = read_policy(tmp_path)
    data = (tmp_path / POLICY_FILE_NAME).read_bytes()
    assert policy.source == data.decode()
    assert policy.sha256 == hashlib.sha256(data).hexdigest()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=re.escape(f"{tmp_path / POLICY_FILE_NAME} is missing")):
        read_policy(tmp_path)


def test_the_four_file_layout_is_refused_with_the_migration(tmp_path: Path) -> None:
    for name in LEGACY_FILE_NAMES:
        (tmp_path / name).write_text(f"package signalprocessing.{name.removesuffix('.rego')}\n")
    with pytest.raises(PolicyFileError) as refused:
        read_policy(tmp_path)
    message = str(refused.value)
    assert f"{tmp_path / POLICY_FILE_NAME} is missing" in message
    assert "environment.rego, priority.rego, business.rego, customlabels.rego are no longer read" in message
    assert "Migrating from the four-file layout" in message


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / POLICY_FILE_NAME).write_bytes(b"package x\n\xff\n")
    with pytest.raises(PolicyFileError, match=r"policy\.rego is not UTF-8"):
        read_policy(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("package signalprocessing_x\n", "declares signalprocessing_x", id="other"),
        pytest.param(
            "package signalprocessing.environment\n",
            "declares signalprocessing.environment, expected package signalprocessing; the four-file",
            id="four-file-package",
        ),
        pytest.param("# package signalprocessing\n", "declares no package", id="none"),
        pytest.param(
            'package signalprocessing\n\nr := http.send({"url": "x"})\n',
            r"policy\.rego:3: http\.send is not allowed",
            id="network",
        ),
    ],
)
def test_texts_refused_before_any_engine_sees_them(text: str, message: str) -> None:
    with pytest.raises(PolicyRejected, match=message):
        check_policy_text(text)


def test_a_network_call_in_a_comment_is_fine() -> None:
    check_policy_text("# no http.send(...) here\npackage signalprocessing\n\nimport rego.v1\n")


class FakeEngine:
    """One module in a dict; `evaluate` answers `rule:text`, optionally held at a gate."""

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}
        self.loads: list[str] = []
        self.time_limits: dict[str, float] = {}
        self.fail_loads_containing: str | None = None
        self.fail_rules: set[str] = set()
        self.unreachable_rules: set[str] = set()
        self.undefined_rules: set[str] = set()
        self.overruns: dict[str, int] = {}  # rule -> how many of its next answers come past its limit
        self.module_lists = 0
        self.gate: asyncio.Event | None = None
        self.evaluating = asyncio.Event()
        self.asked: list[str] = []
        self.all_asked = asyncio.Event()
        self.expected_questions = 0

    async def load(self, module_id: str, source: str) -> None:
        self.loads.append(module_id)
        if self.fail_loads_containing and self.fail_loads_containing in source:
            raise PolicyEngineUnavailable("engine down")
        if "REJECT" in source:
            raise PolicyRejected(f"{module_id}:3: nope")
        self.modules[module_id] = source

    async def evaluate(
        self, package_path: str, rule: str, input: Mapping[str, object], *, time_limit: float = 5.0
    ) -> object:
        assert package_path == "signalprocessing"
        self.time_limits[rule] = time_limit
        self.evaluating.set()
        self.asked.append(rule)
        if len(self.asked) == self.expected_questions:
            self.all_asked.set()
        if self.gate is not None:
            await self.gate.wait()
        if rule in self.unreachable_rules:
            raise PolicyEngineUnavailable("engine down")
        if rule in self.fail_rules:
            raise PolicyEvaluationError(f"data.signalprocessing.{rule}: conflict")
        if self.overruns.get(rule, 0) > 0:
            self.overruns[rule] -= 1
            raise PolicyTimeLimitExceeded(
                f"data.signalprocessing.{rule} took 0.2 s, over its 0.1 s time limit"
            )
        text = self.modules.get(MODULE_ID)
        return None if text is None or rule in self.undefined_rules else f"{rule}:{text}"

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        self.module_lists += 1
        return sorted(module_id for module_id in module_ids if module_id not in self.modules)

    async def close(self) -> None:
        pass


async def smoke(evaluator: PolicyEvaluator) -> None:
    decisions = await evaluator.evaluate(tuple(Rule), {})
    for rule in Rule:
        if "BAD" in str(decisions.value(rule)):
            raise PolicyEvaluationError(f"{rule}: smoke failed")


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def active(engine: FakeEngine, tmp_path: Path) -> ActivePolicies:
    write(tmp_path)
    policies = ActivePolicies(engine, smoke)
    await policies.start(tmp_path)
    return policies


async def test_start_loads_the_one_module(active: ActivePolicies, engine: FakeEngine) -> None:
    assert list(engine.modules) == [MODULE_ID]


async def test_evaluating_before_start_is_not_active(engine: FakeEngine) -> None:
    with pytest.raises(PolicyNotActive):
        await ActivePolicies(engine, smoke).evaluate((Rule.ENVIRONMENT,), {})


async def test_each_rule_is_evaluated_under_its_own_time_limit(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    engine.time_limits.clear()
    await active.evaluate((Rule.SEVERITY, Rule.LABELS, Rule.PRIORITY), {})
    assert engine.time_limits == {"severity": 0.1, "labels": 5.0, "priority": 0.1}


async def test_the_answers_of_one_call_come_from_one_text_with_its_hash(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    good = active.current
    assert good is not None
    decisions = await active.evaluate((Rule.SEVERITY, Rule.PRIORITY), {})
    assert decisions.policy_hash == good.sha256
    assert decisions.value(Rule.SEVERITY) == f"severity:{good.source}"
    assert decisions.value(Rule.PRIORITY) == f"priority:{good.source}"


async def test_a_failing_rule_keeps_its_error_and_the_others_answer(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    engine.fail_rules = {"cluster"}
    decisions = await active.evaluate((Rule.CLUSTER, Rule.PRIORITY), {})
    with pytest.raises(PolicyEvaluationError, match=r"data\.signalprocessing\.cluster: conflict"):
        decisions.value(Rule.CLUSTER)
    assert str(decisions.value(Rule.PRIORITY)).startswith("priority:")


async def test_the_rules_of_one_step_are_asked_at_once(active: ActivePolicies, engine: FakeEngine) -> None:
    """An OPA answers them in parallel: one round trip per step, not one per rule."""
    rules = (Rule.SEVERITY, Rule.ENVIRONMENT, Rule.PRIORITY, Rule.CLUSTER)
    engine.asked.clear()
    engine.expected_questions = len(rules)
    engine.gate = asyncio.Event()
    step = asyncio.create_task(active.evaluate(rules, {}))
    # Asked one after another, the first question would hold the others back at the gate.
    await asyncio.wait_for(engine.all_asked.wait(), timeout=10)
    engine.gate.set()
    decisions = await step
    assert sorted(engine.asked) == sorted(rule.value for rule in rules)
    assert [str(decisions.value(rule)).split(":")[0] for rule in rules] == [rule.value for rule in rules]


async def test_an_unreachable_engine_for_one_rule_fails_the_whole_step(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    engine.unreachable_rules = {"priority"}
    engine.fail_rules = {"severity"}
    with pytest.raises(PolicyEngineUnavailable, match="engine down"):
        await active.evaluate((Rule.SEVERITY, Rule.PRIORITY, Rule.CLUSTER), {})


async def test_an_unchanged_text_is_not_loaded_again(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    engine.loads.clear()
    assert (await active.reload(tmp_path)).status is CandidateVerdict.UNCHANGED
    write(tmp_path, "v2")
    outcome = await active.reload(tmp_path)
    assert (outcome.status, outcome.changed, engine.loads) == (CandidateVerdict.ACTIVATED, True, [MODULE_ID])


async def test_a_text_the_engine_could_not_take_is_deferred_not_refused(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    good = active.current
    assert good is not None
    write(tmp_path, "v2")
    engine.fail_loads_containing = "v2"

    outcome = await active.reload(tmp_path)

    assert (outcome.status, outcome.active, outcome.error) == (
        CandidateVerdict.DEFERRED,
        good,
        "PolicyEngineUnavailable: engine down",
    )
    engine.fail_loads_containing = None
    engine.modules[MODULE_ID] = source("v2")  # the engine took it after all; its answer was lost
    decisions = await active.evaluate((Rule.ENVIRONMENT,), {})
    assert decisions.value(Rule.ENVIRONMENT) == f"environment:{good.source}"
    assert (await active.reload(tmp_path)).status is CandidateVerdict.ACTIVATED


async def test_a_smoke_failure_reloads_the_previous_text(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    before = dict(engine.modules)
    write(tmp_path, "BAD")
    outcome = await active.reload(tmp_path)
    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.error == "PolicyEvaluationError: environment: smoke failed"
    assert engine.modules == before


async def test_a_slow_smoke_evaluation_is_refused(engine: FakeEngine, tmp_path: Path) -> None:
    write(tmp_path)
    policies = ActivePolicies(engine, smoke, smoke_budget=0.0)
    with pytest.raises(PolicyLoadError, match=r"over the 0\.0 s budget \(in each of 3 smoke evaluations\)"):
        await policies.start(tmp_path)


async def test_a_smoke_answer_past_its_time_limit_is_asked_again(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    """A starved engine overruns like a slow policy; refusing the text would keep it refused until
    its file changes again."""
    engine.overruns = {"priority": SMOKE_ATTEMPTS - 1}
    write(tmp_path, "v2")
    outcome = await active.reload(tmp_path)
    assert (outcome.status, outcome.error) == (CandidateVerdict.ACTIVATED, None)
    assert engine.overruns == {"priority": 0}


async def test_a_rule_past_its_time_limit_in_every_smoke_evaluation_is_refused(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    before = dict(engine.modules)
    engine.overruns = {"priority": SMOKE_ATTEMPTS}
    write(tmp_path, "v2")
    outcome = await active.reload(tmp_path)
    assert (outcome.status, outcome.error) == (
        CandidateVerdict.REJECTED,
        "PolicyRejected: data.signalprocessing.priority took 0.2 s, over its 0.1 s time limit"
        f" (in each of {SMOKE_ATTEMPTS} smoke evaluations)",
    )
    assert engine.modules == before


async def test_a_failed_rollback_is_repaired_before_the_next_evaluation(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    good = active.current
    assert good is not None
    write(tmp_path, "BAD")
    engine.fail_loads_containing = "v1"  # the engine goes down just as the old text is reloaded
    assert (await active.reload(tmp_path)).status is CandidateVerdict.REJECTED
    assert "BAD" in engine.modules[MODULE_ID]

    with pytest.raises(PolicyEngineUnavailable, match="out of sync"):
        await active.evaluate((Rule.ENVIRONMENT,), {})
    engine.fail_loads_containing = None
    decisions = await active.evaluate((Rule.ENVIRONMENT,), {})
    assert decisions.value(Rule.ENVIRONMENT) == f"environment:{good.source}"
    assert decisions.policy_hash == good.sha256


async def test_an_engine_that_lost_its_module_gets_it_back_before_an_answer_is_believed(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    good = active.current
    assert good is not None
    engine.modules.clear()  # an OPA that restarted knows no policy: every rule is undefined

    decisions = await active.evaluate((Rule.PRIORITY,), {})

    assert decisions.value(Rule.PRIORITY) == f"priority:{good.source}"
    assert list(engine.modules) == [MODULE_ID]


async def test_an_undefined_optional_rule_with_the_module_in_place_is_believed(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    engine.undefined_rules = {"cluster"}
    engine.loads.clear()

    decisions = await active.evaluate((Rule.CLUSTER,), {})

    assert decisions.value(Rule.CLUSTER) is None
    assert engine.loads == []  # no resync: the engine still holds the module


async def test_an_undefined_rule_beside_a_defined_one_costs_no_question_to_the_engine(
    active: ActivePolicies, engine: FakeEngine
) -> None:
    engine.undefined_rules = {"cluster"}

    decisions = await active.evaluate((Rule.SEVERITY, Rule.CLUSTER), {})

    assert decisions.value(Rule.CLUSTER) is None
    assert engine.module_lists == 0  # the defined severity proves the module is loaded


async def test_an_evaluation_in_flight_finishes_with_the_policy_it_started_with(
    active: ActivePolicies, engine: FakeEngine, tmp_path: Path
) -> None:
    old = active.current
    assert old is not None
    engine.gate = asyncio.Event()
    in_flight = asyncio.create_task(active.evaluate((Rule.PRIORITY,), {}))
    await engine.evaluating.wait()

    write(tmp_path, "v2")
    reload = asyncio.create_task(active.reload(tmp_path))
    await wait_until(lambda: bool(active._lock._writers_waiting), what="the reload waiting for the lock")
    assert not reload.done()
    engine.gate.set()
    first = await in_flight
    assert (await reload).status is CandidateVerdict.ACTIVATED
    second = await active.evaluate((Rule.PRIORITY,), {})

    assert (first.value(Rule.PRIORITY), first.policy_hash) == (f"priority:{old.source}", old.sha256)
    new = active.current
    assert new is not None
    assert (second.value(Rule.PRIORITY), second.policy_hash) == (f"priority:{new.source}", new.sha256)
