"""How a SignalProcessing fails, retries and reports: Failed reasons, BR-SP-111 retries, Kubernetes Events.

Failures need a controller of the spec's own, started with the fault built in:

- the policy engine is reached through a TCP proxy the test can cut and
  restore (`SwitchableProxy`). A cut makes every evaluation fail as
  "engine unavailable", a transient error, without the engine losing its
  loaded policies, so restoring the proxy is the whole repair. This gives a
  deterministic transient failure (recorded, retried, then cleared) and,
  with a 2 s deadline, a deterministic `TimedOut`: the SP retries in
  Enriching until the deadline passes. (Stopping OPA instead would race
  with the controller restoring the policies into a fresh OPA, and a
  closed OPA port at start keeps the controller from starting at all.)
- a priority policy that loads and passes the start-up smoke check, but
  answers out of contract or with a conflict for namespaces carrying a
  `kubernaut.ai/fault` label: a persistent policy error.

Each such controller watches its own `spx-<worker>-<hex>-*` namespaces,
outside the worker's glob, created before it starts (see
`isolated_controllers`). The Events specs need no fault beyond a missing
namespace and run on the worker's controller.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from kubernetes import client

from devstack.controller_process import ControllerProcess
from devstack.manifests import signal_processing, unique_rr_name
from devstack.opa_server import OpaServer
from devstack.policies import copy_shipped_policies
from devstack.state import StackState
from envtest import assets
from test.integration.conftest import request_deletion
from test.integration.polling import ConditionNotMet, eventually
from test.integration.signalprocessing.conftest import controller_settings, pod
from test.integration.signalprocessing.support import (
    SHIPPED_POLICY,
    SUCCESS_TRAIL,
    audit_events,
    condition,
    count_types,
    counter_value,
    create_sp,
    get_sp,
    metric_value,
    phase_transitions,
    process_signal,
    wait_for_audit_types,
    wait_for_exact_trail,
    wait_for_phase,
    wait_until_delivered,
    write_policy,
)

PRODUCTION = {"kubernaut.ai/environment": "production"}
FAULT_LABEL = "kubernaut.ai/fault"

FAULT = f'input.namespace.labels["{FAULT_LABEL}"]'


# The shipped policy, broken only where a namespace asks: it loads and passes the smoke check (no
# fault label there).
FAULTY_POLICY = (
    SHIPPED_POLICY.replace(
        "severity := severity_aliases[lower(input.signal.severity)]",
        f'severity := "urgent" if {FAULT} == "bad-severity"\n'
        "else := severity_aliases[lower(input.signal.severity)]",
    ).replace(
        'priority := {"priority": "P0", "policy_name": "critical-production"} if {',
        f'priority := {{"priority": "P9", "policy_name": "out-of-range"}} if {FAULT} == "invalid-priority"\n'
        'else := {"priority": "P0", "policy_name": "critical-production"} if {',
    )
    + f"""
priority := {{"priority": "P1", "policy_name": "second-opinion"}} if {FAULT} == "conflict"

cluster := "edge-eu" if {FAULT} == "cluster"

cluster := "one" if {FAULT} == "cluster-conflict"

cluster := "two" if {FAULT} == "cluster-conflict"
"""
)


# --- A controller of the spec's own, behind a switchable link to its policy engine --------------


class SwitchableProxy:
    """A TCP proxy on 127.0.0.1 to `upstream_port`; `cut()` drops every connection until `restore()`.

    While cut, new connections are accepted and closed at once, so a client sees a disconnect
    (not a timeout) immediately.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = True
        self._sockets: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept_forever, daemon=True)

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        _close(self._listener)  # the shutdown wakes the accept() blocked in the acceptor thread
        self.cut()
        self._acceptor.join()

    def cut(self) -> None:
        with self._lock:
            self._open = False
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def _accept_forever(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                if not self._open:
                    _close(downstream)
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self._upstream_port), timeout=5)
                except OSError:
                    _close(downstream)
                    continue
                upstream.settimeout(None)
                self._sockets |= {downstream, upstream}
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with self._lock:
            self._sockets -= {source, sink}
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@dataclass
class IsolatedController:
    process: ControllerProcess
    policy_link: SwitchableProxy
    core: client.CoreV1Api
    namespaces: dict[str, str]  # what the spec asked for -> the namespace's name
    settings: dict[str, str]
    resources: contextlib.ExitStack

    def start_again(self, **overrides: str) -> None:
        """After `process.close()`: a new controller whose settings differ by `overrides` (same OPA,
        link and namespaces)."""
        log = self.process.log_path.with_name(f"{self.process.log_path.stem}-again.log")
        self.process = self.resources.enter_context(
            ControllerProcess(settings={**self.settings, **overrides}, log_path=log)
        )


ControllerStarter = Callable[..., IsolatedController]


@contextlib.contextmanager
def isolated_controllers(
    stack: StackState, api_client: client.ApiClient, work_dir: Path, worker_id: str
) -> Iterator[ControllerStarter]:
    """Starts controllers on demand (own OPA, proxy, policy copy, namespaces); stops them all at the end."""
    with contextlib.ExitStack() as resources:

        def start(
            namespaces: dict[str, dict[str, str]], *, policy: str | None = None, **overrides: str
        ) -> IsolatedController:
            """`namespaces` (key -> labels) are created first; the controller then watches them."""
            core = client.CoreV1Api(api_client)
            prefix = f"spx-{worker_id}-{secrets.token_hex(3)}-"
            names = {key: f"{prefix}{secrets.token_hex(4)}" for key in namespaces}
            resources.callback(request_deletion, core.delete_namespace, list(names.values()))
            for key, name in names.items():
                core.create_namespace({"metadata": {"name": name, "labels": namespaces[key]}})
            policy_dir = copy_shipped_policies(work_dir / f"policies-{prefix.rstrip('-')}")
            if policy is not None:
                write_policy(policy_dir, policy)
            opa = resources.enter_context(
                OpaServer(assets.OPA.path, log_path=work_dir / f"opa-{prefix.rstrip('-')}.log")
            )
            link = resources.enter_context(SwitchableProxy(opa.port))
            settings = controller_settings(
                stack,
                namespaces=f"{prefix}*",
                policy_dir=policy_dir,
                opa_url=f"http://127.0.0.1:{link.port}",
                **overrides,
            )
            log = work_dir / f"controller-{prefix.rstrip('-')}.log"
            process = resources.enter_context(ControllerProcess(settings=settings, log_path=log))
            return IsolatedController(process, link, core, names, settings, resources)

        yield start


@pytest.fixture
def start_controller(
    stack: StackState, api_client: client.ApiClient, tmp_path: Path, worker_id: str
) -> Iterator[ControllerStarter]:
    with isolated_controllers(stack, api_client, tmp_path, worker_id) as start:
        yield start


@pytest.fixture(scope="module")
def faulty_policy_controller(
    stack: StackState, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[IsolatedController]:
    work_dir = tmp_path_factory.mktemp("faulty-priority")
    with isolated_controllers(stack, api_client, work_dir, worker_id) as start:
        yield start(
            {
                "invalid-priority": {**PRODUCTION, FAULT_LABEL: "invalid-priority"},
                "conflict": {**PRODUCTION, FAULT_LABEL: "conflict"},
                "bad-severity": {**PRODUCTION, FAULT_LABEL: "bad-severity"},
                "cluster": {**PRODUCTION, FAULT_LABEL: "cluster"},
                "cluster-conflict": {**PRODUCTION, FAULT_LABEL: "cluster-conflict"},
                "sound": PRODUCTION,
            },
            policy=FAULTY_POLICY,
        )


# --- Reading results -----------------------------------------------------------------------------


def sp_events(core: client.CoreV1Api, namespace: str, name: str) -> list[Any]:
    """The Kubernetes Events about one SP."""
    return list(core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items)


def wait_for_event_reasons(
    core: client.CoreV1Api, namespace: str, name: str, expected: dict[str, int], timeout: float = 15.0
) -> list[Any]:
    """Polls until the SP's Events reach at least the expected count per reason; returns them all."""

    def probe() -> list[Any] | None:
        events = sp_events(core, namespace, name)
        counts = reason_counts(events)
        return events if all(counts.get(r, 0) >= n for r, n in expected.items()) else None

    return eventually(
        probe, timeout=timeout, message=f"Events of {namespace}/{name} did not reach {expected}"
    )


def reason_counts(events: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event.reason] = counts.get(event.reason, 0) + 1
    return counts


# --- Deadline (TimedOut) -------------------------------------------------------------------------


@pytest.mark.br("BR-SP-111")
def test_signal_still_retrying_at_the_deadline_fails_timed_out(
    stack: StackState, custom_objects: client.CustomObjectsApi, start_controller: ControllerStarter
) -> None:
    own = start_controller({"signals": PRODUCTION})  # the default deadline: minutes away
    namespace = own.namespaces["signals"]
    own.policy_link.cut()
    rr = unique_rr_name()
    name = create_sp(custom_objects, signal_processing(namespace, rr_name=rr))["metadata"]["name"]

    def retrying_in_enriching() -> dict[str, Any] | None:
        status = get_sp(custom_objects, namespace, name).get("status") or {}
        failures = (status.get("failureInfo") or {}).get("consecutiveFailures")
        return status if status.get("phase") == "Enriching" and failures else None

    eventually(retrying_in_enriching, message="the SP did not start retrying in Enriching")
    # The deadline passes only now, whatever the machine's speed: the controller is replaced by one
    # whose deadline is already behind the SP's start. The link comes back first, because a
    # controller starts only once OPA has its policies, and only after the old controller is gone,
    # which could otherwise finish the SP in time.
    own.process.close()
    own.policy_link.restore()
    own.start_again(SP_DEADLINE_SECONDS="0.001")

    failed = wait_for_phase(custom_objects, namespace, name, "Failed", "Completed", timeout=20)

    status = failed["status"]
    assert status["phase"] == "Failed"
    assert status["failedPhase"] == "Enriching"
    assert status["failureInfo"]["consecutiveFailures"] >= 1  # it was retrying, not stuck
    assert "not completed within 0s" in status["failureInfo"]["error"]
    enrichment = condition(status, "EnrichmentComplete")
    processing = condition(status, "ProcessingComplete")
    assert (enrichment["status"], enrichment["reason"]) == ("False", "TimedOut")
    assert (processing["status"], processing["reason"]) == ("False", "TimedOut")
    events = wait_for_audit_types(stack.datastorage_url, rr, {"signalprocessing.error.occurred": 1})
    error = next(e for e in events if e["event_type"] == "signalprocessing.error.occurred")
    assert error["event_data"]["phase"] == "Enriching"
    eventually(
        lambda: ("Enriching", "Failed") in phase_transitions(stack.datastorage_url, rr),
        message="phase.transition Enriching -> Failed was not audited",
    )
    timed_out = wait_for_event_reasons(own.core, namespace, name, {"ProcessingTimedOut": 1})
    assert all(e.type == "Warning" for e in timed_out if e.reason == "ProcessingTimedOut")


DEADLINE_LEADS = (5, 20, 80)


def retrying_before(
    custom_objects: client.CustomObjectsApi, namespace: str, name: str, deadline: datetime
) -> bool:
    """Whether the SP was seen in Enriching, waiting for a retry, before `deadline`."""

    def retrying() -> bool:
        status = get_sp(custom_objects, namespace, name).get("status") or {}
        failures = (status.get("failureInfo") or {}).get("consecutiveFailures")
        return status.get("phase") == "Enriching" and bool(failures) and datetime.now(UTC) < deadline

    try:
        eventually(retrying, timeout=(deadline - datetime.now(UTC)).total_seconds(), message="retrying")
    except ConditionNotMet:
        return False
    return True


@pytest.mark.br("BR-SP-111")
def test_signal_waiting_for_a_retry_fails_at_spec_times_out_at_not_after_its_backoff(
    stack: StackState, custom_objects: client.CustomObjectsApi, start_controller: ControllerStarter
) -> None:
    # An hour's backoff: without a wake-up at the deadline the SP would sit in Enriching that long.
    own = start_controller(
        {"signals": PRODUCTION}, SP_BACKOFF_BASE_SECONDS="3600", SP_BACKOFF_CAP_SECONDS="3600"
    )
    namespace = own.namespaces["signals"]
    own.policy_link.cut()
    # The spec needs an SP already waiting for its retry when its deadline comes; a loaded machine
    # may reach a new SP later than a few seconds, so the lead grows until that was observed.
    for lead in DEADLINE_LEADS:
        deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead)
        manifest = signal_processing(namespace)
        manifest["spec"]["timesOutAt"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        name = create_sp(custom_objects, manifest)["metadata"]["name"]
        if retrying_before(custom_objects, namespace, name, deadline):
            break
    else:
        pytest.fail(f"no SP was retrying in Enriching before its deadline, with leads of {DEADLINE_LEADS} s")

    failed = wait_for_phase(custom_objects, namespace, name, "Failed", "Completed", timeout=120)

    status = failed["status"]
    assert (status["phase"], status["failedPhase"]) == ("Failed", "Enriching")
    failure = status["failureInfo"]
    assert failure["consecutiveFailures"] >= 1  # it was waiting for a retry when the deadline came
    assert failure["error"] == f"not completed by spec.timesOutAt {manifest['spec']['timesOutAt']}"
    finished = datetime.fromisoformat(status["completionTime"])
    assert deadline <= finished < deadline + timedelta(minutes=10)  # at the deadline, not an hour on
    assert (condition(status, "Ready")["status"], condition(status, "Ready")["reason"]) == (
        "False",
        "NotReady",
    )
    assert condition(status, "EnrichmentComplete")["reason"] == "TimedOut"


# --- Transient failures: recorded, retried, cleared (BR-SP-111) ----------------------------------


@pytest.mark.br("BR-SP-111")
def test_policy_engine_outage_is_recorded_retried_and_cleared_after_success(
    stack: StackState, custom_objects: client.CustomObjectsApi, start_controller: ControllerStarter
) -> None:
    own = start_controller({"signals": PRODUCTION})
    namespace = own.namespaces["signals"]
    own.policy_link.cut()
    rr = unique_rr_name()
    name = create_sp(custom_objects, signal_processing(namespace, rr_name=rr))["metadata"]["name"]

    def retried_twice() -> dict[str, Any] | None:
        status = get_sp(custom_objects, namespace, name).get("status") or {}
        return status if (status.get("failureInfo") or {}).get("consecutiveFailures", 0) >= 2 else None

    during = eventually(retried_twice, timeout=20, message="the outage was not recorded twice")
    assert during["phase"] == "Enriching"
    assert f"OPA at http://127.0.0.1:{own.policy_link.port} unreachable" in during["failureInfo"]["error"]
    assert during["failureInfo"]["lastFailureTime"]
    assert not {"error", "consecutiveFailures", "lastFailureTime"} & during.keys()  # moved, not copied
    assert (
        metric_value(
            own.process.metrics_url, "signalprocessing_processing_total", phase="enriching", result="failure"
        )
        >= 2
    )

    own.policy_link.restore()
    done = wait_for_phase(custom_objects, namespace, name, timeout=20)

    status = done["status"]
    assert status["phase"] == "Completed"
    # The failure in force is cleared; when it last happened is kept, as history.
    assert status["failureInfo"].keys() == {"lastFailureTime"}
    assert status["failureInfo"]["lastFailureTime"] >= during["failureInfo"]["lastFailureTime"]
    assert status["priorityAssignment"]["priority"] == "P0"
    wait_for_exact_trail(stack.datastorage_url, own.process.metrics_url, rr, SUCCESS_TRAIL)


# --- Persistent policy errors (RegoEvaluationError) ----------------------------------------------


@pytest.mark.br("BR-SP-070")
@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        pytest.param("invalid-priority", "invalid priority value: 'P9'", id="answer-out-of-contract"),
        pytest.param("conflict", "conflict", id="conflicting-rules"),
        pytest.param(
            "bad-severity",
            "severity rule: 'urgent' is not one of critical, high, warning, info, unknown",
            id="severity-out-of-the-enum",
        ),
    ],
)
def test_persistent_policy_error_fails_the_signal_in_classifying(
    stack: StackState,
    custom_objects: client.CustomObjectsApi,
    faulty_policy_controller: IsolatedController,
    fault: str,
    detail: str,
) -> None:
    own = faulty_policy_controller
    namespace = own.namespaces[fault]
    rr = unique_rr_name()
    name = create_sp(custom_objects, signal_processing(namespace, rr_name=rr))["metadata"]["name"]

    failed = wait_for_phase(custom_objects, namespace, name)

    status = failed["status"]
    assert status["phase"] == "Failed"
    assert status["failedPhase"] == "Classifying"
    assert detail in status["failureInfo"]["error"]
    classification = condition(status, "ClassificationComplete")
    assert (classification["status"], classification["reason"]) == ("False", "RegoEvaluationError")
    assert condition(status, "EnrichmentComplete")["status"] == "True"
    assert condition(status, "ProcessingComplete")["status"] == "False"
    assert "priorityAssignment" not in status
    assert "signalClassification" not in status
    events = wait_for_audit_types(stack.datastorage_url, rr, {"signalprocessing.error.occurred": 1})
    error = next(e for e in events if e["event_type"] == "signalprocessing.error.occurred")
    assert (error["event_outcome"], error["event_data"]["phase"]) == ("failure", "Classifying")
    eventually(
        lambda: ("Classifying", "Failed") in phase_transitions(stack.datastorage_url, rr),
        message="phase.transition Classifying -> Failed was not audited",
    )
    wait_for_event_reasons(own.core, namespace, name, {"PolicyEvaluationFailed": 1})
    wait_until_delivered(own.process.metrics_url)
    assert count_types(audit_events(stack.datastorage_url, rr))["signalprocessing.error.occurred"] == 1


@pytest.mark.br("BR-SP-070")
def test_the_faulty_policy_still_classifies_namespaces_it_does_not_break(
    custom_objects: client.CustomObjectsApi, faulty_policy_controller: IsolatedController
) -> None:
    namespace = faulty_policy_controller.namespaces["sound"]

    done = process_signal(custom_objects, namespace)

    assert done["status"]["phase"] == "Completed"
    assert done["status"]["priorityAssignment"]["policyName"] == "critical-production"
    assert "clusterClassification" not in done["status"]["signalClassification"]


def test_the_cluster_rule_s_answer_is_the_cluster_classification(
    custom_objects: client.CustomObjectsApi, faulty_policy_controller: IsolatedController
) -> None:
    done = process_signal(custom_objects, faulty_policy_controller.namespaces["cluster"])

    assert done["status"]["phase"] == "Completed"
    assert done["status"]["signalClassification"]["clusterClassification"] == "edge-eu"


CLUSTER_ERRORS = "signalprocessing_cluster_classification_errors_total"


def test_a_failing_cluster_rule_is_reported_and_never_fails_the_signal(
    custom_objects: client.CustomObjectsApi, faulty_policy_controller: IsolatedController
) -> None:
    own = faulty_policy_controller
    namespace = own.namespaces["cluster-conflict"]
    errors_before = counter_value(own.process.metrics_url, CLUSTER_ERRORS)

    done = process_signal(custom_objects, namespace)

    status = done["status"]
    assert status["phase"] == "Completed"
    assert "clusterClassification" not in status["signalClassification"]
    assert status["signalClassification"]["severity"] == "critical"
    events = wait_for_event_reasons(
        own.core, namespace, done["metadata"]["name"], {"ClusterClassificationFailed": 1}
    )
    warning = next(e for e in events if e.reason == "ClusterClassificationFailed")
    assert warning.type == "Warning"
    assert "conflict" in warning.message
    assert counter_value(own.process.metrics_url, CLUSTER_ERRORS) == errors_before + 1


# --- Kubernetes Events for the pipeline ----------------------------------------------------------


@pytest.mark.br("BR-SP-110")
def test_completed_signal_has_phase_transition_and_signal_processed_events(
    custom_objects: client.CustomObjectsApi, core: client.CoreV1Api, sp_namespace: str
) -> None:
    core.create_namespaced_pod(sp_namespace, pod("api"))
    name = process_signal(custom_objects, sp_namespace, target_name="api")["metadata"]["name"]

    events = wait_for_event_reasons(core, sp_namespace, name, {"PhaseTransition": 4, "SignalProcessed": 1})

    assert reason_counts(events) == {"PhaseTransition": 4, "SignalProcessed": 1}
    assert sorted(e.message for e in events if e.reason == "PhaseTransition") == sorted(
        [
            "Pending -> Enriching",
            "Enriching -> Classifying",
            "Classifying -> Categorizing",
            "Categorizing -> Completed",
        ]
    )
    processed = next(e for e in events if e.reason == "SignalProcessed")
    assert "processed successfully" in processed.message
    assert all(e.type == "Normal" for e in events)
    assert all(e.reporting_component == "signalprocessing-controller" for e in events)
    assert all(e.involved_object.kind == "SignalProcessing" for e in events)


@pytest.mark.br("BR-SP-110")
def test_missing_target_namespace_gives_an_enrichment_failed_warning(
    custom_objects: client.CustomObjectsApi, core: client.CoreV1Api, sp_namespace: str
) -> None:
    missing = f"gone-{secrets.token_hex(4)}"
    sp = process_signal(custom_objects, sp_namespace, "Failed", target_namespace=missing)
    name = sp["metadata"]["name"]

    events = wait_for_event_reasons(core, sp_namespace, name, {"EnrichmentFailed": 1, "PhaseTransition": 2})

    failed = next(e for e in events if e.reason == "EnrichmentFailed")
    assert failed.type == "Warning"
    assert missing in failed.message
    to_failed = [e for e in events if e.reason == "PhaseTransition" and e.message == "Enriching -> Failed"]
    assert [e.type for e in to_failed] == ["Warning"]
    assert "SignalProcessed" not in reason_counts(events)


@pytest.mark.br("BR-SP-110")
def test_degraded_enrichment_gives_a_warning_and_still_completes(
    custom_objects: client.CustomObjectsApi, core: client.CoreV1Api, sp_namespace: str
) -> None:
    sp = process_signal(custom_objects, sp_namespace, "Completed", target_name="not-there")
    name = sp["metadata"]["name"]

    events = wait_for_event_reasons(core, sp_namespace, name, {"EnrichmentDegraded": 1, "SignalProcessed": 1})

    degraded = next(e for e in events if e.reason == "EnrichmentDegraded")
    assert degraded.type == "Warning"
    assert "degraded mode" in degraded.message and "not-there" in degraded.message
