"""The asset cache: a cached binary is reused without building, one with the wrong version is not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from envtest import assets, versions


def test_cached_etcd_is_reused_without_building(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(tool: assets.Tool) -> None:
        raise AssertionError(f"ensure() tried to build the cached {tool.name}")

    monkeypatch.setattr(assets, "_build", refuse)
    began = time.monotonic()
    assets.ensure([assets.ETCD])
    took = time.monotonic() - began

    progress = capsys.readouterr().err
    assert f"etcd {versions.ETCD}: cached at {assets.ETCD.path}" in progress
    assert "building" not in progress
    print(f"cached etcd checked in {took:.2f}s")
    assert took < 15, f"a cache hit took {took:.1f}s"


def _fake_etcd(directory: Path, answer: str) -> Path:
    """An `etcd` that answers `--version` (and nothing else) with `answer`."""
    fake = directory / "etcd"
    fake.write_text(f'#!/bin/sh\n[ "$1" = --version ] && printf "%s\\n" "{answer}"\nexit 0\n')
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize(
    ("answer", "cached"),
    [
        pytest.param("etcd Version: 9.9.9\nGit SHA: GitNotFound", True, id="pinned-version"),
        pytest.param(f"etcd Version: {versions.ETCD}", False, id="other-version"),
        pytest.param("etcd Version: 9.9.91", False, id="longer-version"),
        pytest.param("etcd Version: 19.9.9", False, id="version-with-prefix"),
        pytest.param("", False, id="no-answer"),
    ],
)
def test_cached_binary_counts_only_with_the_pinned_version(tmp_path: Path, answer: str, cached: bool) -> None:
    _fake_etcd(tmp_path, answer)
    assert assets.Tool("etcd", "9.9.9", tmp_path, ("--version",)).is_cached() is cached


def test_binary_with_wrong_version_is_rebuilt_and_non_executable_one_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBERNAUT_CACHE", str(tmp_path / "cache"))
    tool = assets.Tool("etcd", "9.9.9", tmp_path, ("--version",))
    fake = _fake_etcd(tmp_path, "etcd Version: 3.6.8")
    built: list[assets.Tool] = []
    monkeypatch.setattr(assets, "_build", built.append)

    assets.ensure([tool])

    assert built == [tool]
    assert "etcd 9.9.9: not cached, building" in capsys.readouterr().err

    _fake_etcd(tmp_path, "etcd Version: 9.9.9")
    fake.chmod(0o644)
    assert not tool.is_cached()
