"""`ActivePolicies` on the real engines: a bad text never becomes (or stays) active.

With OPA the interesting case is a module that compiles but fails the smoke
evaluation: OPA has already replaced the old module, so the old text must be
loaded again. Each OPA test has its own server, because these tests change
the shipped module.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller import classify
from controller.policies import (
    LEGACY_FILE_NAMES,
    POLICY_FILE_NAME,
    ActivePolicies,
    CandidateVerdict,
    PolicyLoadError,
    hash_text,
)
from controller.policy_engine import PolicyEngine
from controller.signalprocessing import (
    DeploymentDetails,
    KubernetesContext,
    NamespaceContext,
    Signal,
    TargetResource,
)
from test.integration.patient_engines import patient_embedded, patient_opa

from .conftest import POLICY_DIR

PRODUCTION = NamespaceContext("payments", {"kubernaut.ai/environment": "production"})
CRITICAL = Signal("critical", "prometheus", "prometheus-alert")
TARGET = TargetResource("Deployment", "checkout", "payments")
SHIPPED = (POLICY_DIR / POLICY_FILE_NAME).read_text()
CRITICAL_PRODUCTION = '{"priority": "P0", "policy_name": "critical-production"}'
DEFAULT_PRIORITY = 'default priority := {"priority": "P2", "policy_name": "default-catch-all"}'


def shipped_with(old: str, new: str) -> str:
    assert old in SHIPPED, old
    return SHIPPED.replace(old, new)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    shutil.copy(POLICY_DIR / POLICY_FILE_NAME, tmp_path / POLICY_FILE_NAME)
    shutil.copy(POLICY_DIR / "policy_test.rego", tmp_path / "policy_test.rego")
    return tmp_path


@pytest.fixture(params=["opa", "embedded"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[PolicyEngine]:
    created: PolicyEngine
    if request.param == "opa":
        created = patient_opa(request.getfixturevalue("fresh_opa_server").url)
    else:
        created = patient_embedded()
    yield created
    await created.close()


@pytest.fixture
async def active(engine: PolicyEngine, policy_dir: Path) -> ActivePolicies:
    policies = ActivePolicies(engine, classify.smoke_check)
    await policies.start(policy_dir)
    return policies


async def classified(active: ActivePolicies) -> classify.SignalVerdict:
    return await classify.classify_signal(active, KubernetesContext(namespace=PRODUCTION), TARGET, CRITICAL)


def write(directory: Path, text: str) -> str:
    (directory / POLICY_FILE_NAME).write_text(text)
    return hash_text(text.encode())


async def test_start_activates_the_file_with_its_hash(active: ActivePolicies, policy_dir: Path) -> None:
    assert active.current is not None
    assert active.current.sha256 == hash_text((policy_dir / POLICY_FILE_NAME).read_bytes())
    verdict = await classified(active)
    assert (verdict.severity, verdict.priority.priority, verdict.policy_hash) == (
        "critical",
        "P0",
        active.current.sha256,
    )


async def test_an_unchanged_text_is_skipped(active: ActivePolicies, policy_dir: Path) -> None:
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.UNCHANGED
    assert outcome.active is active.current


async def test_a_valid_change_is_activated(active: ActivePolicies, policy_dir: Path) -> None:
    text = shipped_with(
        "labels := {key: [value] |", 'labels := {"version": ["v2"]} if true\n\nold_labels := {key: [value] |'
    )
    new_hash = write(policy_dir, text)
    outcome = await active.reload(policy_dir)
    assert (outcome.status, outcome.changed) == (CandidateVerdict.ACTIVATED, True)
    labels = await classify.extract_custom_labels(
        active, KubernetesContext(namespace=PRODUCTION), TargetResource("Pod", "app", "payments"), CRITICAL
    )
    assert labels.to_status() == {"version": ["v2"]}
    assert (await classified(active)).policy_hash == new_hash


BAD_POLICIES = {
    "does-not-parse": SHIPPED + "\nbroken := {\n",
    "unsafe-variable": shipped_with(DEFAULT_PRIORITY, 'default priority := {"priority": p}'),
    "wrong-priority": shipped_with(CRITICAL_PRODUCTION, '{"priority": "P9", "policy_name": "x"}'),
    "priority-not-an-object": shipped_with(CRITICAL_PRODUCTION, '"P0"'),
    "severity-out-of-the-enum": shipped_with('"critical": "critical",', '"critical": "urgent",'),
    "severity-undefined": shipped_with('default severity := "unknown"', "").replace(
        '"critical": "critical",', ""
    ),
    "conflict": SHIPPED + '\npriority := {"priority": "P1"} if input.signal.severity == "critical"\n',
    "four-file-package": shipped_with("package signalprocessing\n", "package signalprocessing.priority\n"),
    "network": SHIPPED
    + '\nremote := r.body if {\n\tr := http.send({"method": "get", "url": "http://127.0.0.1:9"})\n}\n',
}


@pytest.mark.parametrize("text", BAD_POLICIES.values(), ids=BAD_POLICIES.keys())
async def test_a_bad_policy_is_rejected_and_the_last_good_stays(
    active: ActivePolicies, policy_dir: Path, text: str
) -> None:
    before = active.current
    assert before is not None
    expected = await classified(active)
    write(policy_dir, text)
    outcome = await active.reload(policy_dir)
    assert (outcome.status, outcome.changed) == (CandidateVerdict.REJECTED, True)
    assert outcome.error
    assert active.current is before
    assert await classified(active) == expected


async def test_a_missing_file_keeps_the_last_good(active: ActivePolicies, policy_dir: Path) -> None:
    before = active.current
    (policy_dir / POLICY_FILE_NAME).unlink()
    outcome = await active.reload(policy_dir)
    assert outcome.status is CandidateVerdict.REJECTED
    assert outcome.error is not None and "policy.rego is missing" in outcome.error
    assert active.current is before


async def test_the_four_file_layout_at_start_is_an_error_naming_the_migration(
    engine: PolicyEngine, tmp_path: Path
) -> None:
    for name in LEGACY_FILE_NAMES:
        (tmp_path / name).write_text(f"package signalprocessing.{name.removesuffix('.rego')}\n")
    with pytest.raises(PolicyLoadError, match=r"policy\.rego is missing.*four-file layout"):
        await ActivePolicies(engine, classify.smoke_check).start(tmp_path)


async def test_a_bad_policy_at_start_is_an_error(engine: PolicyEngine, policy_dir: Path) -> None:
    write(policy_dir, BAD_POLICIES["wrong-priority"])
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
    kubernetes = KubernetesContext(namespace=namespace, deployment=deployment)
    business, policy_hash = await classify.classify_business(active, kubernetes, TARGET, CRITICAL)
    assert (
        business.business_unit,
        business.service_owner,
        business.criticality,
        business.sla_requirement,
    ) == ("t", "unknown", "Critical", "Platinum")
    assert active.current is not None
    assert policy_hash == active.current.sha256
