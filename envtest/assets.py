"""Builds the control-plane binaries (and OPA, helm, the test node's) from the Go module proxy.

No registry ships kube-apiserver or etcd, and prebuilt downloads are not
reachable, so each tool is compiled in its own throwaway wrapper module with
the machine's `go` and kept in a per-version cache under
`$KUBERNAUT_CACHE` (default `~/.cache/kubernaut-py`). The Go module and build
caches live under the same root, so pointing it at an empty directory proves
the cold path. A cached binary is reused only after its `--version` answers
with the pinned version; a failed build names the step and leaves nothing
half-written in the cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from envtest import versions
from envtest.build_steps import BuildSteps


class AssetBuildError(RuntimeError):
    """A build step failed; the message names the tool and the step."""


_STEPS: Final = BuildSteps("assets", AssetBuildError)


def cache_root() -> Path:
    configured = os.environ.get("KUBERNAUT_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "kubernaut-py"


def control_plane_dir() -> Path:
    """The directory holding kube-apiserver and etcd, usable as KUBEBUILDER_ASSETS."""
    return cache_root() / "assets" / f"k8s-{versions.KUBERNETES}-etcd-{versions.ETCD}"


def tool_dir(name: str, version: str) -> Path:
    return cache_root() / "assets" / f"{name}-{version}"


def _go_env() -> dict[str, str]:
    root = cache_root()
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN="local",
        GOMODCACHE=str(root / "go" / "mod"),
        GOCACHE=str(root / "go" / "build"),
        GOPATH=str(root / "go" / "path"),
        GOFLAGS="-mod=mod",
        CGO_ENABLED="0",
    )
    return env


@dataclass(frozen=True)
class Tool:
    """One binary: where it is cached, how to build it and how to check it."""

    name: str
    version: str
    directory: Path
    version_argv: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.directory / self.name

    def is_cached(self) -> bool:
        if not os.access(self.path, os.X_OK):
            return False
        try:
            answer = subprocess.run(
                [str(self.path), *self.version_argv],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return re.search(rf"\bv?{re.escape(self.version)}\b", answer.stdout + answer.stderr) is not None


KUBE_APISERVER = Tool("kube-apiserver", versions.KUBERNETES, control_plane_dir(), ("--version",))
# The node's binaries: the rest of a one-node cluster, from the same module and cache directory.
KUBE_CONTROLLER_MANAGER = Tool(
    "kube-controller-manager", versions.KUBERNETES, control_plane_dir(), ("--version",)
)
KUBE_SCHEDULER = Tool("kube-scheduler", versions.KUBERNETES, control_plane_dir(), ("--version",))
KUBELET = Tool("kubelet", versions.KUBERNETES, control_plane_dir(), ("--version",))
KUBE_PROXY = Tool("kube-proxy", versions.KUBERNETES, control_plane_dir(), ("--version",))
KUBERNETES_COMMANDS: Final = (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBELET, KUBE_PROXY)
ETCD = Tool("etcd", versions.ETCD, control_plane_dir(), ("--version",))
OPA = Tool("opa", versions.OPA, tool_dir("opa", versions.OPA), ("version",))
HELM = Tool("helm", versions.HELM, tool_dir("helm", versions.HELM), ("version", "--short"))


def _wrapper_module(tool: Tool, go_line: str, requirements: str = "") -> Path:
    workdir = cache_root() / "build" / f"{tool.name}-{tool.version}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / "go.mod").write_text(
        f"module kubernaut.local/build/{tool.name}\n\ngo {go_line}\n{requirements}"
    )
    return workdir


def _go_line_of_toolchain() -> str:
    answer = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return answer.stdout.strip().removeprefix("go")


def _install(tool: Tool, built: Path) -> None:
    """Moves a finished binary into the cache in one rename, so no reader sees half of it."""
    tool.directory.mkdir(parents=True, exist_ok=True)
    staged = tool.directory / f".{tool.name}.partial"
    shutil.copy2(built, staged)
    staged.chmod(0o755)
    os.replace(staged, tool.path)
    if not tool.is_cached():
        tool.path.unlink()
        raise AssetBuildError(f"{tool.name}: built binary does not report version {tool.version}")


def _kubernetes_replaces(tool: Tool, workdir: Path) -> tuple[str, str]:
    """Returns (go line, replace block) derived from k8s.io/kubernetes's own go.mod."""
    info = json.loads(
        _STEPS.run(
            tool.name,
            "fetch k8s.io/kubernetes go.mod",
            ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{versions.KUBERNETES}"],
            cwd=workdir,
            env=_go_env(),
        )
    )
    gomod = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go (\S+)$", gomod, re.MULTILINE)
    staged = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/src/", gomod, re.MULTILINE)
    if not go_line or not staged:
        raise AssetBuildError(f"{tool.name}: could not read the staging replaces of k8s.io/kubernetes")
    staging_version = "v0." + versions.KUBERNETES.split(".", 1)[1]
    replaces = "".join(f"replace {name} => {name} {staging_version}\n" for name in staged)
    return go_line.group(1), replaces


def _build_kubernetes_command(tool: Tool) -> None:
    """Any of k8s.io/kubernetes/cmd/*, stamped with its version like a release build."""
    scratch = _wrapper_module(tool, _go_line_of_toolchain())
    go_line, replaces = _kubernetes_replaces(tool, scratch)
    workdir = _wrapper_module(tool, go_line, replaces)
    version = f"v{versions.KUBERNETES}"
    major, minor, _ = versions.KUBERNETES.split(".")
    stamp = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamp += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    _STEPS.run(
        tool.name,
        "resolve modules (downloads ~2 min cold)",
        ["go", "get", f"k8s.io/kubernetes/cmd/{tool.name}@{version}"],
        cwd=workdir,
        env=_go_env(),
    )
    _STEPS.run(
        tool.name,
        "compile (~3.5 min cold on 2 cores)",
        [
            "go",
            "build",
            "-trimpath",
            "-tags",
            "selinux,notest,grpcnotrace",
            "-ldflags",
            "-s -w " + " ".join(stamp),
            "-o",
            "out",
            f"k8s.io/kubernetes/cmd/{tool.name}",
        ],
        cwd=workdir,
        env=_go_env(),
    )
    _install(tool, workdir / "out")


def go_build(name: str, module: Path, package: str, output: Path, ldflags: str = "") -> None:
    """A static, stripped binary of `package` in the Go module at `module`, with the cache's Go caches."""
    _STEPS.run(
        name,
        "compile",
        ["go", "build", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(), "-o", str(output), package],
        cwd=module,
        env=_go_env(),
    )


def _build_plain(tool: Tool, module: str, package: str, ldflags: str = "") -> None:
    workdir = _wrapper_module(tool, _go_line_of_toolchain())
    _STEPS.run(
        tool.name, "resolve modules", ["go", "get", f"{module}@v{tool.version}"], cwd=workdir, env=_go_env()
    )
    go_build(tool.name, workdir, package, workdir / "out", ldflags)
    _install(tool, workdir / "out")


def _build(tool: Tool) -> None:
    if tool in KUBERNETES_COMMANDS:
        _build_kubernetes_command(tool)
    elif tool is ETCD:
        _build_plain(tool, "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3")
    elif tool is OPA:
        _build_plain(
            tool,
            "github.com/open-policy-agent/opa",
            "github.com/open-policy-agent/opa",
            f"-X github.com/open-policy-agent/opa/v1/version.Version={tool.version}",
        )
    elif tool is HELM:
        _build_plain(
            tool,
            "helm.sh/helm/v3",
            "helm.sh/helm/v3/cmd/helm",
            f"-X helm.sh/helm/v3/internal/version.version=v{tool.version}",
        )
    else:
        raise AssetBuildError(f"no recipe for {tool.name}")


NODE_TOOLS: Final = (KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBELET, KUBE_PROXY)
ALL_TOOLS: Final = (ETCD, KUBE_APISERVER, OPA, HELM, *NODE_TOOLS)


def ensure(tools: Sequence[Tool] = ALL_TOOLS) -> None:
    """Builds whichever of `tools` is missing from the cache; reuses the rest."""
    if shutil.which("go") is None:
        raise AssetBuildError(
            "the 'go' command is not on PATH; it is needed to build " + ", ".join(t.name for t in tools)
        )
    for tool in tools:
        if tool.is_cached():
            _STEPS.progress(f"{tool.name} {tool.version}: cached at {tool.path}")
            continue
        started = time.monotonic()
        _STEPS.progress(f"{tool.name} {tool.version}: not cached, building")
        _build(tool)
        _STEPS.progress(
            f"{tool.name} {tool.version}: ready in {time.monotonic() - started:.0f}s at {tool.path}"
        )
        shutil.rmtree(cache_root() / "build" / f"{tool.name}-{tool.version}", ignore_errors=True)
