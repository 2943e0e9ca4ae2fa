"""`ActivePolicies` on the real engines: a bad text never becomes (or stays) active.

With OPA the interesting case is a module that compiles but fails the smoke
evaluation: OPA has already replaced the old module, so the old text must be
loaded again. Each OPA test has its own server, because these tests change
the shipped modules.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller import classify
from controller.policies import (
    ActivePolicies,
    CandidateVerdict,
    Policy,
    PolicyLoadError,
    hash_text,
)
from controller.policy_engine import EmbeddedEngine, OpaServerEngine, PolicyEngine
from controller.signalprocessing import (
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    PriorityAssignment,
    Signal,
    TargetResource,
)

from .conftest import POLICY_DIR

PRODUCTION = NamespaceContext("payments", {"kubernaut.ai/environment": "production"})
CRITICAL = Signal("critical", "prometheus", "prometheus-alert")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for policy in Policy:
        shutil.copy(POLICY_DIR / policy.file_name, tmp_path / policy.file_name)
    shutil.copy(POLICY_DIR / "priority_test.rego", tmp_path / "priority_test.rego")
    return tmp_path


@pytest.fixture(params=["opa", "embedded"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[PolicyEngine]:
    created: PolicyEngine
    if request.param == "opa":
        created = OpaServerEngine(request.getfixturevalue("fresh_opa_server").url)
    else:
        created = EmbeddedEngine()
    yield created
    await created.close()


@pytest.fixture
async def active(engine: PolicyEngine, policy_dir: Path) -> ActivePolicies:
    policies = ActivePolicies(engine, classify.smoke_check)
    await policies.start(policy_dir)
    return policies


async def priority_of(active: ActivePolicies) -> PriorityAssignment:
    return await classify.assign_priority(active, CRITICAL, "production", PRODUCTION, None)


def write(directory: Path, policy: Policy, text: str) -> str:
    (directory / policy.file_name).write_text(text)
    return hash_text(text.encode())


async def test_start_activates_the_files_with_their_hashes(active: ActivePolicies, policy_dir: Path) -> None:
    assert active.current is not None
    assert dict(active.current.hashes) == {
        policy: hash_text((policy_dir / policy.file_name).read_bytes()) for policy in Policy
    }
    assert (await priority_of(active)).policy_hash == active.current.hashes[Policy.PRIORITY]


async def test_unchanged_texts_are_skipped(active: ActivePolicies, policy_dir: Path) -> None:
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.UNCHANGED
    assert outcome.active is active.current


async def test_a_valid_change_is_activated(active: ActivePolicies, policy_dir: Path) -> None:
    text = 'package signalprocessing.labels\n\nlabels := {"version": ["v2"]}\n'
    new_hash = write(policy_dir, Policy.CUSTOMLABELS, text)
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.ACTIVATED
    assert outcome.changed == (Policy.CUSTOMLABELS,)
    labels = await classify.extract_custom_labels(
        active, KubernetesContext(namespace=PRODUCTION), TargetResource("Pod", "app", "payments"), CRITICAL
    )
    assert labels.to_status() == {"version": ["v2"]}
    assert labels.policy_hash == new_hash


BAD_PRIORITIES = {
    "does-not-parse": "package signalprocessing.priority\n\nresult := {\n",
    "unsafe-variable": 'package signalprocessing.priority\n\nresult := {"priority": p}\n',
    "wrong-value": 'package signalprocessing.priority\n\nresult := {"priority": "P9", "policy_name": "x"}\n',
    "not-an-object": 'package signalprocessing.priority\n\nresult := "P0"\n',
    "no-default": 'package signalprocessing.priority\n\nresult := {"priority": "P0"} if { input.never }\n',
    "conflict": (
        "package signalprocessing.priority\n\n"
        'result := {"priority": "P0"} if { input.environment == "production" }\n\n'
        'result := {"priority": "P1"} if { input.signal.severity == "critical" }\n'
    ),
    "other-package": 'package signalprocessing.environment\n\nresult := {"environment": "x"}\n',
    "network": (
        "package signalprocessing.priority\n\n"
        'result := {"priority": "P0", "policy_name": r.body} if {\n'
        '\tr := http.send({"method": "get", "url": "http://127.0.0.1:9"})\n}\n'
    ),
}


@pytest.mark.parametrize("text", BAD_PRIORITIES.values(), ids=BAD_PRIORITIES.keys())
async def test_a_bad_policy_is_rejected_and_the_last_good_stays(
    active: ActivePolicies, policy_dir: Path, text: str
) -> None:
    before = active.current
    assert before is not None
    expected = await priority_of(active)
    write(policy_dir, Policy.PRIORITY, text)
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.changed == (Policy.PRIORITY,)
    assert outcome.error and "priority.rego" in outcome.error
    assert active.current is before
    assert await priority_of(active) == expected
    environment = await classify.classify_environment(active, PRODUCTION, CRITICAL)
    assert environment.environment == "production"


async def test_all_changes_of_a_rejected_reload_are_rolled_back(
    active: ActivePolicies, policy_dir: Path
) -> None:
    environment_before = await classify.classify_environment(active, PRODUCTION, CRITICAL)
    write(
        policy_dir,
        Policy.ENVIRONMENT,
        'package signalprocessing.environment\n\nresult := {"environment": "changed", "source": "x"}\n',
    )
    write(policy_dir, Policy.PRIORITY, BAD_PRIORITIES["wrong-value"])
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.changed == (Policy.ENVIRONMENT, Policy.PRIORITY)
    assert await classify.classify_environment(active, PRODUCTION, CRITICAL) == environment_before


async def test_a_missing_file_keeps_the_last_good(active: ActivePolicies, policy_dir: Path) -> None:
    before = active.current
    (policy_dir / "business.rego").unlink()
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.error is not None and "business.rego is missing" in outcome.error
    assert active.current is before


async def test_a_missing_file_at_start_is_an_error_naming_it(engine: PolicyEngine, policy_dir: Path) -> None:
    (policy_dir / "customlabels.rego").unlink()
    with pytest.raises(PolicyLoadError, match=r"customlabels\.rego is missing"):
        await ActivePolicies(engine, classify.smoke_check).start(policy_dir)


async def test_a_bad_policy_at_start_is_an_error(engine: PolicyEngine, policy_dir: Path) -> None:
    write(policy_dir, Policy.PRIORITY, BAD_PRIORITIES["wrong-value"])
    policies = ActivePolicies(engine, classify.smoke_check)
    with pytest.raises(PolicyLoadError, match="invalid priority value"):
        await policies.start(policy_dir)
    assert policies.current is None


async def test_business_labels_win_over_the_policy(active: ActivePolicies) -> None:
    namespace = NamespaceContext(
        "payments",
        {
            "kubernaut.ai/environment": "production",
            "kubernaut.ai/criticality": "Critical",
            "kubernaut.ai/team": "t",
        },
    )
    deployment = DeploymentDetails(
        labels={"kubernaut.ai/sla-tier": "platinum", "kubernaut.ai/criticality": "low"}
    )
    business = await classify.classify_business(active, "production", namespace, deployment)
    assert (
        business.business_unit,
        business.service_owner,
        business.criticality,
        business.sla_requirement,
    ) == (
        "t",
        "unknown",
        "critical",
        "platinum",
    )
    assert active.current is not None
    assert business.policy_hash == active.current.hashes[Policy.BUSINESS]
