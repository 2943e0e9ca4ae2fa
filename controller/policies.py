"""The four SignalProcessing policies: which files, packages and rules, and which texts are active.

A policy directory (a ConfigMap mount, or `policies/` in this repo) holds
`environment.rego`, `priority.rego`, `business.rego` and `customlabels.rego`;
anything else there (`*_test.rego`, the kubelet's `..data` links) is ignored.
Every text is identified by the SHA-256 of its bytes, and each classification
records the hash of the text that decided it.

`ActivePolicies` owns the one engine of a controller and the set of texts
loaded in it. `reload(directory)` is the whole hot-reload step: read, hash,
skip if unchanged, load into the engine, smoke-evaluate, then switch the
active set; if any step fails the last good set stays active. Watching files
and debouncing are the caller's job.

Why a rollback: OPA and the embedded engine both refuse a module that does
not parse or type-check *without* replacing the loaded one, but a module
that compiles and then fails the smoke evaluation (wrong shape, conflict,
error) is already in the engine. Its package is fixed by its text, so it
cannot be tried under another name first; instead the previous texts of the
modules just loaded are loaded again. Evaluations and reloads exclude each
other (a readers-writer lock), so no evaluation sees a candidate, and each
result is paired with the hash of the text that produced it.

Boundary: policy texts and their life cycle; the inputs and the meaning of
results are in `classify`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol

from controller.policy_engine import PolicyEngine, PolicyEngineUnavailable, PolicyError, PolicyRejected

logger = logging.getLogger(__name__)


class Policy(enum.StrEnum):
    """One of the four policies; its value is the base name of its file."""

    ENVIRONMENT = "environment"
    PRIORITY = "priority"
    BUSINESS = "business"
    CUSTOMLABELS = "customlabels"

    @property
    def file_name(self) -> str:
        return f"{self.value}.rego"

    @property
    def module_id(self) -> str:
        """The id the module is loaded under: one per policy, so an engine holds exactly four."""
        return self.file_name

    @property
    def package(self) -> str:
        return _PACKAGES[self]

    @property
    def rule(self) -> str:
        return "labels" if self is Policy.CUSTOMLABELS else "result"


_PACKAGES: Final = {
    Policy.ENVIRONMENT: "signalprocessing.environment",
    Policy.PRIORITY: "signalprocessing.priority",
    Policy.BUSINESS: "signalprocessing.business",
    Policy.CUSTOMLABELS: "signalprocessing.labels",
}

_PACKAGE_LINE: Final = re.compile(r"^\s*package\s+(\S+)", re.MULTILINE)
# Classification must not reach the network; OPA would let these through.
_FORBIDDEN_CALL: Final = re.compile(r"\b(http\.send|net\.lookup_ip_addr)\s*\(")


class PolicyFileError(PolicyError):
    """A policy file is missing or unreadable; the message names the file."""


class PolicyLoadError(PolicyError):
    """The policies could not be activated at start; the message says which and why."""


class PolicyNotActive(PolicyError):
    """No policy set has been activated yet."""


def hash_text(data: bytes) -> str:
    """SHA-256 of a policy file's bytes, as 64 hex characters."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PolicyText:
    source: str
    sha256: str


@dataclass(frozen=True)
class PolicySet:
    """One text per policy; immutable, so a reader can keep it while a reload swaps in another."""

    texts: Mapping[Policy, PolicyText]

    def __post_init__(self) -> None:
        missing = [policy.file_name for policy in Policy if policy not in self.texts]
        if missing:
            raise ValueError(f"a policy set needs all four policies, missing {missing}")
        object.__setattr__(self, "texts", MappingProxyType(dict(self.texts)))

    def __getitem__(self, policy: Policy) -> PolicyText:
        return self.texts[policy]

    @property
    def hashes(self) -> Mapping[Policy, str]:
        return MappingProxyType({policy: text.sha256 for policy, text in self.texts.items()})

    @classmethod
    def from_sources(cls, sources: Mapping[Policy, str]) -> PolicySet:
        return cls({policy: PolicyText(text, hash_text(text.encode())) for policy, text in sources.items()})


def read_policy_set(directory: str | os.PathLike[str]) -> PolicySet:
    """Read the four policy files of `directory`; raises `PolicyFileError` naming a missing file."""
    texts = {}
    for policy in Policy:
        path = Path(directory) / policy.file_name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PolicyFileError(f"policy file {path} is missing") from None
        except OSError as error:
            raise PolicyFileError(f"policy file {path} cannot be read: {error}") from None
        try:
            texts[policy] = PolicyText(data.decode("utf-8"), hash_text(data))
        except UnicodeDecodeError as error:
            raise PolicyFileError(f"policy file {path} is not UTF-8: {error}") from None
    return PolicySet(texts)


def check_policy_text(policy: Policy, source: str) -> None:
    """Refuse a text that declares another package (OPA would merge it into that package's rules) or
    calls the network, before any engine sees it."""
    declared = _PACKAGE_LINE.search(source)
    if declared is None or declared.group(1) != policy.package:
        found = declared.group(1) if declared else "no package"
        raise PolicyRejected(f"{policy.file_name}: declares {found}, expected package {policy.package}")
    code = re.sub(r"#.*", "", source)
    for match in _FORBIDDEN_CALL.finditer(code):
        line = code.count("\n", 0, match.start()) + 1
        raise PolicyRejected(
            f"{policy.file_name}:{line}: {match.group(1)} is not allowed (no network access)"
        )


@dataclass(frozen=True)
class Decision:
    """A policy's value (None when undefined) and the hash of the text that produced it."""

    value: object
    policy_hash: str


class PolicyEvaluator(Protocol):
    """What `classify` needs: evaluate one of the four policies."""

    async def evaluate(self, policy: Policy, input: Mapping[str, object]) -> Decision: ...


SmokeCheck = Callable[[PolicyEvaluator], Awaitable[None]]
"""Evaluates a candidate set on representative inputs; raises `PolicyError` if an answer is unusable."""


class CandidateVerdict(enum.StrEnum):
    """What `ActivePolicies.reload` did with the set it read: made it active, found it equal to the
    active set, or refused it (the active set stays). `hotreload` reports it in finer terms."""

    ACTIVATED = "activated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ReloadOutcome:
    status: CandidateVerdict
    active: PolicySet | None
    """The set active after this reload (the previous one unless ACTIVATED)."""
    changed: tuple[Policy, ...] = ()
    """The policies whose text differed from the active set (loaded, or tried)."""
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
    """Evaluates a candidate set during a reload (the reload already holds the lock)."""

    engine: PolicyEngine
    policies: PolicySet

    async def evaluate(self, policy: Policy, input: Mapping[str, object]) -> Decision:
        value = await self.engine.evaluate(policy.package, policy.rule, input)
        return Decision(value, self.policies[policy].sha256)


class ActivePolicies:
    """The policy set active in one engine, swapped atomically by `reload`; a `PolicyEvaluator`.

    `smoke_check` (in production `classify.smoke_check`) must pass on a
    candidate before it becomes active, and within `smoke_budget` seconds:
    a policy that is already slow on an ordinary input is refused.
    """

    def __init__(self, engine: PolicyEngine, smoke_check: SmokeCheck, *, smoke_budget: float = 1.0) -> None:
        self._engine = engine
        self._smoke_check = smoke_check
        self._smoke_budget = smoke_budget
        self._current: PolicySet | None = None
        # False when the engine may hold texts other than `_current` (a failed rollback, a
        # cancelled reload); the next evaluation reloads `_current` first.
        self._in_sync = True
        self._lock = _ReadWriteLock()

    @property
    def current(self) -> PolicySet | None:
        return self._current

    async def start(self, directory: str | os.PathLike[str]) -> PolicySet:
        """The first load, at controller start; with no last good set to keep, a failure raises
        `PolicyLoadError` naming the file or the problem."""
        outcome = await self.reload(directory)
        if outcome.active is None or outcome.status is CandidateVerdict.REJECTED:
            raise PolicyLoadError(f"policies in {directory} not loaded: {outcome.error}")
        return outcome.active

    async def reload(self, directory: str | os.PathLike[str]) -> ReloadOutcome:
        """Read `directory` and activate its texts if they changed and pass; never raises for a bad policy."""
        try:
            candidate = await asyncio.to_thread(read_policy_set, directory)
        except PolicyFileError as error:
            logger.warning("policy reload rejected: %s", error)
            return ReloadOutcome(CandidateVerdict.REJECTED, self._current, error=str(error))
        async with self._lock.writing():
            return await self._activate(candidate)

    async def _activate(self, candidate: PolicySet) -> ReloadOutcome:
        current = self._current
        changed = tuple(
            policy
            for policy in Policy
            if current is None or not self._in_sync or current[policy].sha256 != candidate[policy].sha256
        )
        if not changed:
            return ReloadOutcome(CandidateVerdict.UNCHANGED, current)
        loaded: list[Policy] = []
        try:
            for policy in changed:
                check_policy_text(policy, candidate[policy].source)
            for policy in changed:
                await self._engine.load(policy.module_id, candidate[policy].source)
                loaded.append(policy)
            started = time.monotonic()
            await self._smoke_check(_Pinned(self._engine, candidate))
            elapsed = time.monotonic() - started
            if elapsed > self._smoke_budget:
                raise PolicyRejected(
                    f"smoke evaluation took {elapsed:.2f} s, over the {self._smoke_budget} s budget"
                )
        except PolicyError as error:
            await self._roll_back(current, loaded)
            logger.warning("policy reload rejected (%s): %s", ", ".join(changed), error)
            return ReloadOutcome(
                CandidateVerdict.REJECTED, current, changed, f"{type(error).__name__}: {error}"
            )
        except BaseException:
            # Cancelled or a bug mid-way: the engine may hold part of the candidate. The next
            # evaluation reloads the active set first.
            if loaded:
                self._in_sync = False
            raise
        self._current, self._in_sync = candidate, True
        logger.info(
            "policies activated: %s",
            ", ".join(f"{policy}={candidate[policy].sha256[:16]}" for policy in changed),
        )
        return ReloadOutcome(CandidateVerdict.ACTIVATED, candidate, changed)

    async def _roll_back(self, previous: PolicySet | None, loaded: list[Policy]) -> None:
        if not loaded:
            return
        if previous is None:
            # Nothing was active, so nothing can be wrongly active either; the next reload loads all.
            self._in_sync = False
            return
        try:
            for policy in loaded:
                await self._engine.load(policy.module_id, previous[policy].source)
        except PolicyError as error:
            self._in_sync = False
            logger.error("policy rollback failed, evaluations wait for a resync: %s", error)

    async def restore(self) -> None:
        """Load the active set into the engine again, for an engine that lost its modules (OPA restarted).

        If that fails, evaluations keep trying it first (and fail as unavailable until it works)."""
        self._in_sync = False
        await self._resync()

    async def _resync(self) -> None:
        async with self._lock.writing():
            if self._in_sync:
                return
            current = self._current
            if current is None:
                raise PolicyNotActive("no policy set is active yet")
            for policy in Policy:
                await self._engine.load(policy.module_id, current[policy].source)
            self._in_sync = True
            logger.info("policy engine resynchronised with the active set")

    async def evaluate(self, policy: Policy, input: Mapping[str, object]) -> Decision:
        """Evaluate `policy` in the active set; raises `PolicyNotActive` before the first activation.

        An engine that lost its modules (an OPA that restarted) answers "undefined" for every
        rule, so an undefined answer is only believed after the active set was loaded again.
        """
        decision = await self._evaluate_in_sync(policy, input)
        if decision.value is None:
            self._in_sync = False
            decision = await self._evaluate_in_sync(policy, input)
        return decision

    async def _evaluate_in_sync(self, policy: Policy, input: Mapping[str, object]) -> Decision:
        if not self._in_sync:
            try:
                await self._resync()
            except (PolicyRejected, PolicyEngineUnavailable) as error:
                raise PolicyEngineUnavailable(
                    f"policy engine out of sync with the active set: {error}"
                ) from error
        async with self._lock.reading():
            current = self._current
            if current is None:
                raise PolicyNotActive("no policy set is active yet")
            value = await self._engine.evaluate(policy.package, policy.rule, input)
            return Decision(value, current[policy].sha256)
