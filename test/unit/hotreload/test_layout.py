"""Which directory events count, where one ConfigMap generation is read from, and which Pod gets Events."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.hotreload import (
    ControllerPod,
    controller_pod_from_env,
    is_generation_swap,
    is_policy_change,
    missing_policy_files,
    policy_source_dir,
)
from controller.policies import LEGACY_FILE_NAMES, POLICY_FILE_NAME


@pytest.mark.parametrize(
    ("path", "counts"),
    [
        pytest.param("/etc/policies/policy.rego", True, id="policy-file"),
        pytest.param("/etc/policies/environment.rego", False, id="four-file-layout-file"),
        pytest.param("/etc/policies/..data", True, id="kubelet-data-link"),
        pytest.param("/etc/policies/..data_tmp", True, id="kubelet-temporary-link"),
        pytest.param("/etc/policies/..2026_11_24_10_00_00.123456789", True, id="kubelet-generation"),
        pytest.param(b"/etc/policies/policy.rego", True, id="bytes-path"),
        pytest.param("/etc/policies/policy_test.rego", False, id="rego-test-file"),
        pytest.param("/etc/policies/.policy.rego.swp", False, id="editor-swap-file"),
        pytest.param("/etc/policies/README.md", False, id="other-file"),
        pytest.param("/etc/policies", False, id="the-directory-itself"),
        pytest.param("/etc/policies/..", False, id="parent-entry"),
    ],
)
def test_which_events_trigger_a_reload(path: str, counts: bool) -> None:
    assert is_policy_change(path) is counts


@pytest.mark.parametrize(
    ("event_type", "destination", "swap"),
    [
        pytest.param("moved", "/etc/policies/..data", True, id="data-tmp-renamed-over-data"),
        pytest.param("moved", b"/etc/policies/..data", True, id="bytes-path"),
        pytest.param("moved", "/etc/policies/..data_tmp", False, id="renamed-to-data-tmp"),
        pytest.param("created", "/etc/policies/..data", False, id="data-created"),
        pytest.param("moved", "/etc/policies/policy.rego", False, id="editor-rename-of-the-policy"),
        pytest.param("moved", "", False, id="no-destination"),
    ],
)
def test_only_the_kubelet_swap_of_data_is_read_at_once(event_type: str, destination: str, swap: bool) -> None:
    assert is_generation_swap(event_type, destination) is swap


def write_generation(root: Path, name: str, marker: str) -> Path:
    generation = root / name
    generation.mkdir()
    (generation / POLICY_FILE_NAME).write_text(f"package signalprocessing\n# {marker}\n")
    return generation


def kubelet_layout(root: Path, generation: str = "..2026_11_24_10_00_00.1") -> Path:
    write_generation(root, generation, "first")
    (root / "..data").symlink_to(generation)
    (root / POLICY_FILE_NAME).symlink_to(Path("..data") / POLICY_FILE_NAME)
    return root


def test_a_plain_directory_is_read_as_it_is(tmp_path: Path) -> None:
    write_generation(tmp_path, "plain", "x")
    assert policy_source_dir(tmp_path / "plain") == tmp_path / "plain"


def test_the_kubelet_layout_is_read_from_the_generation_data_points_to(tmp_path: Path) -> None:
    kubelet_layout(tmp_path)
    assert policy_source_dir(tmp_path).resolve() == (tmp_path / "..2026_11_24_10_00_00.1").resolve()


def test_after_a_swap_the_new_generation_is_read(tmp_path: Path) -> None:
    kubelet_layout(tmp_path)
    write_generation(tmp_path, "..2026_11_24_10_05_00.2", "second")
    (tmp_path / "..data_tmp").symlink_to("..2026_11_24_10_05_00.2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    source = policy_source_dir(tmp_path)

    assert source.name == "..2026_11_24_10_05_00.2"
    assert "second" in (source / POLICY_FILE_NAME).read_text()


def test_a_policy_file_that_bypasses_data_makes_the_directory_the_source(tmp_path: Path) -> None:
    kubelet_layout(tmp_path)
    (tmp_path / POLICY_FILE_NAME).unlink()
    (tmp_path / POLICY_FILE_NAME).write_text("package signalprocessing\n")
    assert policy_source_dir(tmp_path) == tmp_path


def test_a_dangling_link_is_missing(tmp_path: Path) -> None:
    kubelet_layout(tmp_path)
    assert missing_policy_files(tmp_path) == []
    (tmp_path / "..2026_11_24_10_00_00.1" / POLICY_FILE_NAME).unlink()  # the link now dangles
    assert missing_policy_files(tmp_path) == [POLICY_FILE_NAME]


def test_the_four_file_layout_is_missing_policy_rego(tmp_path: Path) -> None:
    for name in LEGACY_FILE_NAMES:
        (tmp_path / name).write_text("package signalprocessing.x\n")
    assert missing_policy_files(tmp_path) == [POLICY_FILE_NAME]


@pytest.mark.parametrize(
    ("environ", "pod"),
    [
        pytest.param(
            {"POD_NAME": "sp-0", "POD_NAMESPACE": "kubernaut"}, ControllerPod("kubernaut", "sp-0"), id="both"
        ),
        pytest.param({"POD_NAME": "sp-0"}, None, id="no-namespace"),
        pytest.param({"POD_NAMESPACE": "kubernaut"}, None, id="no-name"),
        pytest.param({"POD_NAME": " ", "POD_NAMESPACE": "kubernaut"}, None, id="blank-name"),
        pytest.param({}, None, id="neither"),
    ],
)
def test_events_go_to_the_controller_pod_named_by_the_downward_api(
    environ: dict[str, str], pod: ControllerPod | None
) -> None:
    assert controller_pod_from_env(environ) == pod
