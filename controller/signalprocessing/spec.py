"""`spec`: what the creator said about the signal; immutable (a CEL rule), only carried and read.

The signal's times stay the strings the creator gave: the controller never computes with them.
`timesOutAt`, the deadline, is parsed: it decides when the SP fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, cast

from controller.rawjson import (
    optional_bool,
    section,
    str_or_empty,
    string_map,
)
from controller.signalprocessing.times import optional_time, timestamp


class RawTargetResource(TypedDict, total=False):
    kind: str
    name: str
    namespace: str


class RawObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    namespace: str
    uid: str


class RawSignal(TypedDict, total=False):
    fingerprint: str
    name: str
    severity: str
    type: str
    source: str
    targetType: str
    targetResource: RawTargetResource
    labels: dict[str, str]
    annotations: dict[str, str]
    firingTime: str
    receivedTime: str
    providerData: str
    clusterID: str


class RawEnrichmentConfig(TypedDict, total=False):
    enableClusterState: bool
    enableMetrics: bool
    enableHistorical: bool
    timeout: str


class RawSpec(TypedDict, total=False):
    remediationRequestRef: RawObjectReference
    signal: RawSignal
    enrichmentConfig: RawEnrichmentConfig
    timesOutAt: str


# --- Spec ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetResource:
    """The object a signal is about (`spec.signal.targetResource`). Kinds are case-sensitive."""

    kind: str
    name: str
    namespace: str = ""  # empty (or absent): a cluster-scoped target, a Node say

    @property
    def is_cluster_scoped(self) -> bool:
        return not self.namespace

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> TargetResource:
        return cls(
            kind=str_or_empty(raw.get("kind")),
            name=str_or_empty(raw.get("name")),
            namespace=str_or_empty(raw.get("namespace")),
        )

    def to_raw(self) -> RawTargetResource:
        raw = RawTargetResource(kind=self.kind, name=self.name)
        if self.namespace:
            raw["namespace"] = self.namespace
        return raw

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class RemediationRequestRef:
    """`spec.remediationRequestRef`: the parent RemediationRequest; its name is the audit correlation id."""

    name: str
    namespace: str = ""  # empty: the RR is in the SignalProcessing's own namespace
    api_version: str = ""
    kind: str = ""
    uid: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> RemediationRequestRef:
        return cls(
            name=str_or_empty(raw.get("name")),
            namespace=str_or_empty(raw.get("namespace")),
            api_version=str_or_empty(raw.get("apiVersion")),
            kind=str_or_empty(raw.get("kind")),
            uid=str_or_empty(raw.get("uid")),
        )

    def to_raw(self) -> RawObjectReference:
        raw = RawObjectReference(name=self.name)
        for key, value in (
            ("namespace", self.namespace),
            ("apiVersion", self.api_version),
            ("kind", self.kind),
            ("uid", self.uid),
        ):
            if value:
                raw[key] = value  # type: ignore[literal-required]
        return raw

    def namespace_or(self, sp_namespace: str) -> str:
        return self.namespace or sp_namespace


@dataclass(frozen=True)
class Signal:
    """`spec.signal`. The first four fields are what the policies see; the rest is carried along."""

    severity: str
    source: str = ""
    type: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    fingerprint: str = ""
    target_type: str = ""
    target_resource: TargetResource = field(default_factory=lambda: TargetResource("", ""))
    annotations: Mapping[str, str] = field(default_factory=dict)
    firing_time: str = ""
    received_time: str = ""
    provider_data: str = ""  # base64, as the API carries `format: byte`
    cluster_id: str = ""  # the fleet member the signal came from; "" is the hub (`controller.clusters`)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Signal:
        return cls(
            severity=str_or_empty(raw.get("severity")),
            source=str_or_empty(raw.get("source")),
            type=str_or_empty(raw.get("type")),
            labels=string_map(raw.get("labels")),
            name=str_or_empty(raw.get("name")),
            fingerprint=str_or_empty(raw.get("fingerprint")),
            target_type=str_or_empty(raw.get("targetType")),
            target_resource=TargetResource.from_raw(section(raw, "targetResource") or {}),
            annotations=string_map(raw.get("annotations")),
            firing_time=str_or_empty(raw.get("firingTime")),
            received_time=str_or_empty(raw.get("receivedTime")),
            provider_data=str_or_empty(raw.get("providerData")),
            cluster_id=str_or_empty(raw.get("clusterID")),
        )

    def to_raw(self) -> RawSignal:
        raw = RawSignal(
            fingerprint=self.fingerprint,
            name=self.name,
            severity=self.severity,
            type=self.type,
            targetType=self.target_type,
            targetResource=self.target_resource.to_raw(),
            receivedTime=self.received_time,
        )
        optional: dict[str, object] = {
            "source": self.source,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "firingTime": self.firing_time,
            "providerData": self.provider_data,
            "clusterID": self.cluster_id,
        }
        raw.update(cast(RawSignal, {key: value for key, value in optional.items() if value}))
        return raw


@dataclass(frozen=True)
class EnrichmentConfig:
    """`spec.enrichmentConfig`; None where the creator did not say."""

    enable_cluster_state: bool | None = None
    enable_metrics: bool | None = None
    enable_historical: bool | None = None
    timeout: str = ""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> EnrichmentConfig:
        return cls(
            enable_cluster_state=optional_bool(raw.get("enableClusterState")),
            enable_metrics=optional_bool(raw.get("enableMetrics")),
            enable_historical=optional_bool(raw.get("enableHistorical")),
            timeout=str_or_empty(raw.get("timeout")),
        )

    def to_raw(self) -> RawEnrichmentConfig:
        fields: dict[str, object] = {
            "enableClusterState": self.enable_cluster_state,
            "enableMetrics": self.enable_metrics,
            "enableHistorical": self.enable_historical,
            "timeout": self.timeout or None,
        }
        return cast(RawEnrichmentConfig, {key: value for key, value in fields.items() if value is not None})


@dataclass(frozen=True)
class Spec:
    remediation_request_ref: RemediationRequestRef
    signal: Signal
    enrichment_config: EnrichmentConfig | None = None
    # The absolute deadline its creator (the orchestrator) gave; the one spec time the controller
    # computes with, so it is parsed. None: the controller's configured deadline applies.
    times_out_at: datetime | None = None

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Spec:
        config = section(raw, "enrichmentConfig")
        return cls(
            remediation_request_ref=RemediationRequestRef.from_raw(
                section(raw, "remediationRequestRef") or {}
            ),
            signal=Signal.from_raw(section(raw, "signal") or {}),
            enrichment_config=EnrichmentConfig.from_raw(config) if config is not None else None,
            times_out_at=optional_time(raw.get("timesOutAt")),
        )

    def to_raw(self) -> RawSpec:
        raw = RawSpec(
            remediationRequestRef=self.remediation_request_ref.to_raw(), signal=self.signal.to_raw()
        )
        if self.enrichment_config is not None:
            raw["enrichmentConfig"] = self.enrichment_config.to_raw()
        if self.times_out_at is not None:
            raw["timesOutAt"] = timestamp(self.times_out_at)
        return raw
