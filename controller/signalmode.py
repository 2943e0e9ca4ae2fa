"""Signal mode (BR-SP-106): a proactive signal is named after the incident it predicts.

A mappings file (YAML: `proactive_signal_mappings: {PredictedOOMKill: OOMKilled, ...}`) names
the proactive signals and the reactive signal each one predicts. A signal whose name is a key is
proactive: the status records the base name as `signalName` and the original as
`sourceSignalName`, so everything downstream handles it as the incident it predicts. Any other
signal is reactive. Names match exactly, case included, as kubernaut's do.

The file lives beside the policies by default (one ConfigMap, one kubelet `..data` swap) and is
reloaded with them (`controller.hotreload`); kubernaut loads it once at start, though its design
says it reloads. A missing file means every signal is reactive. A file that is not such a mapping
is refused with a message naming the problem: at start the controller does not start; on a
reload the last good mappings stay (`controller.watchedfile`, shared with the cluster registry).

Boundary: the file and the decision; no Kubernetes API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from controller.signalprocessing import SignalClassification, SignalMode
from controller.watchedfile import FileRejected, WatchedFile, read_file, yaml_document

MAPPINGS_FILE_NAME: Final = "proactive-signal-mappings.yaml"
_KEY: Final = "proactive_signal_mappings"

logger = logging.getLogger(__name__)


class MappingsError(FileRejected):
    """The mappings file is not a mapping of proactive signal names to base names."""


@dataclass(frozen=True)
class SignalModeMappings:
    """The proactive signal names and the base name of each."""

    proactive: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def classify(self, signal_name: str) -> SignalClassification:
        base = self.proactive.get(signal_name)
        if base is None:
            return SignalClassification(SignalMode.REACTIVE, signal_name)
        return SignalClassification(SignalMode.PROACTIVE, base, source_signal_name=signal_name)


def parse_mappings(text: str) -> Mapping[str, str]:
    """The proactive name -> base name mapping of a file's text; raises `MappingsError` (or, for text
    that is not YAML, `FileRejected`)."""
    document = yaml_document(text)
    if document is None:
        return MappingProxyType({})
    if not isinstance(document, dict):
        raise MappingsError(f"expected a mapping with the key {_KEY!r}, got {type(document).__name__}")
    mappings = document.get(_KEY)
    if mappings is None:
        return MappingProxyType({})
    if not isinstance(mappings, dict):
        raise MappingsError(f"{_KEY} must map signal names to base names, got {type(mappings).__name__}")
    for proactive, base in mappings.items():
        if not isinstance(proactive, str) or not proactive or not isinstance(base, str) or not base:
            raise MappingsError(f"{_KEY}: {proactive!r}: {base!r} is not a signal name -> base name")
    return MappingProxyType(dict(mappings))


def _parse(text: str) -> SignalModeMappings:
    return SignalModeMappings(parse_mappings(text))


def read_mappings(path: str | os.PathLike[str]) -> SignalModeMappings:
    """The mappings in `path`; every signal reactive when it does not exist. Raises `FileRejected`."""
    return read_file(path, _parse, absent=SignalModeMappings()).content


class ActiveSignalModes(WatchedFile[SignalModeMappings]):
    """The mappings in force (`current`, with its hash); `reload` swaps them only for a file that reads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, _parse, absent=SignalModeMappings())
        if not self.current.sha256:
            logger.info("no %s: every signal is reactive", self.path)

    def classify(self, signal_name: str) -> SignalClassification:
        return self.current.content.classify(signal_name)
