"""Builds the container images a one-node test cluster runs, from the project's own files.

No registry is reachable and no Docker engine runs here, so the images are
built with buildah, and their base comes from Debian's packages: debootstrap
makes a Debian bookworm root filesystem with python3, which stands in for
python:3.11-slim; deploy/Containerfile builds the application on it; and
deploy/opa.Containerfile wraps the OPA binary that envtest.assets builds.

Each image is kept as an OCI archive under `<cache>/images` (the cache of
envtest.assets), named by a sha256 over everything the image is made of, so a
second run with nothing changed builds nothing. `ctr images import` loads an
archive under exactly its `reference`. A build holds a file lock per image
(two runs may share the cache), runs buildah in a private store inside a
scratch directory that is removed afterwards, and installs the archive with
one rename: no reader ever sees half of one, and nothing of a build outlives
it but the archive (and buildah's blob-info cache under /var/lib/containers,
which no buildah option moves).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Final

from filelock import FileLock

from envtest import assets
from envtest.build_steps import BuildSteps
from envtest.node import NodeImages

# `localhost/` keeps the name exactly as it is: the CRI resolves a name without a registry to docker.io.
REGISTRY: Final = "localhost/kubernaut"
_REPOSITORY: Final = Path(__file__).resolve().parent.parent
CONTAINERFILE: Final = _REPOSITORY / "deploy" / "Containerfile"
OPA_CONTAINERFILE: Final = _REPOSITORY / "deploy" / "opa.Containerfile"
PAUSE_SOURCE: Final = Path(__file__).resolve().parent / "pause"
# Part of every content key: bump it when a change here builds different images from the same inputs.
_RECIPE: Final = "1"
# Hex digits of the content key in a tag and an archive's name, as short image ids are.
_KEY_DIGITS: Final = 12
# Archives kept per image; older ones go when a new one is built (and are rebuilt if ever needed again).
_KEPT_ARCHIVES: Final = 3

# The base: what debootstrap installs, and what the one layer leaves out. APT's package cache and lists
# go (apt-get update brings the lists back), so do logs, manuals and translations (as in Debian's -slim
# images), and what a container runtime provides at run time: /dev's nodes, the host's name and resolver.
_SUITE: Final = "bookworm"
_VARIANT: Final = "minbase"
_BASE_PACKAGES: Final = ("python3", "python3-venv", "ca-certificates")
_DEFAULT_MIRROR: Final = "http://deb.debian.org/debian"
_BASE_REMOVED: Final = (
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/lib/apt/lists/*",
    "var/lib/dpkg/*-old",
    "var/log/*.log",
    "var/log/apt/*",
    "tmp/*",
    "dev/*",
    "etc/hostname",
    "usr/share/man/*",
    "usr/share/info/*",
)
_BASE_CONTAINERFILE: Final = 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n'

# Left out of the application's build context (buildah's --ignorefile) and so of its content key:
# bytecode that running the tests leaves in the source tree and that pip never puts in the wheel.
_CONTEXT_IGNORE: Final = "**/__pycache__\n**/*.pyc\n"

# Every build: the bases are in the private store already (or scratch), so no registry is asked; one
# layer per stage, as nothing could reuse intermediate layers of a store that lives for one build;
# RUN steps share the machine's network (pip reaches PyPI as the machine does, and no CNI bridge or
# IPAM state is made); runc isolates them (--isolation chroot works here too).
_BUILD_FLAGS: Final = ("--pull=never", "--layers=false", "--network=host", "--isolation=oci")
# Tried in order: overlay is the faster (the application builds in ~26 s against ~29 s on vfs, with
# a smaller store); vfs, plain copies, works wherever overlay mounts do not.
_STORAGE_DRIVERS: Final = ("overlay", "vfs")
# Debian's system bundle, which Debian's pip (the base's) reads.
_IMAGE_CA_BUNDLE: Final = "/etc/ssl/certs/ca-certificates.crt"
# The annotation of an OCI archive's index that names an image; `ctr images import` takes it as it is.
_REF_NAME: Final = "org.opencontainers.image.ref.name"


class ImageBuildError(assets.AssetBuildError):
    """An image build failed; the message names the image and the step."""


@dataclass(frozen=True)
class ImageArchive:
    """A built image: the name containerd knows it by after import, and its OCI archive in the cache."""

    reference: str
    path: Path

    @property
    def repository(self) -> str:
        """The reference without its tag: a chart's `image.repository`."""
        return self.reference.rpartition(":")[0]

    @property
    def tag(self) -> str:
        """A chart's `image.tag`: the first digits of the image's content key."""
        return self.reference.rpartition(":")[2]


def images_dir() -> Path:
    return assets.cache_root() / "images"


_STEPS: Final = BuildSteps("images", ImageBuildError, noun="image ")


def _require(image: str, command: str, package: str) -> None:
    if shutil.which(command) is None:
        raise ImageBuildError(
            f"building image {image} needs '{command}', which is not on PATH: "
            f"install Debian's {package} package (apt-get install {package})"
        )


# --- content keys -----------------------------------------------------------------------------------


def _content_key(parts: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over named parts; every name and content is length-prefixed, so no two lists collide."""
    digest = hashlib.sha256()
    for name, content in parts:
        for field in (name.encode(), content):
            digest.update(len(field).to_bytes(8, "big"))
            digest.update(field)
    return digest.hexdigest()


def _copied_sources(containerfile: str) -> list[str]:
    """The context paths and globs that a Containerfile's COPY and ADD instructions read."""
    sources: list[str] = []
    for line in containerfile.replace("\\\n", " ").splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if any(word.startswith("--from") for word in words[1:]):
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if arguments and arguments[0].startswith("["):
            raise ImageBuildError(f"cannot key the image on {line.strip()!r}: use COPY's shell form")
        sources += arguments[:-1]
    return sources


def _is_ignored(relative: PurePath) -> bool:
    """Whether _CONTEXT_IGNORE leaves this context path out of the build."""
    return "__pycache__" in relative.parts or relative.suffix == ".pyc"


def _context_files(sources: Iterable[str]) -> list[Path]:
    """Every file of the build context that the sources name, directories walked, in a stable order."""
    files: set[Path] = set()
    for source in sources:
        matches = sorted(_REPOSITORY.glob(source.rstrip("/")))
        if not matches:
            raise ImageBuildError(f"{CONTAINERFILE} copies {source}, which is not in {_REPOSITORY}")
        for match in matches:
            if not match.is_dir() or match.is_symlink():
                files.add(match)
                continue
            for directory, _, names in os.walk(match):
                files.update(Path(directory, name) for name in names)
    return sorted(path for path in files if not _is_ignored(path.relative_to(_REPOSITORY)))


def _file_part(path: Path) -> tuple[str, bytes]:
    relative = path.relative_to(_REPOSITORY).as_posix()
    if path.is_symlink():
        return f"{relative} -> ", os.readlink(path).encode()
    executable = " x" if os.access(path, os.X_OK) else ""
    return f"{relative}{executable}", path.read_bytes()


# --- scratch directories and private buildah stores -------------------------------------------------


def _mounts_under(directory: Path) -> list[Path]:
    """Mount points inside `directory`, deepest first (a killed debootstrap or buildah leaves some)."""
    points: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        escaped = line.split()[4]
        point = Path(re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), escaped))
        if point.is_relative_to(directory):
            points.append(point)
    return sorted(points, key=lambda point: len(point.parts), reverse=True)


def _remove_tree(directory: Path) -> None:
    for point in _mounts_under(directory):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
    if left := _mounts_under(directory):
        raise ImageBuildError(f"cannot remove {directory}: still mounted there: {left}")
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _workspace(image: str) -> Iterator[Path]:
    """A build's scratch directory, beside the archives so that one rename installs one.

    Entered with the image's lock held: a directory already there was left by a killed build, and goes.
    """
    workspace = images_dir() / "build" / image
    if workspace.exists():
        _STEPS.progress(f"{image}: removing the stale build directory {workspace}")
        _remove_tree(workspace)
    (workspace / "tmp").mkdir(parents=True)
    try:
        yield workspace
    finally:
        _remove_tree(workspace)


@dataclass(frozen=True)
class _Store:
    """A buildah store of one build, in its workspace, with runc's and CNI's state beside it."""

    image: str
    workspace: Path
    driver: str

    @classmethod
    def open(cls, image: str, workspace: Path) -> _Store:
        """The first storage driver of _STORAGE_DRIVERS that buildah can use here."""
        answers: list[str] = []
        for driver in _STORAGE_DRIVERS:
            store = cls(image, workspace, driver)
            probe = subprocess.run(
                store.argv("info"), env=store.env(), capture_output=True, text=True, check=False
            )
            if probe.returncode == 0:
                _STEPS.progress(f"{image}: buildah store with the {driver} driver in {store.root.parent}")
                return store
            answers.append(f"{driver}: {probe.stderr.strip()}")
        raise ImageBuildError(f"building image {image}: buildah can use no storage driver: {answers}")

    @property
    def root(self) -> Path:
        return self.workspace / "storage" / self.driver / "root"

    def argv(self, *arguments: str | Path) -> list[str | Path]:
        runroot = self.root.parent / "runroot"
        return [
            "buildah",
            "--root",
            self.root,
            "--runroot",
            runroot,
            "--storage-driver",
            self.driver,
            *arguments,
        ]

    def env(self) -> dict[str, str]:
        # Buildah stages big blobs in TMPDIR (/var/tmp by default); and its network set-up, even for a
        # pull or a push, writes a lock into the CNI configuration directory (/etc/cni/net.d by
        # default), which a containers.conf of the build's own moves into the workspace.
        settings = self.workspace / "containers.conf"
        if not settings.exists():
            settings.write_text(f'[network]\nnetwork_config_dir = "{self.workspace / "cni"}"\n')
        return {**os.environ, "TMPDIR": str(self.workspace / "tmp"), "CONTAINERS_CONF": str(settings)}

    def run(self, step: str, *arguments: str | Path) -> str:
        return _STEPS.run(self.image, step, self.argv(*arguments), env=self.env())

    def build(self, step: str, *arguments: str | Path) -> str:
        # runc keeps its containers' state in the workspace too, not in /run/runc.
        private_runc = f"root={self.workspace / 'runc'}"
        return self.run(step, "build", *_BUILD_FLAGS, "--runtime-flag", private_runc, *arguments)


# --- the images -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipe:
    """One image: its name, its content key, and how to build it as `reference` into a store."""

    name: str
    key: str
    build: Callable[[_Store, Path, str], None]

    @property
    def archive(self) -> ImageArchive:
        short = self.key[:_KEY_DIGITS]
        return ImageArchive(f"{REGISTRY}/{self.name}:{short}", images_dir() / f"{self.name}-{short}.oci.tar")


def _debian_mirror() -> str:
    """The machine's APT mirror for the base's suite (deb822 sources first), else Debian's own."""
    sources = Path("/etc/apt/sources.list.d")
    for file in sorted(sources.glob("*.sources")):
        for stanza in file.read_text().split("\n\n"):
            fields: dict[str, list[str]] = {}
            for line in stanza.splitlines():
                if line.startswith(("#", " ", "\t")) or ":" not in line:
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and _SUITE in fields.get("suites", []) and fields.get("uris"):
                return fields["uris"][0]
    for file in (Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))):
        lines = file.read_text().splitlines() if file.is_file() else []
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line.partition("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == _SUITE:
                return words[1]
    return _DEFAULT_MIRROR


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _slim_rootfs(rootfs: Path) -> None:
    for pattern in _BASE_REMOVED:
        for path in rootfs.glob(pattern):
            _remove(path)
    # Of the documentation, only the licences stay; of the translations, only the alias table.
    documentation = rootfs / "usr/share/doc"
    for walked, subdirectories, names in os.walk(documentation, topdown=False):
        directory = Path(walked)
        linked = [name for name in subdirectories if (directory / name).is_symlink()]
        for name in [*names, *linked]:
            if name != "copyright":
                (directory / name).unlink()
        if directory != documentation and not any(directory.iterdir()):
            directory.rmdir()
    for path in (rootfs / "usr/share/locale").iterdir():
        if path.name != "locale.alias":
            _remove(path)
    resolver = rootfs / "etc/resolv.conf"
    resolver.unlink(missing_ok=True)
    resolver.write_text("")


def _base_recipe() -> _Recipe:
    name = "python-base"
    key = _content_key(
        [
            ("recipe", _RECIPE.encode()),
            ("debootstrap", f"--variant={_VARIANT} {_SUITE} {','.join(_BASE_PACKAGES)}".encode()),
            ("removed", "\n".join(_BASE_REMOVED).encode()),
            ("Containerfile", _BASE_CONTAINERFILE.encode()),
        ]
    )

    def build(store: _Store, workspace: Path, reference: str) -> None:
        _require(name, "debootstrap", "debootstrap")
        rootfs, context = workspace / "rootfs", workspace / "context"
        mirror = _debian_mirror()
        _STEPS.run(
            name,
            f"debootstrap {_SUITE} from {mirror} (~40 s)",
            [
                "debootstrap",
                f"--variant={_VARIANT}",
                f"--include={','.join(_BASE_PACKAGES)}",
                _SUITE,
                rootfs,
                mirror,
            ],
        )
        _slim_rootfs(rootfs)
        context.mkdir()
        _STEPS.run(
            name,
            "pack the root filesystem",
            ["tar", "--numeric-owner", "-C", rootfs, "-cf", context / "rootfs.tar", "."],
        )
        _remove_tree(rootfs)
        (context / "Containerfile").write_text(_BASE_CONTAINERFILE)
        store.build("buildah build", "-f", context / "Containerfile", "-t", reference, context)

    return _Recipe(name, key, build)


def _machine_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip trusts (PIP_CERT, else the system's), if there is one."""
    for candidate in (os.environ.get("PIP_CERT"), _IMAGE_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _application_recipe() -> _Recipe:
    base = _base_recipe()
    containerfile = CONTAINERFILE.read_bytes()
    files = _context_files(_copied_sources(containerfile.decode()))
    key = _content_key(
        [
            ("recipe", _RECIPE.encode()),
            ("base", base.key.encode()),
            ("Containerfile", containerfile),
            ("ignore", _CONTEXT_IGNORE.encode()),
            *(_file_part(path) for path in files),
        ]
    )

    def build(store: _Store, workspace: Path, reference: str) -> None:
        base_archive = _ensure(base)
        image_id = store.run("load the base image", "pull", "--quiet", f"oci-archive:{base_archive.path}")
        store.run("name the base image", "tag", image_id.strip(), base_archive.reference)
        ignore = workspace / "containerignore"
        ignore.write_text(_CONTEXT_IGNORE)
        # pip in the RUN step reaches PyPI through the machine's network. Where that goes through a
        # TLS-inspecting egress (this machine's does), only the machine's CA bundle verifies PyPI, so it
        # is mounted over the image's for the RUN steps; a mount is never committed into the image.
        bundle = _machine_ca_bundle()
        trust = ("--volume", f"{bundle}:{_IMAGE_CA_BUNDLE}:ro") if bundle else ()
        store.build(
            "buildah build (pip install from PyPI, ~30 s)",
            *trust,
            "--build-arg",
            f"BASE_IMAGE={base_archive.reference}",
            "--ignorefile",
            ignore,
            "-f",
            CONTAINERFILE,
            "-t",
            reference,
            _REPOSITORY,
        )

    return _Recipe("signalprocessing", key, build)


def _opa_recipe() -> _Recipe:
    assets.ensure([assets.OPA])
    with assets.OPA.path.open("rb") as binary:
        binary_digest = hashlib.file_digest(binary, "sha256").digest()
    key = _content_key(
        [
            ("recipe", _RECIPE.encode()),
            ("Containerfile", OPA_CONTAINERFILE.read_bytes()),
            ("opa", binary_digest),
        ]
    )

    def build(store: _Store, workspace: Path, reference: str) -> None:
        context = workspace / "context"
        context.mkdir()
        shutil.copy2(assets.OPA.path, context / "opa")
        store.build("buildah build", "-f", OPA_CONTAINERFILE, "-t", reference, context)

    return _Recipe("opa", key, build)


def _pause_recipe() -> _Recipe:
    go_version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True)
    key = _content_key(
        [
            ("recipe", _RECIPE.encode()),
            ("Containerfile", (PAUSE_SOURCE / "Containerfile").read_bytes()),
            ("main.go", (PAUSE_SOURCE / "main.go").read_bytes()),
            ("go", go_version.stdout.strip().encode()),
        ]
    )

    def build(store: _Store, workspace: Path, reference: str) -> None:
        context = workspace / "context"
        module = workspace / "module"
        context.mkdir()
        module.mkdir()
        shutil.copy2(PAUSE_SOURCE / "main.go", module / "main.go")
        (module / "go.mod").write_text("module kubernaut.local/pause\n")
        assets.go_build("pause", module, ".", context / "pause")
        store.build("buildah build", "-f", PAUSE_SOURCE / "Containerfile", "-t", reference, context)

    return _Recipe("pause", key, build)


# --- building and caching ---------------------------------------------------------------------------


def _build(recipe: _Recipe) -> None:
    """Builds the image in a private store and moves its archive into the cache in one rename."""
    if os.geteuid() != 0:
        raise ImageBuildError(f"building image {recipe.name} needs root (debootstrap, buildah's stores)")
    _require(recipe.name, "buildah", "buildah")
    archive = recipe.archive
    with _workspace(recipe.name) as workspace:
        store = _Store.open(recipe.name, workspace)
        recipe.build(store, workspace, archive.reference)
        staged = workspace / "image.oci.tar"
        store.run(
            "export the OCI archive",
            "push",
            "--quiet",
            archive.reference,
            f"oci-archive:{staged}:{archive.reference}",
        )
        named = _archive_reference(staged)
        if named != archive.reference:
            raise ImageBuildError(
                f"building image {recipe.name}: its archive names {named}, not {archive.reference}"
            )
        os.replace(staged, archive.path)


def _archive_reference(path: Path) -> str | None:
    """The name an OCI archive gives its one image (what `ctr images import` names it), if any."""
    with tarfile.open(path) as archive:
        member = archive.extractfile("index.json")
        index = json.load(member) if member else {}
    names = [entry.get("annotations", {}).get(_REF_NAME) for entry in index.get("manifests", [])]
    return names[0] if len(names) == 1 else None


def _prune(name: str, built: Path) -> None:
    """Keeps the newest _KEPT_ARCHIVES archives of an image (with its lock held)."""
    archives = sorted(images_dir().glob(f"{name}-*.oci.tar"), key=lambda path: path.stat().st_mtime)
    for old in archives[:-_KEPT_ARCHIVES]:
        if old != built:
            old.unlink(missing_ok=True)


def _ensure(recipe: _Recipe) -> ImageArchive:
    archive = recipe.archive
    if archive.path.is_file():
        _STEPS.progress(f"{recipe.name}: cached at {archive.path}")
        return archive
    directory = images_dir()
    if ":" in str(directory):
        raise ImageBuildError(f"the image cache {directory} has a ':', which buildah's archive names cannot")
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / f".{recipe.name}.lock")):
        if archive.path.is_file():
            _STEPS.progress(f"{recipe.name}: built meanwhile by another run, at {archive.path}")
            return archive
        _STEPS.progress(f"{recipe.name}: not cached, building {archive.reference}")
        started = time.monotonic()
        _build(recipe)
        _prune(recipe.name, archive.path)
        size = archive.path.stat().st_size / 2**20
        _STEPS.progress(
            f"{recipe.name}: ready in {time.monotonic() - started:.0f}s at {archive.path} ({size:.0f} MiB)"
        )
    return archive


@dataclass(frozen=True)
class ProjectImages:
    application: ImageArchive  # deploy/Containerfile: the controller and DataStorage
    opa: ImageArchive  # deploy/opa.Containerfile: the controller's OPA sidecar
    pause: ImageArchive  # envtest/pause: the node's Pod sandbox

    @property
    def all(self) -> tuple[ImageArchive, ...]:
        return (self.application, self.opa, self.pause)

    def node_images(self) -> NodeImages:
        return NodeImages(
            sandbox=self.pause.reference,
            archives=tuple(image.path for image in self.all),
        )


def project_images() -> ProjectImages:
    """Every image the test node runs; builds whichever is missing."""
    return ProjectImages(_ensure(_application_recipe()), _ensure(_opa_recipe()), _ensure(_pause_recipe()))
