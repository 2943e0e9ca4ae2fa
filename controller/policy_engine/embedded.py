"""`EmbeddedEngine`: the policy engine that runs regorus in this process, on one thread of its own.

A regorus engine panics when touched from a thread other than its creator's,
so every regorus call here runs on the engine's single worker thread and
comes back to the event loop as a value, errors and Rust panics included.
regorus checks much less at load than OPA, so `load` runs the checks of
`rego_check` and refuses what OPA refuses; evaluation results are shaped as
OPA's JSON (sets as sorted lists, object keys as strings).

Boundary: regorus' engine, its thread and its values; what a module may
contain is `rego_check`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import regorus

from controller.policy_engine.protocol import (
    EVALUATION_TIME_LIMIT,
    PolicyEngineUnavailable,
    PolicyError,
    PolicyEvaluationError,
    PolicyRejected,
    PolicyTimeLimitExceeded,
    encode_input,
    rule_segments,
)
from controller.policy_engine.rego_check import check_modules, describe_regorus_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Failure:
    """A job's error, carried back as a value rather than raised across threads."""

    kind: type[PolicyError]
    message: str


class _ThreadState(threading.local):
    """The regorus engine and its module texts; each engine thread sees only its own."""

    engine: regorus.Engine | None = None
    rules: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}


_state = _ThreadState()

R = TypeVar("R")


def _guarded(kind: type[PolicyError], job: Callable[..., R]) -> Callable[..., R | _Failure]:
    """Runs `job` on the engine thread and returns any error, Rust panics included, as a `_Failure`.

    An exception that crossed to the event loop would carry frames that still
    reference a regorus engine, and regorus raises when an engine is dropped
    on a thread other than its own, so the frames are cleared here.
    """

    def run(*args: object) -> R | _Failure:
        try:
            return job(*args)
        except BaseException as error:  # pyo3's PanicException derives from BaseException only
            traceback.clear_frames(error.__traceback__)
            return _Failure(kind, describe_regorus_error(error))

    return run


def _normalise(value: object) -> object:
    """regorus' Python values shaped as OPA's JSON: sets as sorted lists, object keys as strings."""
    if isinstance(value, (set, frozenset)):
        return sorted((_normalise(item) for item in value), key=_rego_order)
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else json.dumps(key, separators=(",", ":")): _normalise(item)
            for key, item in value.items()
        }
    return value


def _rego_order(value: object) -> tuple[int, float | str]:
    """Rego's order between types (null < boolean < number < string < composite); composites roughly."""
    if value is None:
        return 0, 0.0
    if isinstance(value, bool):
        return 1, float(value)
    if isinstance(value, (int, float)):
        return 2, float(value)
    if isinstance(value, str):
        return 3, value
    return 4, json.dumps(value, sort_keys=True)


def _load(module_id: str, source: str) -> _Failure | None:
    modules = {**_state.modules, module_id: source}
    candidate = regorus.Engine()
    candidate.set_gather_prints(True)
    try:
        for name, text in modules.items():
            candidate.add_policy(name, text)
    except RuntimeError as error:
        return _Failure(PolicyRejected, describe_regorus_error(error))
    rules, problems = check_modules(candidate, modules)
    if problems:
        return _Failure(PolicyRejected, "\n".join(dict.fromkeys(problems)))
    _state.engine, _state.modules, _state.rules = candidate, modules, rules
    return None


def _eval_rule(engine: regorus.Engine, rule_path: str) -> object:
    """The rule's value. regorus' `eval_rule` refuses a rule whose heads carry a key (`labels["team"]
    := ...`, a partial object, which OPA evaluates as the object of all keys defined); a query of the
    same path answers it."""
    try:
        return engine.eval_rule(rule_path)
    except RuntimeError as error:
        if "not a valid rule path" not in str(error):
            raise
    results = engine.eval_query(rule_path)["result"]
    return results[0]["expressions"][0]["value"] if results else None


def _evaluate(rule_path: str, input_json: str, time_limit: float) -> object:
    engine = _state.engine
    if engine is None or rule_path not in _state.rules:
        # OPA answers an unknown package or rule with "undefined", not with an error.
        return None
    started = time.monotonic()
    try:
        engine.set_input_json(input_json)
        value = _eval_rule(engine, rule_path)
    finally:
        for line in engine.take_prints():
            logger.debug("print in %s: %s", rule_path, line)
    elapsed = time.monotonic() - started
    if elapsed > time_limit:
        return _Failure(
            PolicyTimeLimitExceeded, f"{rule_path} took {elapsed:.3f} s, over its {time_limit} s time limit"
        )
    return _normalise(value)


def _release() -> None:
    _state.engine = None
    _state.modules = {}
    _state.rules = frozenset()


class EmbeddedEngine:
    """regorus in this process; every regorus call runs on the engine's one thread.

    A regorus engine is not thread-safe and panics when used from a thread
    other than its creator's, so each `EmbeddedEngine` owns a single-worker
    executor whose thread creates, uses and drops the regorus engine; callers
    on any event loop or thread just await results.

    Time limits: regorus holds the GIL for a whole evaluation and its Python
    API (0.13) has no cancellation or instruction limit, so while it runs
    nothing else in the process runs (the event loop included) and no timer
    can stop it. What this engine does instead: each evaluation is timed on
    the engine thread, and a result that took longer than the call's
    `time_limit` is discarded with a `PolicyEvaluationError`, so a slow policy
    fails loudly rather than slowing every SP silently. The thread is free
    again as soon as regorus returns, so a timed-out call never holds up the
    next one for longer than it ran. The smoke evaluation at load
    (`policies`) refuses a policy that is slow on an ordinary input. A policy
    that runs for minutes on some input still stalls the controller for that
    long; run untrusted policies on the OPA engine, which stops waiting at
    the limit.

    `load` parses all modules into a fresh regorus engine, adds the checks
    regorus skips but OPA makes at upload (unsafe variables, unknown
    functions, arity; via regorus' compiler and an AST walk), and only then
    swaps the fresh engine in, so a rejected module leaves the previous set
    active. It refuses a little more than OPA (builtins regorus lacks); it
    does not find OPA's other type errors (`lower(1)`), which surface at
    evaluation instead.
    """

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="regorus")
        self._closed = False

    async def _run(self, job: Callable[..., object], *args: object) -> object:
        if self._closed:
            raise PolicyEngineUnavailable("the embedded policy engine is closed")
        result = await asyncio.get_running_loop().run_in_executor(self._executor, job, *args)
        if isinstance(result, _Failure):
            raise result.kind(result.message)
        return result

    async def load(self, module_id: str, source: str) -> None:
        await self._run(_guarded(PolicyRejected, _load), module_id, source)

    async def evaluate(
        self,
        package_path: str,
        rule: str,
        input: Mapping[str, object],
        *,
        time_limit: float = EVALUATION_TIME_LIMIT,
    ) -> object:
        rule_path = "data." + ".".join(rule_segments(package_path, rule))
        return await self._run(
            _guarded(PolicyEvaluationError, _evaluate), rule_path, encode_input(input), time_limit
        )

    async def lost_modules(self, module_ids: Iterable[str]) -> list[str]:
        """None, ever: the regorus engine lives and dies with this process, so it keeps every module
        it loaded until `close`. A no-op, without a trip to the engine thread."""
        return []

    async def close(self) -> None:
        if self._closed:
            return
        # Jobs already queued run first; the regorus engine is dropped on its own thread.
        await self._run(_release)
        self._closed = True
        self._executor.shutdown(wait=True)
