"""A small YAML file the controller reads beside its policies and reloads with them.

The signal mode mappings (`controller.signalmode`) and the cluster registry
(`controller.clusters`) are such files; this module is the one way both are read and reloaded:

- a file is read whole, with the SHA-256 of its bytes (what the probe detail shows);
- a missing file is the file's empty content, with no hash: nothing is configured;
- a file that is not UTF-8, not YAML, or that the file's own parser refuses is rejected with a
  message naming the file and the problem: at start the controller does not start; on a reload
  the last good content stays;
- a reload reports a verdict: activated (a new text is in force), unchanged (same bytes), or
  rejected (and why).

Boundary: the file and its versions; what the content means is the caller's parser.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import yaml

T = TypeVar("T")


class FileRejected(Exception):
    """The file cannot be used; the message names the problem (and, once read, the file)."""


class ReloadVerdict(enum.StrEnum):
    ACTIVATED = "activated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class FileVersion(Generic[T]):
    """One version of a file: its parsed content and the SHA-256 of its bytes ("" when there is no file)."""

    content: T
    sha256: str = ""


def yaml_document(text: str) -> object:
    """The YAML document of `text` (None when empty); raises `FileRejected` for text that is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise FileRejected(f"not YAML: {error}") from error


def read_file(path: str | os.PathLike[str], parse: Callable[[str], T], *, absent: T) -> FileVersion[T]:
    """The file's content as `parse` reads its text; `absent` when there is no file.

    Raises `FileRejected` (or the subclass `parse` raised) naming `path`.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return FileVersion(absent)
    except OSError as error:
        raise FileRejected(f"cannot read {path}: {error}") from error
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        raise FileRejected(f"{path} is not UTF-8: {error}") from error
    try:
        content = parse(text)
    except FileRejected as error:
        raise type(error)(f"{path}: {error}") from error
    return FileVersion(content, hashlib.sha256(data).hexdigest())


class WatchedFile(Generic[T]):
    """The version in force; `reload` swaps it only for a file that reads."""

    def __init__(self, path: str | os.PathLike[str], parse: Callable[[str], T], *, absent: T) -> None:
        self.path = Path(path)
        self._parse = parse
        self._absent = absent
        self.current = read_file(self.path, parse, absent=absent)

    def reload(self, source: str | os.PathLike[str] | None = None) -> tuple[ReloadVerdict, str]:
        """Reads the file again (from `source`, one ConfigMap generation, when given); the verdict and,
        for a rejection, why."""
        try:
            path = source if source is not None else self.path
            candidate = read_file(path, self._parse, absent=self._absent)
        except FileRejected as error:
            return ReloadVerdict.REJECTED, str(error)
        if candidate.sha256 == self.current.sha256:
            return ReloadVerdict.UNCHANGED, ""
        self.current = candidate
        return ReloadVerdict.ACTIVATED, ""
