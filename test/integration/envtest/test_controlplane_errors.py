"""Bad input makes the control plane fail with a message that says what to fix, and leaves nothing running.

Every failure that input checks can catch happens before any server or temp
directory is made: the test process gains no child process and the temp
directory (redirected into tmp_path) stays empty.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from envtest import ControlPlane, ControlPlaneError, CrdFileError
from test.integration.envtest.processes import children

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ControlPlane makes its temp directories during the test (and only this test)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.delenv("USE_EXISTING_CLUSTER", raising=False)
    return root


def _envtest_dirs(root: Path) -> list[str]:
    """The harness's temp dirs under `root` (the Python client's own cert temp files aside)."""
    return sorted(entry.name for entry in root.iterdir() if entry.name.startswith("envtest-"))


@pytest.fixture
def nothing_started(temp_root: Path) -> Iterator[None]:
    """Fails the test if it leaves a new child process or a temp directory behind."""
    before = children(os.getpid())
    yield
    assert {str(p) for p in children(os.getpid()) - before} == set()
    assert _envtest_dirs(temp_root) == []


@pytest.mark.parametrize(
    ("variable", "value", "named_path"),
    [
        pytest.param("TEST_ASSET_ETCD", "/nonexistent/etcd", "/nonexistent/etcd", id="etcd-env"),
        pytest.param(
            "TEST_ASSET_KUBE_APISERVER", "/nonexistent/kas", "/nonexistent/kas", id="kube-apiserver-env"
        ),
        pytest.param("KUBEBUILDER_ASSETS", "/nonexistent", "/nonexistent/etcd", id="kubebuilder-assets"),
    ],
)
@pytest.mark.usefixtures("nothing_started")
def test_missing_binary_names_the_path_and_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named_path: str
) -> None:
    for name in ("TEST_ASSET_ETCD", "TEST_ASSET_KUBE_APISERVER", "KUBEBUILDER_ASSETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ControlPlaneError) as failed:
        ControlPlane(crd_dirs=[CRDS]).start()
    message = str(failed.value)
    assert f"not found at {named_path} (from {variable})" in message
    assert "python -m envtest assets" in message


@pytest.mark.usefixtures("nothing_started")
def test_apiserver_port_in_use_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ControlPlaneError, match=rf"\bport {port}\b.*kube-apiserver.*already in use"):
            ControlPlane(apiserver_port=port).start()


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-a-crd}\n"
BAD_CRD_FILES = [
    pytest.param("broken.yaml", "kind: [unclosed\n", "not valid YAML", id="not-yaml"),
    pytest.param(
        "configmap.yaml", CONFIG_MAP, "not a CustomResourceDefinition (kind: ConfigMap)", id="not-crd"
    ),
    pytest.param("list.yml", "- a\n- b\n", "not a CustomResourceDefinition (kind: list)", id="yaml-list"),
    pytest.param(
        "incomplete.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x.y.z}\n",
        "CustomResourceDefinition lacks field 'spec'",
        id="crd-without-spec",
    ),
]


def _crd_dir_with(tmp_path: Path, file_name: str, content: str) -> Path:
    """A copy of the project's CRDs plus one bad file (and a README, which must be ignored)."""
    directory = tmp_path / "crds"
    directory.mkdir()
    for crd in CRDS.glob("*.yaml"):
        (directory / crd.name).write_text(crd.read_text())
    (directory / "README.md").write_text("# not a manifest: ignored, as envtest ignores it\n")
    (directory / file_name).write_text(content)
    return directory


@pytest.mark.parametrize(("file_name", "content", "reason"), BAD_CRD_FILES)
@pytest.mark.usefixtures("nothing_started")
def test_bad_crd_file_is_named_with_the_reason_before_anything_starts(
    tmp_path: Path, file_name: str, content: str, reason: str
) -> None:
    directory = _crd_dir_with(tmp_path, file_name, content)
    with pytest.raises(CrdFileError) as failed:
        ControlPlane(crd_dirs=[directory]).start()
    assert str(failed.value).startswith(f"{directory / file_name}: {reason}")


def test_crd_dir_that_does_not_exist_is_named(tmp_path: Path, temp_root: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(CrdFileError, match=re.escape(f"{missing}: not a directory of CRD files")):
        ControlPlane(crd_dirs=[missing]).start()


def test_cli_up_with_bad_crd_dir_exits_1_with_the_error_on_stderr(tmp_path: Path) -> None:
    directory = _crd_dir_with(tmp_path, "configmap.yaml", CONFIG_MAP)
    kubeconfig = tmp_path / "kubeconfig"
    env = {k: v for k, v in os.environ.items() if k != "USE_EXISTING_CLUSTER"}
    answer = subprocess.run(
        [sys.executable, "-m", "envtest", "up", "--kubeconfig", str(kubeconfig), "--crds", str(directory)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 1, answer
    assert answer.stderr == (
        f"error: {directory / 'configmap.yaml'}: not a CustomResourceDefinition (kind: ConfigMap)\n"
    )
    assert answer.stdout == ""
    assert not kubeconfig.exists()


def test_start_timeout_names_the_server_and_keeps_its_log(temp_root: Path) -> None:
    before = children(os.getpid())
    with pytest.raises(ControlPlaneError) as failed:
        ControlPlane(start_timeout=0.2).start()
    message = str(failed.value)
    print(message)

    shape = re.match(
        r"(?P<server>etcd|kube-apiserver) did not (become healthy|become ready|create namespace 'default') "
        r"within 0\.2s; its log is kept at (?P<log>\S+); last lines:\n(?P<tail>.*)\Z",
        message,
        re.DOTALL,
    )
    assert shape, message
    log = Path(shape["log"])
    assert log.name == f"{shape['server']}.log"
    assert log.is_file(), f"the log named in the error is gone: {log}"
    kept_lines = log.read_text().splitlines()
    assert shape["tail"] == "\n".join(kept_lines[-25:])

    # Nothing is left running, and only the kept log outlives the temp directory.
    assert {str(p) for p in children(os.getpid()) - before} == set()
    assert _envtest_dirs(temp_root) == [log.parent.name]
    assert log.parent.name.startswith("envtest-failed-logs-")


MISNAMED_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object}}
"""


def test_crd_the_api_server_rejects_is_named_and_the_servers_are_stopped(
    tmp_path: Path, temp_root: Path
) -> None:
    """A CRD that reads fine but is refused on install: the error names it, and start() cleans up."""
    directory = tmp_path / "crds"
    directory.mkdir()
    (directory / "widget.yaml").write_text(MISNAMED_CRD)
    before = children(os.getpid())
    with pytest.raises(CrdFileError) as failed:
        ControlPlane(crd_dirs=[directory], start_timeout=120).start()
    message = str(failed.value)
    assert message.startswith(f"{directory / 'widget.yaml'}: rejected by the API server"), message
    assert "metadata.name" in message and "spec.names.plural" in message, message
    assert {str(p) for p in children(os.getpid()) - before} == set()
    assert _envtest_dirs(temp_root) == []
