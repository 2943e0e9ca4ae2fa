"""What one reload leaves behind: the hash metric, the reload counter and the probe detail."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller import classify
from controller.hotreload import PolicyWatcher
from controller.metrics import ControllerMetrics
from controller.policies import ActivePolicies, Policy
from controller.policy_engine import EmbeddedEngine

SHIPPED = Path(__file__).resolve().parents[3] / "policies"
NEW_LABELS = 'package signalprocessing.labels\n\nlabels := {"new": ["yes"]}\n'


@pytest.fixture
async def watcher(tmp_path: Path) -> AsyncIterator[tuple[PolicyWatcher, ControllerMetrics]]:
    for policy in Policy:
        shutil.copy(SHIPPED / policy.file_name, tmp_path / policy.file_name)
    engine = EmbeddedEngine()
    policies = ActivePolicies(engine, classify.smoke_check)
    active = await policies.start(tmp_path)
    metrics = ControllerMetrics.create()
    metrics.show_active_hashes({policy.value: digest for policy, digest in active.hashes.items()})
    yield PolicyWatcher(tmp_path, policies, metrics), metrics  # never started: reloads are called directly
    await engine.close()


def reloads(metrics: ControllerMetrics, result: str) -> float | None:
    return metrics.registry.get_sample_value("signalprocessing_policy_reloads_total", {"result": result})


def shown_hashes(metrics: ControllerMetrics) -> dict[str, str]:
    return {
        sample.labels["policy"]: sample.labels["sha256"]
        for family in metrics.policy_hash.collect()
        for sample in family.samples
        if sample.value == 1
    }


async def test_an_activation_shows_the_new_hash_and_only_it(
    watcher: tuple[PolicyWatcher, ControllerMetrics], tmp_path: Path
) -> None:
    reloader, metrics = watcher
    (tmp_path / "customlabels.rego").write_text(NEW_LABELS)

    await reloader.reload()

    assert shown_hashes(metrics)["customlabels"] == hashlib.sha256(NEW_LABELS.encode()).hexdigest()
    assert len(shown_hashes(metrics)) == 4
    assert reloads(metrics, "activated") == 1
    detail = reloader.probe_detail()
    assert detail["active"] == shown_hashes(metrics)
    assert (detail["lastReload"]["result"], detail["lastReload"]["changed"]) == (
        "activated",
        ["customlabels"],
    )
    assert "lastRejection" not in detail


async def test_a_rejection_is_counted_and_stays_in_the_probe_detail(
    watcher: tuple[PolicyWatcher, ControllerMetrics], tmp_path: Path
) -> None:
    reloader, metrics = watcher
    before = reloader.probe_detail()["active"]
    (tmp_path / "priority.rego").write_text("package signalprocessing.priority\n\nresult := {\n")
    await reloader.reload()
    await reloader.reload()  # unchanged text: tried again, since nothing was activated

    (tmp_path / "customlabels.rego").write_text(NEW_LABELS)
    (tmp_path / "priority.rego").write_text((SHIPPED / "priority.rego").read_text())
    await reloader.reload()

    detail = reloader.probe_detail()
    assert reloads(metrics, "rejected") == 2
    assert detail["lastReload"]["result"] == "activated"
    assert detail["lastRejection"]["result"] == "rejected"
    assert "priority.rego:" in detail["lastRejection"]["error"]
    assert detail["active"]["priority"] == before["priority"]


async def test_a_deleted_file_is_reported_missing_and_the_last_good_stays(
    watcher: tuple[PolicyWatcher, ControllerMetrics], tmp_path: Path
) -> None:
    reloader, metrics = watcher
    before = shown_hashes(metrics)
    assert len(before) == 4
    (tmp_path / "business.rego").unlink()

    await reloader.reload()

    assert reloads(metrics, "missing") == 1
    assert reloads(metrics, "rejected") is None
    assert reloader.probe_detail()["lastRejection"]["result"] == "missing"
    assert shown_hashes(metrics) == before
