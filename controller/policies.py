"""The SignalProcessing policy: one Rego module, the rules asked of it, and which text is active.

A policy directory (a ConfigMap mount, or `policies/` in this repo) holds
`policy.rego`: one module, `package signalprocessing` (kubernaut 2026's
unified policy), whose rules the controller queries one at a time (`Rule`).
Anything else there (`*_test.rego`, the signal mode mappings, the kubelet's
`..data` links) is ignored. The text is identified by the SHA-256 of its
bytes, and an SP records the hash of the text that classified it.

The four-file layout of before (`environment.rego`, `priority.rego`,
`business.rego`, `customlabels.rego`, a package each) is gone: a directory
that still has it and no `policy.rego` is refused with a message that names
the migration (README, "Migrating from the four-file layout").

`ActivePolicies` owns the one engine of a controller and the text loaded in
it. `reload(directory)` is the whole hot-reload step: read, hash, skip if
unchanged, load into the engine, smoke-evaluate, then switch the active
text; if any step fails the last good text stays active. Watching files and
debouncing are the caller's job.

Why a rollback: OPA and the embedded engine both refuse a module that does
not parse or type-check *without* replacing the loaded one, but a module
that compiles and then fails the smoke evaluation (wrong shape, conflict,
error) is already in the engine; the previous text is loaded again.
Evaluations and reloads exclude each other (a readers-writer lock), so no
evaluation sees a candidate, and the rules one step asks for are answered by
one text, reported with its hash (`Decisions`).

Boundary: the policy text and its life cycle; the input document and the
meaning of the answers are in `classify`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol

from controller.policy_engine import (
    PolicyEngine,
    PolicyEngineUnavailable,
    PolicyError,
    PolicyRejected,
    PolicyTimeLimitExceeded,
)

logger = logging.getLogger(__name__)

POLICY_FILE_NAME: Final = "policy.rego"
PACKAGE: Final = "signalprocessing"
# The id the module is loaded under; an engine holds exactly this one module.
MODULE_ID: Final = POLICY_FILE_NAME
# The files of the four-file layout, named in the message that refuses a directory still holding them.
LEGACY_FILE_NAMES: Final = ("environment.rego", "priority.rego", "business.rego", "customlabels.rego")
MIGRATION_HINT: Final = (
    "the four-file layout (environment.rego, priority.rego, business.rego, customlabels.rego) was "
    f"replaced by one {POLICY_FILE_NAME} in package {PACKAGE}; merge them as the README's "
    '"Migrating from the four-file layout" shows'
)

# kubernaut 2026's limits: 100 ms for the classification rules, 5 s for custom labels.
CLASSIFICATION_TIME_LIMIT: Final = 0.1
LABELS_TIME_LIMIT: Final = 5.0

#: How many times a candidate's smoke check is asked while it overruns, before the text is refused.
SMOKE_ATTEMPTS: Final = 3


class Rule(enum.StrEnum):
    """A rule of the policy, queried as `data.signalprocessing.<value>`."""

    ENVIRONMENT = "environment"
    SEVERITY = "severity"
    PRIORITY = "priority"
    LABELS = "labels"
    CLUSTER = "cluster"
    BUSINESS = "business"  # this controller's own; kubernaut 2026 has no business rule

    @property
    def time_limit(self) -> float:
        """Seconds one evaluation of this rule may take; an answer that took longer is an error."""
        return LABELS_TIME_LIMIT if self is Rule.LABELS else CLASSIFICATION_TIME_LIMIT


_PACKAGE_LINE: Final = re.compile(r"^\s*package\s+(\S+)", re.MULTILINE)
# Classification must not reach the network; OPA would let these through.
_FORBIDDEN_CALL: Final = re.compile(r"\b(http\.send|net\.lookup_ip_addr)\s*\(")


class PolicyFileError(PolicyError):
    """The policy file is missing or unreadable; the message names the file."""


class PolicyLoadError(PolicyError):
    """The policy could not be activated at start; the message says why."""


class PolicyNotActive(PolicyError):
    """No policy text has been activated yet."""


def hash_text(data: bytes) -> str:
    """SHA-256 of a policy file's bytes, as 64 hex characters."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PolicyText:
    """The policy's text and the SHA-256 of its bytes; immutable, so a reader can keep it."""

    source: str
    sha256: str

    @classmethod
    def from_source(cls, source: str) -> PolicyText:
        return cls(source, hash_text(source.encode()))


def read_policy(directory: str | os.PathLike[str]) -> PolicyText:
    """Read `policy.rego` of `directory`; raises `PolicyFileError` naming the file (and the migration,
    when the directory still has the four-file layout)."""
    path = Path(directory) / POLICY_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        legacy = [name for name in LEGACY_FILE_NAMES if (Path(directory) / name).exists()]
        if legacy:
            raise PolicyFileError(
                f"policy file {path} is missing, and {', '.join(legacy)} are no longer read: {MIGRATION_HINT}"
            ) from None
        raise PolicyFileError(f"policy file {path} is missing") from None
    except OSError as error:
        raise PolicyFileError(f"policy file {path} cannot be read: {error}") from None
    try:
        return PolicyText(data.decode("utf-8"), hash_text(data))
    except UnicodeDecodeError as error:
        raise PolicyFileError(f"policy file {path} is not UTF-8: {error}") from None


def check_policy_text(source: str) -> None:
    """Refuse a text that declares another package (it would answer none of the rules) or calls the
    network, before any engine sees it."""
    declared = _PACKAGE_LINE.search(source)
    if declared is None or declared.group(1) != PACKAGE:
        found = declared.group(1) if declared else "no package"
        hint = f"; {MIGRATION_HINT}" if found.startswith(f"{PACKAGE}.") else ""
        raise PolicyRejected(f"{POLICY_FILE_NAME}: declares {found}, expected package {PACKAGE}{hint}")
    code = re.sub(r"#.*", "", source)
    for match in _FORBIDDEN_CALL.finditer(code):
        line = code.count("\n", 0, match.start()) + 1
        raise PolicyRejected(
            f"{POLICY_FILE_NAME}:{line}: {match.group(1)} is not allowed (no network access)"
        )


@dataclass(frozen=True)
class Decisions:
    """The answers of the rules one step asked for, all from one text, and that text's hash.

    A rule whose evaluation failed (a conflict, a builtin error, over its time
    limit) has its error here instead of a value; `value` raises it, so the
    caller decides which failures matter (an optional rule's may not, and an
    overrun of a required rule is retried: `PolicyTimeLimitExceeded`).
    """

    values: Mapping[Rule, object]  # None when the rule is undefined
    policy_hash: str
    errors: Mapping[Rule, PolicyError] = field(default_factory=dict)

    def value(self, rule: Rule) -> object:
        """The rule's answer (None when undefined); raises the rule's `PolicyError` if it failed."""
        if rule in self.errors:
            raise self.errors[rule]
        return self.values.get(rule)


class PolicyEvaluator(Protocol):
    """What `classify` needs: the answers of some rules, from one text."""

    async def evaluate(self, rules: Sequence[Rule], input: Mapping[str, object]) -> Decisions: ...


async def _evaluate_rules(
    engine: PolicyEngine, rules: Sequence[Rule], input: Mapping[str, object], policy_hash: str
) -> Decisions:
    """Each rule under its time limit; evaluation errors are kept per rule, an unreachable engine raises.

    The rules are asked at once: an OPA answers them in parallel, so a step waits one round trip
    instead of one per rule (the embedded engine runs them back to back on its thread).
    """
    answers = await asyncio.gather(
        *(engine.evaluate(PACKAGE, rule.value, input, time_limit=rule.time_limit) for rule in rules),
        return_exceptions=True,
    )
    values: dict[Rule, object] = {}
    errors: dict[Rule, PolicyError] = {}
    for rule, answer in zip(rules, answers, strict=True):
        overran = isinstance(answer, PolicyTimeLimitExceeded)
        if isinstance(answer, PolicyError) and (overran or not isinstance(answer, PolicyEngineUnavailable)):
            errors[rule] = answer
        elif isinstance(answer, BaseException):
            raise answer
        else:
            values[rule] = answer
    return Decisions(MappingProxyType(values), policy_hash, MappingProxyType(errors))


SmokeCheck = Callable[[PolicyEvaluator], Awaitable[None]]
"""Evaluates a candidate text on representative inputs; raises `PolicyError` if an answer is unusable."""


class CandidateVerdict(enum.StrEnum):
    """What `ActivePolicies.reload` did with the text it read: made it active, found it equal to the
    active text, refused it, or could not have it judged because the engine was unreachable
    (deferred: to be asked again). The active text stays unless activated. `hotreload` reports it
    in finer terms."""

    ACTIVATED = "activated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    DEFERRED = "deferred"


@dataclass(frozen=True)
class ReloadOutcome:
    status: CandidateVerdict
    active: PolicyText | None
    """The text active after this reload (the previous one unless ACTIVATED)."""
    changed: bool = False
    """The text read differed from the active one (and was loaded, or tried)."""
    error: str | None = None


class _ReadWriteLock:
    """Many evaluations at once, or one reload; a waiting reload holds back new evaluations."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            async with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._condition:
            self._writers_waiting += 1
            try:
                await self._condition.wait_for(lambda: not self._writing and not self._readers)
            finally:
                self._writers_waiting -= 1
                self._condition.notify_all()
            self._writing = True
        try:
            yield
        finally:
            async with self._condition:
                self._writing = False
                self._condition.notify_all()


@dataclass(frozen=True)
class _Pinned:
    """Evaluates a candidate text during a reload (the reload already holds the lock)."""

    engine: PolicyEngine
    policy: PolicyText

    async def evaluate(self, rules: Sequence[Rule], input: Mapping[str, object]) -> Decisions:
        return await _evaluate_rules(self.engine, rules, input, self.policy.sha256)


class ActivePolicies:
    """The policy text active in one engine, swapped atomically by `reload`; a `PolicyEvaluator`.

    `smoke_check` (in production `classify.smoke_check`) must pass on a
    candidate before it becomes active, within `smoke_budget` seconds and each rule's time limit:
    a policy that is slow on an ordinary input in each of `SMOKE_ATTEMPTS` tries is refused.
    """

    def __init__(self, engine: PolicyEngine, smoke_check: SmokeCheck, *, smoke_budget: float = 1.0) -> None:
        self._engine = engine
        self._smoke_check = smoke_check
        self._smoke_budget = smoke_budget
        self._current: PolicyText | None = None
        # False when the engine may hold a text other than `_current` (a failed rollback, a
        # cancelled reload, an engine that lost it); the next evaluation loads `_current` first.
        self._in_sync = True
        self._lock = _ReadWriteLock()

    @property
    def current(self) -> PolicyText | None:
        return self._current

    async def start(self, directory: str | os.PathLike[str]) -> PolicyText:
        """The first load, at controller start; with no last good text to keep, a failure raises
        `PolicyLoadError` naming the file or the problem."""
        outcome = await self.reload(directory)
        if outcome.active is None or outcome.status is CandidateVerdict.REJECTED:
            raise PolicyLoadError(f"policy in {directory} not loaded: {outcome.error}")
        return outcome.active

    async def reload(self, directory: str | os.PathLike[str]) -> ReloadOutcome:
        """Read `directory` and activate its text if it changed and passes; never raises for a bad policy."""
        try:
            candidate = await asyncio.to_thread(read_policy, directory)
        except PolicyFileError as error:
            logger.warning("policy reload rejected: %s", error)
            return ReloadOutcome(CandidateVerdict.REJECTED, self._current, error=str(error))
        async with self._lock.writing():
            return await self._activate(candidate)

    async def _activate(self, candidate: PolicyText) -> ReloadOutcome:
        current = self._current
        if current is not None and self._in_sync and current.sha256 == candidate.sha256:
            return ReloadOutcome(CandidateVerdict.UNCHANGED, current)
        loaded = False
        try:
            check_policy_text(candidate.source)
            try:
                await self._engine.load(MODULE_ID, candidate.source)
            except PolicyEngineUnavailable as error:
                # Nothing was said about the text, so it is not refused. The engine may hold it
                # anyway (an answer lost on the way back): evaluations load the active text first.
                self._in_sync = False
                detail = f"{type(error).__name__}: {error}"
                return ReloadOutcome(CandidateVerdict.DEFERRED, current, True, detail)
            loaded = True
            await self._smoke_evaluate(candidate)
        except PolicyError as error:
            if loaded:
                await self._roll_back(current)
            logger.warning("policy reload rejected: %s", error)
            return ReloadOutcome(CandidateVerdict.REJECTED, current, True, f"{type(error).__name__}: {error}")
        except BaseException:
            # Cancelled or a bug mid-way: the engine may hold the candidate. The next evaluation
            # loads the active text first.
            if loaded:
                self._in_sync = False
            raise
        self._current, self._in_sync = candidate, True
        logger.info("policy activated: %s=%s", POLICY_FILE_NAME, candidate.sha256[:16])
        return ReloadOutcome(CandidateVerdict.ACTIVATED, candidate, True)

    async def _smoke_evaluate(self, candidate: PolicyText) -> None:
        """The smoke check, asked again while it overruns (a rule's time limit, or the budget).

        A starved engine (a busy node, a throttled OPA sidecar) overruns like a slow policy, and a
        refused text stays refused until its file changes again: a load spike must not refuse a
        good text. A policy that overruns in every attempt is refused.
        """
        overrun = ""
        for _ in range(SMOKE_ATTEMPTS):
            started = time.monotonic()
            try:
                await self._smoke_check(_Pinned(self._engine, candidate))
            except PolicyTimeLimitExceeded as error:
                overrun = str(error)
                continue
            elapsed = time.monotonic() - started
            if elapsed <= self._smoke_budget:
                return
            overrun = f"smoke evaluation took {elapsed:.2f} s, over the {self._smoke_budget} s budget"
        raise PolicyRejected(f"{overrun} (in each of {SMOKE_ATTEMPTS} smoke evaluations)")

    async def _roll_back(self, previous: PolicyText | None) -> None:
        if previous is None:
            # Nothing was active, so nothing can be wrongly active either; the next reload loads it.
            self._in_sync = False
            return
        try:
            await self._engine.load(MODULE_ID, previous.source)
        except PolicyError as error:
            self._in_sync = False
            logger.error("policy rollback failed, evaluations wait for a resync: %s", error)

    async def restore(self) -> None:
        """Load the active text into the engine again, for an engine that lost it (OPA restarted).

        If that fails, evaluations keep trying it first (and fail as unavailable until it works)."""
        self._in_sync = False
        await self._resync()

    async def _resync(self) -> None:
        async with self._lock.writing():
            if self._in_sync:
                return
            current = self._current
            if current is None:
                raise PolicyNotActive("no policy is active yet")
            await self._engine.load(MODULE_ID, current.source)
            self._in_sync = True
            logger.info("policy engine resynchronised with the active policy")

    async def evaluate(self, rules: Sequence[Rule], input: Mapping[str, object]) -> Decisions:
        """Evaluate `rules` in the active text; raises `PolicyNotActive` before the first activation.

        An engine that lost its module (an OPA that restarted) answers "undefined" for every
        rule, so when every rule asked is undefined the engine is asked whether it still holds
        the module, and the rules are evaluated again after loading it if not. One defined answer
        proves the module is there (it is one text, loaded whole): an undefined optional rule
        beside a required one costs no question.
        """
        decisions = await self._evaluate_in_sync(rules, input)
        all_undefined = all(value is None for value in decisions.values.values())
        if all_undefined and await self._engine.lost_modules([MODULE_ID]):
            self._in_sync = False
            decisions = await self._evaluate_in_sync(rules, input)
        return decisions

    async def _evaluate_in_sync(self, rules: Sequence[Rule], input: Mapping[str, object]) -> Decisions:
        if not self._in_sync:
            try:
                await self._resync()
            except (PolicyRejected, PolicyEngineUnavailable) as error:
                raise PolicyEngineUnavailable(
                    f"policy engine out of sync with the active policy: {error}"
                ) from error
        async with self._lock.reading():
            current = self._current
            if current is None:
                raise PolicyNotActive("no policy is active yet")
            return await _evaluate_rules(self._engine, rules, input, current.sha256)
