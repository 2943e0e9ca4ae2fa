"""The cluster registry file, its reload, and which cluster a signal is from (the fleet as the SP sees it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.clusters import (
    REGISTRY_FILE_NAME,
    ClusterMember,
    FileClusterRegistry,
    Fleet,
    RegisteredClusters,
    RegistryError,
    hub_only,
    parse_registry,
)
from controller.watchedfile import FileRejected, ReloadVerdict

SHIPPED = Path(__file__).resolve().parents[3] / "policies" / REGISTRY_FILE_NAME
REGISTRY = """\
clusters:
  prod-eu-1:
    labels: {region: eu-west-1, tier: gold}
  edge-7: {}
  bare:
"""


def test_a_registry_gives_each_registered_cluster_its_labels() -> None:
    registry = parse_registry(REGISTRY)

    assert dict(registry.labels("prod-eu-1")) == {"region": "eu-west-1", "tier": "gold"}
    assert dict(registry.labels("edge-7")) == {}
    assert dict(registry.labels("bare")) == {}
    assert dict(registry.labels("unknown")) == {}
    assert sorted(registry.clusters) == ["bare", "edge-7", "prod-eu-1"]


def test_the_shipped_registry_is_valid_and_registers_no_cluster() -> None:
    registry = FileClusterRegistry(SHIPPED)

    assert registry.current.sha256
    assert registry.current.content == RegisteredClusters()


@pytest.mark.parametrize("text", ["", "clusters:", "clusters: {}"], ids=["empty", "null", "no-cluster"])
def test_a_registry_without_clusters_registers_none(text: str) -> None:
    assert dict(parse_registry(text).clusters) == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("clusters: {a: [", "not YAML", id="broken-yaml"),
        pytest.param("- prod-eu-1", "expected a mapping with the key 'clusters', got list", id="a-list"),
        pytest.param("cluster: {prod: {}}", "unknown keys ['cluster']", id="misspelt-top-key"),
        pytest.param(
            "clusters: [prod, edge]", "clusters must map cluster ids to entries", id="clusters-a-list"
        ),
        pytest.param("clusters: {7: {}}", "7 is not a cluster id", id="id-a-number"),
        pytest.param(
            f"clusters: {{{'c' * 254}: {{}}}}", "is not a cluster id (text of 1 to 253", id="id-too-long"
        ),
        pytest.param(
            "clusters: {prod: [a]}", "clusters.prod: expected a mapping with labels", id="entry-a-list"
        ),
        pytest.param(
            "clusters: {prod: {lables: {a: b}}}",
            "clusters.prod: unknown keys ['lables']",
            id="misspelt-labels",
        ),
        pytest.param(
            "clusters: {prod: {labels: [a]}}", "clusters.prod.labels: expected a mapping", id="labels-list"
        ),
        pytest.param(
            "clusters: {prod: {labels: {tier: 1}}}",
            "clusters.prod.labels.tier: 1 is not a label value",
            id="number",
        ),
        pytest.param(
            f"clusters: {{prod: {{labels: {{tier: {'v' * 64}}}}}}}",
            "at most 63 characters",
            id="value-too-long",
        ),
        pytest.param("clusters: {prod: {labels: {'': a}}}", "'' is not a label key", id="empty-key"),
    ],
)
def test_a_malformed_registry_is_refused_naming_the_problem(text: str, named: str) -> None:
    with pytest.raises(FileRejected, match=named.replace("(", r"\(").replace("[", r"\[")):
        parse_registry(text)


def test_a_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    registry = FileClusterRegistry(tmp_path / "absent.yaml")

    assert (registry.current.sha256, registry.current.content) == ("", RegisteredClusters())
    assert dict(registry.labels("prod-eu-1")) == {}


def test_a_bad_file_at_start_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / REGISTRY_FILE_NAME
    path.write_text("clusters: {prod: {labels: {tier: true}}}\n")

    with pytest.raises(RegistryError, match=f"{path}: clusters.prod.labels.tier"):
        FileClusterRegistry(path)


def test_a_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / REGISTRY_FILE_NAME
    path.write_bytes(b"clusters: {\xff: {}}\n")

    with pytest.raises(FileRejected, match=f"{path} is not UTF-8"):
        FileClusterRegistry(path)


def test_a_reload_swaps_in_a_good_file_and_keeps_the_last_good_one_over_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / REGISTRY_FILE_NAME
    path.write_text("clusters: {prod: {labels: {tier: gold}}}\n")
    registry = FileClusterRegistry(path)
    first = registry.current.sha256

    unchanged = registry.reload()
    path.write_text("clusters: {prod: {labels: {tier: silver}}}\n")
    activated = registry.reload()
    after_good = dict(registry.labels("prod"))
    path.write_text("clusters: {prod: {labels: {tier: [a]}}}\n")
    verdict, error = registry.reload()

    assert unchanged == (ReloadVerdict.UNCHANGED, "")
    assert activated == (ReloadVerdict.ACTIVATED, "")
    assert after_good == {"tier": "silver"}
    assert verdict is ReloadVerdict.REJECTED
    assert f"{path}: clusters.prod.labels.tier" in error
    assert dict(registry.labels("prod")) == {"tier": "silver"}
    assert registry.current.sha256 not in ("", first)


def test_a_reload_reads_the_given_generation_and_a_deleted_file_empties_the_registry(tmp_path: Path) -> None:
    path = tmp_path / REGISTRY_FILE_NAME
    path.write_text(REGISTRY)
    registry = FileClusterRegistry(path)
    generation = tmp_path / "..2026_01_01"
    generation.mkdir()
    (generation / REGISTRY_FILE_NAME).write_text("clusters: {edge-7: {labels: {zone: a}}}\n")

    from_generation = registry.reload(generation / REGISTRY_FILE_NAME)
    labels = dict(registry.labels("edge-7"))
    path.unlink()
    emptied = registry.reload()

    assert from_generation == (ReloadVerdict.ACTIVATED, "")
    assert labels == {"zone": "a"}
    assert emptied == (ReloadVerdict.ACTIVATED, "")
    assert (registry.current.sha256, dict(registry.labels("edge-7"))) == ("", {})


@pytest.mark.parametrize(
    ("hub_id", "cluster_id", "member"),
    [
        pytest.param("", "", ClusterMember("", {}, remote=False), id="unnamed-hub"),
        pytest.param(
            "hub", "", ClusterMember("hub", {"role": "hub"}, remote=False), id="named-hub-by-default"
        ),
        pytest.param(
            "hub", "hub", ClusterMember("hub", {"role": "hub"}, remote=False), id="named-hub-by-name"
        ),
        pytest.param(
            "", "prod-eu-1", ClusterMember("prod-eu-1", {"tier": "gold"}, remote=True), id="registered"
        ),
        pytest.param("hub", "nowhere", ClusterMember("nowhere", {}, remote=True), id="unregistered"),
    ],
)
def test_a_signal_is_from_the_hub_or_a_remote_member_with_the_registrys_labels(
    tmp_path: Path, hub_id: str, cluster_id: str, member: ClusterMember
) -> None:
    path = tmp_path / REGISTRY_FILE_NAME
    path.write_text("clusters: {hub: {labels: {role: hub}}, prod-eu-1: {labels: {tier: gold}}}\n")
    fleet = Fleet(FileClusterRegistry(path), hub_id=hub_id)

    found = fleet.member(cluster_id)

    assert (found.id, dict(found.labels), found.remote) == (member.id, dict(member.labels), member.remote)


def test_without_a_registry_every_named_cluster_is_remote_and_unlabelled() -> None:
    fleet = hub_only()

    assert (fleet.member("").remote, fleet.member("prod").remote, dict(fleet.member("prod").labels)) == (
        False,
        True,
        {},
    )
