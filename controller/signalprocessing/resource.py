"""The SignalProcessing object as a whole: metadata, spec, status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.rawjson import (
    int_or_zero,
    section,
    str_or_empty,
)
from controller.signalprocessing.spec import Spec
from controller.signalprocessing.status import Status
from controller.signalprocessing.times import optional_time, timestamp
from controller.signalprocessing.vocabulary import API_VERSION, KIND, Phase

# --- The resource --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectMeta:
    """The metadata the controller uses: identity, concurrency, generation, age."""

    name: str
    namespace: str
    uid: str = ""
    resource_version: str = ""
    generation: int = 1
    creation_timestamp: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> ObjectMeta:
        generation = int_or_zero(raw.get("generation"))
        return cls(
            name=str_or_empty(raw.get("name")),
            namespace=str_or_empty(raw.get("namespace")),
            uid=str_or_empty(raw.get("uid")),
            resource_version=str_or_empty(raw.get("resourceVersion")),
            generation=generation or 1,
            creation_timestamp=optional_time(raw.get("creationTimestamp")),
        )

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "generation": self.generation}
        if self.uid:
            raw["uid"] = self.uid
        if self.resource_version:
            raw["resourceVersion"] = self.resource_version
        if self.creation_timestamp is not None:
            raw["creationTimestamp"] = timestamp(self.creation_timestamp)
        return raw


@dataclass(frozen=True)
class SignalProcessing:
    metadata: ObjectMeta
    spec: Spec
    status: Status = field(default_factory=Status)

    @property
    def key(self) -> str:
        """`namespace/name`, for logs."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @property
    def phase(self) -> Phase:
        return self.status.phase

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> SignalProcessing:
        return cls(
            metadata=ObjectMeta.from_raw(section(raw, "metadata") or {}),
            spec=Spec.from_raw(section(raw, "spec") or {}),
            status=Status.from_raw(section(raw, "status") or {}),
        )

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": self.metadata.to_raw(),
            "spec": self.spec.to_raw(),
        }
        if status := self.status.to_raw():
            raw["status"] = status
        return raw
