"""The test cluster's images: built from the project's files once, then taken from the cache.

The first run on a machine builds them (about 90 s: debootstrap, pip from PyPI); every later run with
the same sources finds the archives by their content key and builds nothing.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from envtest import images

_REPOSITORY = Path(__file__).resolve().parents[3]


def _named_reference(archive: Path) -> str:
    """The name `ctr images import` gives the archive's image: its index's ref.name annotation."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None, f"{archive} has no index.json"
        index = json.load(member)
    [manifest] = index["manifests"]
    return str(manifest["annotations"]["org.opencontainers.image.ref.name"])


def test_images_are_built_once_then_taken_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = images.project_images()
    for archive, name in zip(built.all, ("signalprocessing", "opa", "pause"), strict=True):
        assert archive.path.is_file()
        assert archive.path.parent == images.images_dir()
        assert archive.reference == f"localhost/kubernaut/{name}:{archive.tag}"
        assert archive.repository == f"localhost/kubernaut/{name}"
        assert _named_reference(archive.path) == archive.reference
    built_at = {archive.path: archive.path.stat().st_mtime_ns for archive in built.all}
    capsys.readouterr()

    def refuse(recipe: images._Recipe) -> None:
        raise AssertionError(f"project_images() built the cached {recipe.name} again")

    monkeypatch.setattr(images, "_build", refuse)
    again = images.project_images()

    assert again == built
    assert {archive.path: archive.path.stat().st_mtime_ns for archive in again.all} == built_at
    progress = capsys.readouterr().err
    for archive in built.all:
        assert f"{archive.path.name.split('-')[0]}: cached at {archive.path}" in progress


def test_application_key_follows_what_the_containerfile_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("pyproject.toml", "deploy/Containerfile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_REPOSITORY / name, tmp_path / name)
    for name in ("controller", "datastorage", "policies"):
        shutil.copytree(_REPOSITORY / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(images, "_REPOSITORY", tmp_path)
    monkeypatch.setattr(images, "CONTAINERFILE", tmp_path / "deploy" / "Containerfile")
    original = images._application_recipe().key

    (tmp_path / "controller" / "__pycache__").mkdir()
    (tmp_path / "controller" / "__pycache__" / "pipeline.cpython-311.pyc").write_bytes(b"bytecode")
    (tmp_path / "README.md").write_text("not copied into the image")
    assert images._application_recipe().key == original, "bytecode or an uncopied file changed the key"

    pipeline = tmp_path / "controller" / "pipeline.py"
    pipeline.write_text(pipeline.read_text() + "\n# changed\n")
    changed = images._application_recipe().key
    assert changed != original, "a changed controller source kept the key"

    (tmp_path / "policies" / "extra.rego").write_text("package extra\n")
    assert images._application_recipe().key != changed, "a new policy kept the key"
