"""Reads CRD files and installs them into a cluster until discovery serves them.

Files are checked before any server starts, so a broken manifest fails fast
with its file name and the reason instead of a timeout later.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException


class CrdFileError(ValueError):
    """A file under a CRD directory is not valid YAML or not a CustomResourceDefinition."""


@dataclass(frozen=True)
class Crd:
    source: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def group(self) -> str:
        return str(self.manifest["spec"]["group"])

    @property
    def plural(self) -> str:
        return str(self.manifest["spec"]["names"]["plural"])

    @property
    def served_versions(self) -> list[str]:
        return [v["name"] for v in self.manifest["spec"]["versions"] if v.get("served", True)]


def _crd_files(directories: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for directory in directories:
        if not Path(directory).is_dir():
            raise CrdFileError(f"{directory}: not a directory of CRD files")
        files += sorted(p for p in Path(directory).iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    return files


def load_crds(directories: Iterable[Path]) -> list[Crd]:
    crds: list[Crd] = []
    for path in _crd_files(directories):
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as error:
            raise CrdFileError(f"{path}: not valid YAML: {error}") from error
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
                kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
                raise CrdFileError(f"{path}: not a CustomResourceDefinition (kind: {kind})")
            try:
                crd = Crd(path, document)
                _ = (crd.name, crd.group, crd.plural, crd.served_versions)
            except (KeyError, TypeError) as error:
                raise CrdFileError(f"{path}: CustomResourceDefinition lacks field {error}") from error
            crds.append(crd)
    return crds


def _apply(api: client.ApiextensionsV1Api, crd: Crd, attempts: int = 5) -> None:
    try:
        api.create_custom_resource_definition(crd.manifest)
        return
    except ApiException as error:
        if error.status != 409:
            raise CrdFileError(f"{crd.source}: rejected by the API server: {error.body}") from error
    # It exists: replace it. Another writer (kubectl apply, a second test run) may change it
    # between the read and the replace; that conflict (409) is retried with a fresh read.
    for attempt in range(1, attempts + 1):
        current = api.read_custom_resource_definition(crd.name)
        manifest = dict(crd.manifest)
        manifest["metadata"] = {**manifest["metadata"], "resourceVersion": current.metadata.resource_version}
        try:
            api.replace_custom_resource_definition(crd.name, manifest)
            return
        except ApiException as error:
            if error.status != 409 or attempt == attempts:
                raise CrdFileError(f"{crd.source}: rejected by the API server: {error.body}") from error


def _is_served(api_client: client.ApiClient, crd: Crd) -> bool:
    discovery = client.CustomObjectsApi(api_client)
    for version in crd.served_versions:
        try:
            resources = discovery.get_api_resources(crd.group, version)
        except ApiException:
            return False
        if crd.plural not in {r.name for r in resources.resources}:
            return False
    return True


def install_crds(kubeconfig: Path, crds: Sequence[Crd], timeout: float = 60.0) -> None:
    """Creates or replaces each CRD, then waits until discovery serves every plural."""
    if not crds:
        return
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        extensions = client.ApiextensionsV1Api(api_client)
        for crd in crds:
            _apply(extensions, crd)
        deadline = time.monotonic() + timeout
        pending = list(crds)
        while pending:
            pending = [crd for crd in pending if not _is_served(api_client, crd)]
            if pending and time.monotonic() > deadline:
                names = ", ".join(crd.name for crd in pending)
                raise TimeoutError(f"discovery did not serve {names} within {timeout:.0f}s")
            if pending:
                time.sleep(0.05)
    finally:
        api_client.close()
