"""What one reload leaves behind: the hash metric, the reload counter and the probe detail."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller import classify
from controller.clusters import REGISTRY_FILE_NAME, FileClusterRegistry
from controller.hotreload import PodEventNotifier, PolicyWatcher
from controller.metrics import ControllerMetrics
from controller.policies import LEGACY_FILE_NAMES, POLICY_FILE_NAME, ActivePolicies
from controller.policy_engine import EmbeddedEngine

SHIPPED = Path(__file__).resolve().parents[3] / "policies" / POLICY_FILE_NAME
CHANGED = SHIPPED.read_text() + "\n# changed\n"


@pytest.fixture
async def watcher(tmp_path: Path) -> AsyncIterator[tuple[PolicyWatcher, ControllerMetrics]]:
    shutil.copy(SHIPPED, tmp_path / POLICY_FILE_NAME)
    engine = EmbeddedEngine()
    policies = ActivePolicies(engine, classify.smoke_check)
    active = await policies.start(tmp_path)
    metrics = ControllerMetrics.create()
    metrics.show_active_hashes({POLICY_FILE_NAME: active.sha256})
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
    (tmp_path / POLICY_FILE_NAME).write_text(CHANGED)

    await reloader.reload()

    assert shown_hashes(metrics) == {POLICY_FILE_NAME: hashlib.sha256(CHANGED.encode()).hexdigest()}
    assert reloads(metrics, "activated") == 1
    detail = reloader.probe_detail()
    assert detail["active"] == shown_hashes(metrics)
    assert (detail["lastReload"]["result"], detail["lastReload"]["changed"]) == (
        "activated",
        [POLICY_FILE_NAME],
    )
    assert "lastRejection" not in detail


async def test_a_rejection_is_counted_and_stays_in_the_probe_detail(
    watcher: tuple[PolicyWatcher, ControllerMetrics], tmp_path: Path
) -> None:
    reloader, metrics = watcher
    before = reloader.probe_detail()["active"]
    (tmp_path / POLICY_FILE_NAME).write_text("package signalprocessing\n\npriority := {\n")
    await reloader.reload()
    await reloader.reload()  # unchanged text: tried again, since nothing was activated
    assert reloader.probe_detail()["active"] == before

    (tmp_path / POLICY_FILE_NAME).write_text(CHANGED)
    await reloader.reload()

    detail = reloader.probe_detail()
    assert reloads(metrics, "rejected") == 2
    assert detail["lastReload"]["result"] == "activated"
    assert detail["lastRejection"]["result"] == "rejected"
    assert "policy.rego:" in detail["lastRejection"]["error"]
    assert detail["active"][POLICY_FILE_NAME] != before[POLICY_FILE_NAME]


async def test_a_deleted_file_is_reported_missing_and_the_last_good_stays(
    watcher: tuple[PolicyWatcher, ControllerMetrics], tmp_path: Path
) -> None:
    reloader, metrics = watcher
    before = shown_hashes(metrics)
    assert list(before) == [POLICY_FILE_NAME]
    (tmp_path / POLICY_FILE_NAME).unlink()

    await reloader.reload()

    assert reloads(metrics, "missing") == 1
    assert reloads(metrics, "rejected") is None
    assert reloader.probe_detail()["lastRejection"]["result"] == "missing"
    assert shown_hashes(metrics) == before


async def test_a_switch_back_to_the_four_file_layout_names_the_migration(
    watcher: tuple[PolicyWatcher, ControllerMetrics], tmp_path: Path
) -> None:
    reloader, metrics = watcher
    before = shown_hashes(metrics)
    (tmp_path / POLICY_FILE_NAME).unlink()
    for name in LEGACY_FILE_NAMES:
        (tmp_path / name).write_text(f"package signalprocessing.{name.removesuffix('.rego')}\n")

    await reloader.reload()

    rejection = reloader.probe_detail()["lastRejection"]
    assert rejection["result"] == "missing"
    assert "four-file layout" in rejection["error"]
    assert shown_hashes(metrics) == before


class RecordingNotifier(PodEventNotifier):
    """Keeps the Warning Events instead of posting them on a Pod."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, str]] = []

    async def warn(self, reason: str, message: str) -> None:
        self.warnings.append((reason, message))


async def test_the_cluster_registry_reloads_with_the_policies_and_a_bad_one_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    shutil.copy(SHIPPED, tmp_path / POLICY_FILE_NAME)
    engine = EmbeddedEngine()
    policies = ActivePolicies(engine, classify.smoke_check)
    await policies.start(tmp_path)
    metrics = ControllerMetrics.create()
    path = tmp_path / REGISTRY_FILE_NAME
    path.write_text("clusters: {prod: {labels: {tier: gold}}}\n")
    registry = FileClusterRegistry(path)
    notifier = RecordingNotifier()
    companion = PolicyWatcher(tmp_path, policies, metrics, notifier=notifier, cluster_registry=registry)
    good = "clusters: {prod: {labels: {tier: silver}}, edge: {}}\n"
    path.write_text(good)

    await companion.reload()
    activated = companion.probe_detail()["clusterRegistry"]
    path.write_text("clusters: {prod: {labels: {tier: 2}}}\n")
    await companion.reload()
    await engine.close()

    assert activated == {"sha256": hashlib.sha256(good.encode()).hexdigest(), "clusters": 2}
    rejected = companion.probe_detail()["clusterRegistry"]
    assert (rejected["sha256"], rejected["clusters"]) == (activated["sha256"], 2)
    assert f"{path}: clusters.prod.labels.tier" in rejected["lastRejection"]
    assert dict(registry.labels("prod")) == {"tier": "silver"}
    [(reason, message)] = notifier.warnings
    assert reason == "ClusterRegistryRejected"
    assert message.startswith("cluster registry rejected, keeping the last good: ")
