"""Wire codec of the ``models`` and ``deployment`` topics (pydantic lives only here).

Contract:

* :func:`encode_descriptor` / :func:`encode_deployment` validate before writing, so a
  process never puts a record on a topic that another process would refuse.
* :func:`decode_descriptor` / :func:`decode_deployment` validate on the way in and raise
  :class:`~modelstream.errors.DecodeError` with a one-line reason naming the field; a
  reader sends such a record to the dead-letter topic and carries on.
* Model bytes travel inline as base64 (``data``) or by a ``file://`` ``location``, never
  both. The codec checks the *form* of the sha256, not that it matches the bytes: that is
  :func:`modelstream.models.integrity.verify_digest`'s job at load time, so a wrong digest
  reaches the scorer and is reported there as an ``IntegrityError``.
* Unknown fields are ignored, so older readers keep working when writers add fields.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelstream.errors import DecodeError
from modelstream.models.deployment import (
    Deployment,
    Fallback,
    LiveModel,
    Policy,
    PolicyKind,
    Role,
)
from modelstream.models.descriptor import FORMATS, Lineage, ModelDescriptor, TrainingSpan
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.wire.codec import MAX_RECORD_BYTES
from modelstream.wire.tensors import DATATYPES

WIRE_VERSION = 1
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_ENTRYPOINT = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class _Tensor(_Wire):
    name: Annotated[str, Field(min_length=1)]
    datatype: str
    shape: list[Annotated[int, Field(ge=-1)]]

    @field_validator("datatype")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"datatype {value!r} is not one of {', '.join(DATATYPES)}")
        return value


class _Schema(_Wire):
    inputs: list[_Tensor]
    outputs: list[_Tensor]


class _Training(_Wire):
    start: int | None = None
    end: int | None = None
    rows: Annotated[int, Field(ge=0)] | None = None


class _Descriptor(_Wire):
    v: Literal[1] = 1
    service: Annotated[str, Field(pattern=_NAME)]
    name: Annotated[str, Field(pattern=_NAME)]
    version: Annotated[int, Field(ge=1)]
    format: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    schema_: Annotated[_Schema, Field(alias="schema")]
    data: str | None = None  # base64
    location: Annotated[str, Field(pattern=r"^file://")] | None = None
    size: Annotated[int, Field(ge=0)] = 0
    signature: str | None = None  # base64 Ed25519
    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    entrypoint: Annotated[str, Field(pattern=_ENTRYPOINT)] | None = None
    created_at: int
    created_by: str = ""
    training: _Training = _Training()
    metrics: dict[str, float] = {}
    parent_version: Annotated[int, Field(ge=1)] | None = None
    feature_set: str | None = None
    tags: dict[str, str] = {}

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"format {value!r} is not one of {', '.join(FORMATS)}")
        return value

    def check(self) -> None:
        """Cross-field rules that pydantic's per-field validators cannot state."""
        if (self.data is None) == (self.location is None):
            raise ValueError("exactly one of 'data' and 'location' must be set")
        if (self.signature is None) != (self.key_id is None):
            raise ValueError("'signature' and 'key_id' must be set together")
        if self.format == "python" and self.entrypoint is None:
            raise ValueError("a python model needs an 'entrypoint' of the form module:Class")


class _Live(_Wire):
    name: Annotated[str, Field(pattern=_NAME)]
    version: Annotated[int, Field(ge=1)]
    role: Role
    wait_ms: Annotated[int, Field(ge=0)] | None = None
    weight: Annotated[float, Field(ge=0)] = 1.0


class _Policy(_Wire):
    kind: PolicyKind = PolicyKind.PREFERENCE
    order: list[str] = []
    min_answers: Annotated[int, Field(ge=1)] = 1
    combine: Literal["vote", "mean"] = "vote"
    split: bool = False


class _Fallback(_Wire):
    outputs: list[dict[str, Any]] | None = None


class _Deployment(_Wire):
    v: Literal[1] = 1
    service: Annotated[str, Field(pattern=_NAME)]
    models: Annotated[list[_Live], Field(min_length=1)]
    policy: _Policy = _Policy()
    deadline_ms: Annotated[int, Field(ge=1)] = 100
    fallback: _Fallback = _Fallback()
    revision: Annotated[int, Field(ge=1)] = 1
    reason: str = ""
    created_at: Annotated[int, Field(ge=0)] = 0
    require_signature: bool = False
    trusted_keys: dict[str, str] = {}
    allow_python: bool = False
    partitions: Annotated[int, Field(ge=1)] | None = None
    feature_set: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    def check(self) -> None:
        champions = [m for m in self.models if m.role is Role.CHAMPION]
        if len(champions) != 1:
            raise ValueError(f"a deployment needs exactly one champion, got {len(champions)}")
        refs = [f"{m.name}@{m.version}" for m in self.models]
        if len(set(refs)) != len(refs):
            raise ValueError("each model version may be live once per deployment")


def _reason(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {where!r}: {first['msg']}{more}"


def _parse(model: type[_Descriptor] | type[_Deployment], data: bytes, kind: str) -> Any:
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError(f"{kind} record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
    try:
        wire = model.model_validate_json(data)
        wire.check()
    except ValidationError as exc:
        raise DecodeError(f"invalid {kind} record: {_reason(exc)}") from None
    except ValueError as exc:
        raise DecodeError(f"invalid {kind} record: {exc}") from None
    return wire


def _specs(items: list[_Tensor]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in items)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise DecodeError(f"invalid model descriptor record: {what} is not base64") from None


def descriptor_to_json(d: ModelDescriptor) -> dict[str, Any]:
    """The JSON object of ``d`` (with base64 bytes), as written on the topic."""
    t = d.lineage.training
    return {
        "v": WIRE_VERSION,
        "service": d.service,
        "name": d.name,
        "version": d.version,
        "format": d.format,
        "sha256": d.sha256,
        "schema": d.schema.to_json(),
        "data": None if d.data is None else base64.b64encode(d.data).decode(),
        "location": d.location,
        "size": d.size,
        "signature": d.signature,
        "key_id": d.key_id,
        "entrypoint": d.entrypoint,
        "created_at": d.lineage.created_at,
        "created_by": d.lineage.created_by,
        "training": {"start": t.start, "end": t.end, "rows": t.rows},
        "metrics": {k: float(v) for k, v in d.lineage.metrics.items()},
        "parent_version": d.lineage.parent_version,
        "feature_set": d.lineage.feature_set,
        "tags": dict(d.lineage.tags),
    }


def decode_descriptor(data: bytes) -> ModelDescriptor:
    """The descriptor in ``data``; raises ``DecodeError`` with a one-line reason."""
    w: _Descriptor = _parse(_Descriptor, data, "model descriptor")
    if w.signature is not None:
        _b64decode(w.signature, "'signature'")
    return ModelDescriptor(
        service=w.service,
        name=w.name,
        version=w.version,
        format=w.format,
        sha256=w.sha256,
        schema=ModelSchema(_specs(w.schema_.inputs), _specs(w.schema_.outputs)),
        lineage=Lineage(
            created_at=w.created_at,
            created_by=w.created_by,
            training=TrainingSpan(w.training.start, w.training.end, w.training.rows),
            metrics=dict(w.metrics),
            parent_version=w.parent_version,
            feature_set=w.feature_set,
            tags=dict(w.tags),
        ),
        data=None if w.data is None else _b64decode(w.data, "'data'"),
        location=w.location,
        size=w.size,
        signature=w.signature,
        key_id=w.key_id,
        entrypoint=w.entrypoint,
    )


def encode_descriptor(d: ModelDescriptor) -> bytes:
    """``d`` as record bytes; raises ``DecodeError`` if ``d`` would not decode."""
    data = orjson.dumps(descriptor_to_json(d))
    decode_descriptor(data)  # validate on the way out: never write what readers refuse
    return data


def deployment_to_json(d: Deployment) -> dict[str, Any]:
    """The JSON object of ``d`` as written on the ``deployment`` topic."""
    return {
        "v": WIRE_VERSION,
        "service": d.service,
        "models": [
            {
                "name": m.ref.name,
                "version": m.ref.version,
                "role": m.role.value,
                "wait_ms": m.wait_ms,
                "weight": float(m.weight),
            }
            for m in d.models
        ],
        "policy": {
            "kind": d.policy.kind.value,
            "order": list(d.policy.order),
            "min_answers": d.policy.min_answers,
            "combine": d.policy.combine,
            "split": d.policy.split,
        },
        "deadline_ms": d.deadline_ms,
        "fallback": {
            "outputs": None if d.fallback.outputs is None else [dict(o) for o in d.fallback.outputs]
        },
        "revision": d.revision,
        "reason": d.reason,
        "created_at": d.created_at,
        "require_signature": d.require_signature,
        "trusted_keys": dict(d.trusted_keys),
        "allow_python": d.allow_python,
        "partitions": d.partitions,
        "feature_set": d.feature_set,
    }


def decode_deployment(data: bytes) -> Deployment:
    """The deployment in ``data``; raises ``DecodeError`` with a one-line reason."""
    w: _Deployment = _parse(_Deployment, data, "deployment")
    return Deployment(
        service=w.service,
        models=tuple(
            LiveModel(ModelRef(m.name, m.version), m.role, m.wait_ms, m.weight) for m in w.models
        ),
        policy=Policy(
            w.policy.kind,
            tuple(w.policy.order),
            w.policy.min_answers,
            w.policy.combine,
            w.policy.split,
        ),
        deadline_ms=w.deadline_ms,
        fallback=Fallback(None if w.fallback.outputs is None else tuple(w.fallback.outputs)),
        revision=w.revision,
        reason=w.reason,
        created_at=w.created_at,
        require_signature=w.require_signature,
        trusted_keys=dict(w.trusted_keys),
        allow_python=w.allow_python,
        partitions=w.partitions,
        feature_set=w.feature_set,
    )


def encode_deployment(d: Deployment) -> bytes:
    """``d`` as record bytes; raises ``DecodeError`` if ``d`` would not decode."""
    data = orjson.dumps(deployment_to_json(d))
    decode_deployment(data)
    return data
