"""The model descriptor: what a record on ``<service>.models`` says about one version.

A descriptor is immutable and names its bytes either inline (``data``) or by a location
URI (``location``, ``file://`` for now); ``sha256`` is always the digest of those bytes
and is checked before anything loads them. ``signature`` is an Ed25519 signature over
:meth:`ModelDescriptor.signed_message` by the key ``key_id``.

The wire codec (validation on the way in and out) is in :mod:`modelstream.models.codec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema

FORMATS = ("onnx", "river", "skops", "python")


@dataclass(frozen=True, slots=True)
class TrainingSpan:
    """The data a version was trained on, in event time (ms) and rows."""

    start: int | None = None
    end: int | None = None
    rows: int | None = None


@dataclass(frozen=True, slots=True)
class Lineage:
    """Governance and lineage metadata carried by every descriptor."""

    created_at: int
    created_by: str = ""
    training: TrainingSpan = field(default_factory=TrainingSpan)
    metrics: Mapping[str, float] = field(default_factory=dict)
    parent_version: int | None = None
    feature_set: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelDescriptor:
    """One version of one model of a service, as published on the ``models`` topic."""

    service: str
    name: str
    version: int
    format: str
    sha256: str
    schema: ModelSchema
    lineage: Lineage
    data: bytes | None = None
    location: str | None = None
    size: int = 0
    signature: str | None = None
    key_id: str | None = None
    entrypoint: str | None = None  # ``module:Class`` for the ``python`` format

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)

    def signed_message(self) -> bytes:
        """The bytes a signature covers: service, name, version, format and digest."""
        parts = ("modelstream/v1", self.service, self.name, str(self.version), self.format)
        return "|".join((*parts, self.sha256)).encode()

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view without the model bytes (for lists, HTTP and logs)."""
        return {
            "service": self.service,
            "name": self.name,
            "version": self.version,
            "ref": str(self.ref),
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "location": self.location,
            "signed": self.signature is not None,
            "key_id": self.key_id,
            "entrypoint": self.entrypoint,
            "schema": self.schema.to_json(),
            "created_at": self.lineage.created_at,
            "created_by": self.lineage.created_by,
            "training": {
                "start": self.lineage.training.start,
                "end": self.lineage.training.end,
                "rows": self.lineage.training.rows,
            },
            "metrics": dict(self.lineage.metrics),
            "parent_version": self.lineage.parent_version,
            "feature_set": self.lineage.feature_set,
            "tags": dict(self.lineage.tags),
        }
