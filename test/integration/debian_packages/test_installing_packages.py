"""Installing Debian packages: nothing to do when all are there, apt-get with services forbidden otherwise.

These specs read this machine's dpkg database but install nothing: where
apt-get would run, a recorder stands in for it, and the `policy-rc.d` goes to
a temporary path instead of /usr/sbin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import debian_packages
from envtest.node import NODE_PACKAGES

REPOSITORY = Path(__file__).resolve().parents[3]
# Installed wherever the project runs: dpkg itself, and coreutils, which every Debian machine has.
PRESENT = ("dpkg", "coreutils")
ABSENT = "kubernaut-no-such-package"


def test_missing_packages_are_those_dpkg_does_not_have_installed_in_the_order_asked() -> None:
    assert debian_packages.missing_packages([ABSENT, *PRESENT, f"{ABSENT}-too"]) == [ABSENT, f"{ABSENT}-too"]
    assert debian_packages.missing_packages([f"{PRESENT[0]}:{_architecture()}"]) == []
    assert debian_packages.missing_packages([]) == []


def test_with_every_package_installed_install_says_so_in_one_line_and_needs_no_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    said: list[str] = []
    assert debian_packages.install(PRESENT, said.append) == []
    assert said == [f"Debian packages {' '.join(PRESENT)} are installed; nothing to do"]


def test_installing_a_missing_package_needs_root_and_names_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(debian_packages, "_apt", lambda argv, environment: pytest.fail(f"ran {argv}"))
    with pytest.raises(debian_packages.DebianError, match=f"installing {ABSENT} needs root"):
        debian_packages.install([*PRESENT, ABSENT], lambda _: None)


def test_apt_get_updates_then_installs_the_missing_ones_only_with_service_starts_forbidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = tmp_path / "policy-rc.d"
    monkeypatch.setattr(debian_packages, "_POLICY_RC_D", policy)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    # What apt-get was run with, and what the policy-rc.d in place then answers (101: forbidden).
    runs: list[tuple[list[str], str | None, int]] = []

    def record(argv: list[str], environment: dict[str, str]) -> None:
        policy_answer = subprocess.run([str(policy), "containerd", "start"], check=False).returncode
        runs.append((argv, environment.get("DEBIAN_FRONTEND"), policy_answer))

    monkeypatch.setattr(debian_packages, "_apt", record)
    # The recorder installs nothing, so the package is still missing afterwards, which is an error.
    with pytest.raises(debian_packages.DebianError, match=f"{ABSENT} is still not installed"):
        debian_packages.install([*PRESENT, ABSENT], lambda _: None)
    update, install = runs
    assert update[0][:2] == ["apt-get", "update"]
    assert install[0][:2] == ["apt-get", "install"]
    assert install[0][-1] == ABSENT and not set(PRESENT) & set(install[0])
    assert {"-y", "--no-install-recommends", "Dpkg::Options::=--force-confold"} <= set(install[0])
    assert all(frontend == "noninteractive" for _, frontend, _ in runs)
    assert all(policy_answer == 101 for _, _, policy_answer in runs)
    assert not policy.exists(), "the policy-rc.d written for the install outlives it"


def test_a_policy_rc_d_the_machine_has_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    monkeypatch.setattr(debian_packages, "_POLICY_RC_D", policy)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(debian_packages, "_apt", lambda argv, environment: None)
    with pytest.raises(debian_packages.DebianError, match="still not installed"):
        debian_packages.install([ABSENT], lambda _: None)
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_the_command_line_needs_at_least_one_package() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "debian_packages", "install"], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "PACKAGE" in run.stderr


def test_make_servers_installs_the_nodes_packages_too_and_here_finds_nothing_to_do() -> None:
    # -o: the virtualenv counts as up to date; making it is not this spec's business.
    run = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "servers"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    said = run.stdout.splitlines()
    assert "PostgreSQL and Redis are installed; nothing to do" in said
    assert f"Debian packages {' '.join(NODE_PACKAGES)} are installed; nothing to do" in said
    assert "debootstrap" in NODE_PACKAGES


def _architecture() -> str:
    printed = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    return printed.stdout.strip()
