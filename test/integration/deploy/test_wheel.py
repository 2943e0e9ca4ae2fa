"""The image's build stage, done here: what the wheel (and so the image) carries.

`deploy/Containerfile` copies a few paths of the repository into its build
stage and installs them with pip. This spec copies the same paths (read from
the Containerfile's build stage) into a temporary directory and builds the
wheel from them, so it checks what the image really gets: the two services
and their package data, and none of the test and dev tooling.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
CONTAINERFILE = REPOSITORY / "deploy" / "Containerfile"
DEV_TOOLING = {"envtest", "localservers", "debian_packages", "processes", "devstack", "demo", "bench", "test"}


def build_stage_sources() -> list[str]:
    """The sources of the COPY lines of the first stage (between the first and the second FROM)."""
    lines = CONTAINERFILE.read_text().splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("FROM ")]
    build_stage = lines[starts[0] : starts[1]]
    copies = [line.split()[1:-1] for line in build_stage if line.startswith("COPY ")]
    return [source for sources in copies for source in sources]


def test_the_build_stage_copies_the_two_services_only() -> None:
    assert sorted(build_stage_sources()) == ["controller/", "datastorage/", "pyproject.toml"]


def test_the_wheel_holds_the_services_and_their_migrations_and_no_dev_tooling(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for source in build_stage_sources():
        origin = REPOSITORY / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, context / source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(context),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"controller", "datastorage"}
    assert not packages & DEV_TOOLING
    migrations = sorted(path.name for path in (REPOSITORY / "datastorage" / "migrations").glob("*.sql"))
    assert migrations, "no migrations in the repository: the comparison below would be empty"
    shipped = sorted(
        name.rsplit("/", 1)[1]
        for name in names
        if name.startswith("datastorage/migrations/") and name.endswith(".sql")
    )
    assert shipped == migrations
