"""The service spec: a YAML file that says what a service runs (``modelstream apply``).

Example::

    service: fraud
    partitions: 4
    deadline_ms: 50
    policy: {kind: preference, order: [gbm, rules]}
    allow_python: true
    require_signature: false
    trusted_keys: [keys/modelstream.pub]     # .pub files, relative to this file
    models:
      - {name: gbm, version: 3, role: champion, wait_ms: 30}
      - name: rules
        file: rules.json                     # published when no version has these bytes
        format: python
        entrypoint: modelstream.testing.models:ThresholdModel
        role: challenger
    features: trucks.features:TRUCKS          # optional: or a feature-set YAML file

``features`` names the service's feature set, as :mod:`modelstream.features.spec` reads
it: an import path ``package.module:ATTRIBUTE`` (kept as it is), or the path of a YAML
file holding the definitions (relative to this file; stored absolute). Definitions
inline under ``features:`` are not accepted here: a deployment record stores a
reference, so put them in a file of their own. With a feature set, requests go
through the featurizer (``modelstream run featurizer``) before the scorers.

Contract: applying is idempotent. A model given by ``file`` is published only if no
version of that name already has the same sha256 (else that version is used), and the
deployment record is written only if it differs from the one in force. Paths are
relative to the spec file. The YAML is validated by pydantic here, at the edge, and
turned into the frozen :class:`ServiceSpec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelstream.errors import ConfigurationError
from modelstream.models.deployment import (
    Deployment,
    Fallback,
    LiveModel,
    Policy,
    PolicyKind,
    Role,
)
from modelstream.models.integrity import read_public_key, sha256_hex
from modelstream.models.refs import ModelRef

if TYPE_CHECKING:
    from modelstream.models.registry import Registry


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model of a spec: an existing ``version``, or a ``file`` to publish."""

    name: str
    role: Role
    version: int | None = None
    file: Path | None = None
    format: str | None = None
    entrypoint: str | None = None
    sign_key: Path | None = None
    wait_ms: int | None = None
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A whole service, as read from YAML."""

    service: str
    models: tuple[ModelSpec, ...]
    policy: Policy = field(default_factory=Policy)
    deadline_ms: int = 100
    fallback: Fallback = field(default_factory=Fallback)
    require_signature: bool = False
    trusted_keys: Mapping[str, str] = field(default_factory=dict)
    allow_python: bool = False
    partitions: int | None = None
    feature_set: str | None = None


class _Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ModelYaml(_Edge):
    name: str
    role: Role = Role.CHALLENGER
    version: Annotated[int, Field(ge=1)] | None = None
    file: str | None = None
    format: Literal["onnx", "river", "skops", "python"] | None = None
    entrypoint: str | None = None
    sign_key: str | None = None
    wait_ms: Annotated[int, Field(ge=0)] | None = None
    weight: Annotated[float, Field(ge=0)] = 1.0


class _PolicyYaml(_Edge):
    kind: PolicyKind = PolicyKind.PREFERENCE
    order: list[str] = []
    min_answers: Annotated[int, Field(ge=1)] = 1
    combine: Literal["vote", "mean"] = "vote"


class _SpecYaml(_Edge):
    service: str
    partitions: Annotated[int, Field(ge=1)] | None = None
    deadline_ms: Annotated[int, Field(ge=1)] = 100
    policy: _PolicyYaml = _PolicyYaml()
    fallback: list[dict[str, Any]] | None = None
    require_signature: bool = False
    trusted_keys: list[str] | dict[str, str] = []
    allow_python: bool = False
    features: Any = None
    models: Annotated[list[_ModelYaml], Field(min_length=1)]


def parse_spec(text: str, base: Path = Path()) -> ServiceSpec:
    """The spec in YAML ``text``; paths resolve against ``base``. ``ConfigurationError``."""
    try:
        raw = yaml.safe_load(text)
        spec = _SpecYaml.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"the spec is not valid YAML: {' '.join(str(exc).split())}"
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise ConfigurationError(f"invalid spec field {where!r}: {first['msg']}") from None
    if isinstance(spec.trusted_keys, dict):
        trusted = dict(spec.trusted_keys)
    else:
        trusted = dict(read_public_key(base / p) for p in spec.trusted_keys)
    models = []
    for m in spec.models:
        if (m.version is None) == (m.file is None):
            raise ConfigurationError(f"spec model {m.name!r}: give either version or file")
        models.append(
            ModelSpec(
                name=m.name,
                role=m.role,
                version=m.version,
                file=base / m.file if m.file else None,
                format=m.format,
                entrypoint=m.entrypoint,
                sign_key=base / m.sign_key if m.sign_key else None,
                wait_ms=m.wait_ms,
                weight=m.weight,
            )
        )
    p = spec.policy
    return ServiceSpec(
        service=spec.service,
        models=tuple(models),
        policy=Policy(p.kind, tuple(p.order), p.min_answers, p.combine),
        deadline_ms=spec.deadline_ms,
        fallback=Fallback(None if spec.fallback is None else tuple(spec.fallback)),
        require_signature=spec.require_signature,
        trusted_keys=trusted,
        allow_python=spec.allow_python,
        partitions=spec.partitions,
        feature_set=_feature_set(spec.features, base),
    )


def _feature_set(raw: Any, base: Path) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigurationError(
            "spec field 'features' must be an import path (package.module:ATTRIBUTE) or "
            "the path of a feature-set YAML file; move inline definitions into a file"
        )
    from modelstream.features.spec import feature_set_ref

    return feature_set_ref(raw, base)


def load_spec(path: Path) -> ServiceSpec:
    """The spec in the YAML file ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read spec {path}: {exc.strerror}") from None
    return parse_spec(text, path.parent)


def _resolve(registry: Registry, service: str, m: ModelSpec) -> ModelRef:
    if m.file is None:
        assert m.version is not None  # parse_spec guarantees one of the two
        return registry.descriptor(service, ModelRef(m.name, m.version)).ref
    from modelstream.models.formats import format_for_path

    try:
        data = m.file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read model file {m.file}: {exc.strerror}") from None
    digest = sha256_hex(data)
    same = [d for d in registry.descriptors(service) if d.name == m.name and d.sha256 == digest]
    if same:
        return same[-1].ref
    published = registry.publish(
        service,
        m.name,
        data,
        format=m.format or format_for_path(m.file.name),
        entrypoint=m.entrypoint,
        sign_key=m.sign_key,
    )
    return published.ref


def apply_spec(registry: Registry, spec: ServiceSpec) -> Deployment:
    """Publish the spec's files as needed and write its deployment (see the module doc)."""
    if sum(1 for m in spec.models if m.role is Role.CHAMPION) != 1:
        raise ConfigurationError(f"spec of {spec.service}: name exactly one champion model")
    models = tuple(
        LiveModel(_resolve(registry, spec.service, m), m.role, m.wait_ms, m.weight)
        for m in spec.models
    )
    # The champion goes first, as deploy() writes it, so records compare equal.
    models = tuple(sorted(models, key=lambda live: live.role is not Role.CHAMPION))
    wanted = Deployment(
        service=spec.service,
        models=models,
        policy=spec.policy,
        deadline_ms=spec.deadline_ms,
        fallback=spec.fallback,
        reason="apply spec",
        require_signature=spec.require_signature,
        trusted_keys=dict(spec.trusted_keys),
        allow_python=spec.allow_python,
        partitions=spec.partitions,
        feature_set=spec.feature_set,
    )
    history = registry.history(spec.service)
    if history:
        current = history[-1]
        same = dataclasses.replace(
            wanted, revision=current.revision, created_at=current.created_at, reason=current.reason
        )
        if same == current:
            return current
    return registry.write_deployment(wanted)
