"""Policy hot reload: watch the policy directory, debounce, reload, and say what happened.

Policies are mounted from ConfigMaps, where the kubelet never writes a
visible file: it writes a new timestamped directory `..2026_11_24_...`,
points a `..data_tmp` link at it and renames that over `..data`; the visible
`policy.rego` is a link `..data/policy.rego`. A watch on a file
would keep following the old inode, so the *directory* is watched (watchdog,
on its own thread) and any event that touches `policy.rego` or a `..` entry
counts. In-place writes and atomic renames (editors, `kubectl cp`,
tests) are caught the same way.

Events are handed to the asyncio loop with `call_soon_threadsafe` and
debounced: the reload runs `DEBOUNCE_SECONDS` after the *last* event of a
burst, never two at once, and an event during a reload causes one more
reload after it. The kubelet's rename of `..data_tmp` over `..data` is the
exception: it completes a generation atomically, so the reload runs at once
(a ConfigMap update is picked up in tens of milliseconds, not 200). The reload
itself is `ActivePolicies.reload`: read `policy.rego`, hash, skip when
unchanged, load, smoke-evaluate, swap. A half-written file fails to parse and
is rejected; the write's next event reloads again.

What each reload leaves behind:
- activated: `signalprocessing_policy_hash_info{policy="policy.rego",sha256}`
  shows the new hash (the wait handle for tests and operators), counter
  result=activated;
- unchanged: counter result=unchanged, nothing else;
- rejected (bad text): the last good set stays active, counter result=rejected,
  an error log with the engine's `file:line` message, a Warning Event
  `PolicyReloadRejected`, and the probe detail names the error;
- missing (`policy.rego` deleted, or a directory with only the four-file
  layout): the same, with result=missing and Event reason `PolicyFileMissing`;
- deferred (the engine could not be reached to load the text: an OPA sidecar
  restarting): the last good set stays active, counter result=deferred, a
  warning log, and the reload is asked again every `ENGINE_CHECK_SECONDS` until
  the engine answers. No Event: there is nothing to fix in the text, and a
  ConfigMap edit made while OPA restarts is not lost.

Where the Events go: an Event needs an involvedObject, and a policy is no
Kubernetes object of ours, so they are attached to the controller's own Pod,
named by the `POD_NAME` and `POD_NAMESPACE` environment variables (set from
the downward API). Without them there is no Pod to attach to and the
rejection is logged and counted only.

Engine restarts: an OPA sidecar that restarts comes back empty, and every
rule would be "undefined". Every `ENGINE_CHECK_SECONDS` the watcher asks the
engine whether it lost the module (`PolicyEngine.lost_modules`) and, if so,
loads the active text into it again (counter result=restored). The
embedded engine lives in this process, cannot lose its modules and always
answers none.

The signal mode mappings (`controller.signalmode`) and the cluster registry
(`controller.clusters`) are reloaded the same way, with the policies (`CompanionFile`): each
lives beside them by default (one ConfigMap generation for all), or in a directory of its own
that is watched too. A rejected file leaves its last good version, with an error log, a Warning
Event (`SignalModeMappingsRejected`, `ClusterRegistryRejected`) and the error in the probe detail,
which also shows each file's active `sha256`.

Boundary: files, timing and reporting; what a valid policy is and how it is
swapped in is `policies.ActivePolicies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from controller import kube
from controller.clusters import FileClusterRegistry
from controller.events import EventRecorder, InvolvedObject
from controller.metrics import ControllerMetrics
from controller.policies import (
    MODULE_ID,
    POLICY_FILE_NAME,
    ActivePolicies,
    CandidateVerdict,
    ReloadOutcome,
)
from controller.policy_engine import PolicyEngine, PolicyEngineUnavailable, PolicyError
from controller.signalmode import ActiveSignalModes
from controller.watchedfile import ReloadVerdict, WatchedFile

logger = logging.getLogger(__name__)

# The kubelet's swap and an editor's save each produce a handful of events within a few
# milliseconds; 200 ms after the last one the burst is over in practice.
DEBOUNCE_SECONDS: Final = 0.2
# How often the engine is asked whether it still holds the modules; a restart is repaired within this.
ENGINE_CHECK_SECONDS: Final = 2.0
# The kubelet's `..data` link and its timestamped generation directories.
CONFIGMAP_DATA_LINK: Final = "..data"
POLICY_FILE_NAMES: Final = frozenset({POLICY_FILE_NAME})
# Events that may change what a read sees. Opening and closing without writing are left out:
# the reload itself reads the files and would otherwise trigger the next reload.
_CHANGE_EVENT_TYPES: Final = frozenset({"created", "modified", "deleted", "moved", "closed"})


class ReportedReloadResult:
    """What the watcher reports for one reload (or restore): the `result` label values of
    `signalprocessing_policy_reloads_total` and the probe's `lastReload.result`.

    Finer than `CandidateVerdict`, the verdict of `ActivePolicies.reload`: a
    rejection for a deleted file is `missing`, and `restored` counts loading
    the active set into an engine that lost it.
    """

    ACTIVATED: Final = "activated"
    UNCHANGED: Final = "unchanged"
    REJECTED: Final = "rejected"
    MISSING: Final = "missing"
    DEFERRED: Final = "deferred"
    RESTORED: Final = "restored"


# --------------------------------------------------------------------------------------------------
# Pure decisions: which events count, where to read one consistent generation, which Pod


def is_policy_change(path: str | bytes, watched: frozenset[str] = POLICY_FILE_NAMES) -> bool:
    """True for an event on a watched file (by default the policies) or on a kubelet entry (`..data`,
    `..data_tmp`, `..2026_...`)."""
    name = os.path.basename(os.fsdecode(path).rstrip("/"))
    return name in watched or (name.startswith("..") and name not in ("..", "."))


def is_generation_swap(event_type: str, dest_path: str | bytes) -> bool:
    """True for the kubelet's last step of a ConfigMap update: `..data_tmp` renamed over `..data`, after
    which the new generation is complete and visible at once."""
    return event_type == "moved" and os.path.basename(os.fsdecode(dest_path)) == CONFIGMAP_DATA_LINK


def policy_source_dir(directory: str | os.PathLike[str]) -> Path:
    """Where to read the policy from, so that one reload sees one ConfigMap generation (the policy and
    the mappings file beside it).

    In the kubelet layout (`..data` is a link and the policy file is a link
    through it) this is the generation directory `..data` points to now;
    reading it cannot mix files of two generations. Anything else is read
    as it is.
    """
    root = Path(directory)
    data = root / CONFIGMAP_DATA_LINK
    if not data.is_symlink():
        return root
    for name in POLICY_FILE_NAMES:
        link = root / name
        if not link.is_symlink() or Path(os.readlink(link)).parts[:1] != (CONFIGMAP_DATA_LINK,):
            return root
    return root / os.readlink(data)


def missing_policy_files(directory: str | os.PathLike[str]) -> list[str]:
    """The policy file names that do not exist (a dangling link counts as missing)."""
    return sorted(name for name in POLICY_FILE_NAMES if not (Path(directory) / name).exists())


@dataclass(frozen=True)
class ControllerPod:
    """The Pod this controller runs in: where reload Events are attached."""

    namespace: str
    name: str


def controller_pod_from_env(environ: Mapping[str, str]) -> ControllerPod | None:
    """`POD_NAMESPACE`/`POD_NAME` (downward API); None unless both are set."""
    namespace, name = environ.get("POD_NAMESPACE", "").strip(), environ.get("POD_NAME", "").strip()
    return ControllerPod(namespace, name) if namespace and name else None


# --------------------------------------------------------------------------------------------------
# Debouncing


class Cancellable(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Cancellable]


class Debouncer:
    """Runs `action` once, `delay` seconds after the last `poke`; never two runs at once.

    A poke while the action runs is not lost: when its delay is over, one
    more run follows the current one. `call_later` is the loop's unless
    given (tests pass a fake clock). Call `poke` on the loop's thread.
    """

    def __init__(
        self, delay: float, action: Callable[[], Awaitable[object]], *, call_later: CallLater | None = None
    ) -> None:
        self._delay = delay
        self._action = action
        self._call_later = call_later
        self._timer: Cancellable | None = None
        self._running: asyncio.Task[None] | None = None
        self._again = False

    @property
    def pending(self) -> bool:
        """A run is scheduled, running, or owed."""
        return self._timer is not None or self._again or self.running

    @property
    def running(self) -> bool:
        return self._running is not None and not self._running.done()

    def poke(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._timer = call_later(self._delay, self._fire)

    def run_now(self) -> None:
        """Runs the action without waiting out the delay (after the current run, if one is running)."""
        if self._timer is not None:
            self._timer.cancel()
        self._fire()

    def _fire(self) -> None:
        self._timer = None
        if self.running:
            self._again = True
            return
        self._running = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._action()
            except Exception:
                logger.exception("debounced action failed")
            if not self._again:
                return

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._again = False
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running


# --------------------------------------------------------------------------------------------------
# Reporting a rejection


class PodEventNotifier:
    """Posts Warning Events about policy reloads on the controller's own Pod."""

    def __init__(self, api: kube.ApiClient, events: EventRecorder, pod: ControllerPod) -> None:
        self._api = api
        self._events = events
        self._pod = pod
        self._uid: str | None = None

    async def warn(self, reason: str, message: str) -> None:
        if self._uid is None:
            try:
                found = await self._api.get(kube.PODS, self._pod.name, namespace=self._pod.namespace)
            except kube.ApiError as error:
                logger.warning("cannot read Pod %s/%s for Event %s: %s", *self._pod_key(), reason, error)
                return
            if found is None:
                logger.warning("Pod %s/%s not found; Event %s not posted", *self._pod_key(), reason)
                return
            self._uid = str(found["metadata"]["uid"])
        involved = InvolvedObject("v1", "Pod", self._pod.name, self._pod.namespace, self._uid)
        self._events.record(involved, kind="Warning", reason=reason, message=message, now=datetime.now(UTC))

    def _pod_key(self) -> tuple[str, str]:
        return self._pod.namespace, self._pod.name


@dataclass(frozen=True)
class ReloadReport:
    """The last reload attempt, for the probe detail."""

    result: str
    at: datetime
    changed: tuple[str, ...] = ()
    error: str | None = None

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "result": self.result,
            "at": self.at.isoformat(),
            "changed": list(self.changed),
        }
        if self.error is not None:
            raw["error"] = self.error
        return raw


# --------------------------------------------------------------------------------------------------
# Files reloaded with the policies


@dataclass
class CompanionFile:
    """A file reloaded with the policies: what logs call it, its key in the probe detail, the reason of
    the Warning Event for a rejection, and a count of what it holds for the probe."""

    file: WatchedFile[Any]
    description: str
    probe_key: str
    rejected_reason: str
    count: Callable[[Any], dict[str, int]]
    last_rejection: str = ""

    def probe_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"sha256": self.file.current.sha256, **self.count(self.file.current.content)}
        if self.last_rejection:
            detail["lastRejection"] = self.last_rejection
        return detail


def _companions(
    signal_modes: ActiveSignalModes | None, cluster_registry: FileClusterRegistry | None
) -> list[CompanionFile]:
    companions = []
    if signal_modes is not None:
        companions.append(
            CompanionFile(
                signal_modes,
                "signal mode mappings",
                "signalModes",
                "SignalModeMappingsRejected",
                lambda mappings: {"proactive": len(mappings.proactive)},
            )
        )
    if cluster_registry is not None:
        companions.append(
            CompanionFile(
                cluster_registry,
                "cluster registry",
                "clusterRegistry",
                "ClusterRegistryRejected",
                lambda registry: {"clusters": len(registry.clusters)},
            )
        )
    return companions


# --------------------------------------------------------------------------------------------------
# The watcher


class _DirectoryEvents(FileSystemEventHandler):
    """Runs on watchdog's observer thread: filters, then hands over to the loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, debouncer: Debouncer, watched: frozenset[str]
    ) -> None:
        super().__init__()
        self._loop = loop
        self._debouncer = debouncer
        self._watched = watched

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGE_EVENT_TYPES:
            return
        destination = getattr(event, "dest_path", "")
        paths = [event.src_path, destination]
        if not any(is_policy_change(path, self._watched) for path in paths if path):
            return
        # A swap of `..data` is atomic and completes a generation: nothing is half-written, so it is
        # read at once. Other changes (an editor's save, a copy) wait out the debounce.
        if is_generation_swap(event.event_type, destination):
            notify = self._debouncer.run_now
        else:
            notify = self._debouncer.poke
        with contextlib.suppress(RuntimeError):  # the loop is closing; nobody is left to reload
            self._loop.call_soon_threadsafe(notify)


class PolicyWatcher:
    """Keeps the active policies in step with a directory, and the engine in step with them."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        policies: ActivePolicies,
        metrics: ControllerMetrics,
        *,
        engine: PolicyEngine | None = None,
        notifier: PodEventNotifier | None = None,
        signal_modes: ActiveSignalModes | None = None,
        cluster_registry: FileClusterRegistry | None = None,
        debounce: float = DEBOUNCE_SECONDS,
        engine_check_interval: float = ENGINE_CHECK_SECONDS,
    ) -> None:
        self._directory = Path(directory)
        self._policies = policies
        self._metrics = metrics
        self._engine = engine
        self._notifier = notifier
        self._companions = _companions(signal_modes, cluster_registry)
        self._engine_check_interval = engine_check_interval
        self._debouncer = Debouncer(debounce, self.reload)
        self._observer: Any = None
        self._engine_check: asyncio.Task[None] | None = None
        self._deferred_retry: asyncio.TimerHandle | None = None
        self._last: ReloadReport | None = None
        self._last_rejection: ReloadReport | None = None

    async def start(self) -> None:
        """Watch the directory (and the engine's modules); reload once too, for changes since start-up."""
        loop = asyncio.get_running_loop()
        observer = Observer()
        for directory, names in self._watched_directories().items():
            events = _DirectoryEvents(loop, self._debouncer, frozenset(names))
            observer.schedule(events, str(directory), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._debouncer.poke()
        if self._engine is not None:
            self._engine_check = asyncio.create_task(self._check_engine_forever(self._engine))
        logger.info("watching %s for policy changes", self._directory)

    async def close(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join)
        if self._engine_check is not None:
            self._engine_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine_check
        if self._deferred_retry is not None:
            self._deferred_retry.cancel()
        await self._debouncer.close()

    def _watched_directories(self) -> dict[Path, set[str]]:
        """Each directory to watch and the file names in it that count."""
        watched: dict[Path, set[str]] = {self._directory: set(POLICY_FILE_NAMES)}
        for companion in self._companions:
            path = companion.file.path
            watched.setdefault(path.parent, set()).add(path.name)
        return watched

    async def reload(self) -> ReloadOutcome:
        """One reload from the directory, reported; normally called by the debouncer."""
        source = policy_source_dir(self._directory)
        outcome = await self._policies.reload(source)
        await self._report(outcome, source)
        if outcome.status is CandidateVerdict.DEFERRED:
            if self._deferred_retry is not None:
                self._deferred_retry.cancel()
            loop = asyncio.get_running_loop()
            self._deferred_retry = loop.call_later(self._engine_check_interval, self._debouncer.poke)
        for companion in self._companions:
            await self._reload_companion(companion, source)
        return outcome

    async def _reload_companion(self, companion: CompanionFile, policy_source: Path) -> None:
        """A file reloaded with the policies, from the same ConfigMap generation when it sits beside them."""
        path = companion.file.path
        beside = path.parent.resolve() == self._directory.resolve()
        verdict, error = companion.file.reload(policy_source / path.name if beside else None)
        if verdict is ReloadVerdict.ACTIVATED:
            logger.info("%s %s activated (%s)", companion.description, path, companion.file.current.sha256)
        elif verdict is ReloadVerdict.REJECTED:
            message = f"{companion.description} rejected, keeping the last good: {error}"
            logger.error("%s", message)
            companion.last_rejection = error
            if self._notifier is not None:
                await self._notifier.warn(companion.rejected_reason, message)

    def probe_detail(self) -> dict[str, Any]:
        """The active hash and the last reload (and last rejection, if any) for the health probe."""
        active = self._policies.current
        detail: dict[str, Any] = {"active": {POLICY_FILE_NAME: active.sha256} if active else {}}
        if self._last is not None:
            detail["lastReload"] = self._last.to_raw()
        if self._last_rejection is not None:
            detail["lastRejection"] = self._last_rejection.to_raw()
        for companion in self._companions:
            detail[companion.probe_key] = companion.probe_detail()
        return detail

    async def _report(self, outcome: ReloadOutcome, source: Path) -> None:
        now = datetime.now(UTC)
        changed = (POLICY_FILE_NAME,) if outcome.changed else ()
        if outcome.status is CandidateVerdict.ACTIVATED:
            result = ReportedReloadResult.ACTIVATED
            assert outcome.active is not None  # an activation always has an active text
            self._metrics.show_active_hashes({POLICY_FILE_NAME: outcome.active.sha256})
        elif outcome.status is CandidateVerdict.UNCHANGED:
            result = ReportedReloadResult.UNCHANGED
        elif outcome.status is CandidateVerdict.DEFERRED:
            result = ReportedReloadResult.DEFERRED
        else:
            # A read failure rejects before any text is compared, so nothing is "changed".
            missing = missing_policy_files(source) if not outcome.changed else []
            result = ReportedReloadResult.MISSING if missing else ReportedReloadResult.REJECTED
        self._metrics.policy_reloads.labels(result=result).inc()
        self._last = ReloadReport(result, now, changed, outcome.error)
        if result in (ReportedReloadResult.ACTIVATED, ReportedReloadResult.UNCHANGED):
            return
        if result == ReportedReloadResult.DEFERRED:
            logger.warning(
                "policy reload deferred, asked again in %.0f s: %s",
                self._engine_check_interval,
                outcome.error,
            )
            return
        self._last_rejection = self._last
        if result == ReportedReloadResult.MISSING:
            reason = "PolicyFileMissing"
            message = f"{outcome.error}; keeping the last good"
        else:
            reason = "PolicyReloadRejected"
            message = f"policy reload rejected, keeping the last good: {outcome.error}"
        logger.error("%s", message)
        if self._notifier is not None:
            await self._notifier.warn(reason, message)

    async def _check_engine_forever(self, engine: PolicyEngine) -> None:
        while True:
            await asyncio.sleep(self._engine_check_interval)
            await self.check_engine(engine)

    async def check_engine(self, engine: PolicyEngine) -> bool:
        """Load the active text into `engine` again if it lost it (an OPA restarted); True if it did."""
        try:
            async with asyncio.timeout(max(1.0, self._engine_check_interval)):
                lost = await engine.lost_modules([MODULE_ID])
        except (PolicyEngineUnavailable, TimeoutError) as error:
            logger.debug("the policy engine did not list its modules: %r", error)
            return False
        if not lost or self._policies.current is None:
            return False
        logger.warning("the policy engine lost %s (restarted?); loading the active policy again", lost)
        try:
            await self._policies.restore()
        except PolicyError as error:
            logger.warning("could not load the active policy into the policy engine again: %s", error)
            return False
        self._metrics.policy_reloads.labels(result=ReportedReloadResult.RESTORED).inc()
        return True
