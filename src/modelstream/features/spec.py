"""Feature sets referred to from YAML: an import path, or the same definitions in YAML.

In a service spec (or any YAML file), ``features:`` is either a string
``"package.module:ATTRIBUTE"`` naming a :class:`FeatureSet` object, or a mapping::

    features:
      name: trucks
      version: "3"
      entity_field: truck          # omit: the record key
      time_field: ts               # omit: the record timestamp
      out_of_orderness_ms: 5000
      allowed_lateness_ms: 60000
      features:
        - {name: temp_mean_5m, field: temp, agg: mean, window: {tumbling: 300000}}
        - {name: temp_trend, field: temp, agg: slope, window: {hopping: [600000, 60000]}}
        - {name: temp_ewma, field: temp, agg: {ewma: {half_life_ms: 60000}},
           window: {session: 900000}}
        - {name: prev_temp, field: temp, agg: {lag: {n: 1}}, window: {tumbling: 60000}}

The YAML is validated by pydantic here, at the edge, and becomes the frozen dataclasses
of :mod:`modelstream.features.definitions`. Errors raise ``ConfigurationError``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modelstream.errors import ConfigurationError, FeatureError
from modelstream.features.aggregates import (
    Aggregate,
    Count,
    Ewma,
    First,
    Last,
    Max,
    Mean,
    Min,
    Slope,
    Std,
    Sum,
)
from modelstream.features.definitions import (
    Feature,
    FeatureSet,
    Hopping,
    Session,
    Tumbling,
    Window,
)
from modelstream.features.sketches import Distinct, Lag

# The aggregate names the YAML accepts (``agg: mean``, ``agg: {lag: {n: 2}}``).
KINDS: dict[str, type[Aggregate]] = {
    cls.kind: cls
    for cls in (Count, Sum, Mean, Min, Max, Std, First, Last, Ewma, Slope, Distinct, Lag)
}


class _Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _WindowYaml(_Edge):
    tumbling: int | None = None
    hopping: tuple[int, int] | None = None
    session: int | None = None


class _FeatureYaml(_Edge):
    name: str
    field: str | None = None
    agg: str | dict[str, dict[str, Any]]
    window: _WindowYaml


class _FeatureSetYaml(_Edge):
    name: str
    version: str | int
    entity_field: str | None = None
    time_field: str | None = None
    out_of_orderness_ms: int = 0
    allowed_lateness_ms: int = 0
    idle_timeout_ms: int = 60_000
    features: list[_FeatureYaml]


def _aggregate(raw: str | dict[str, dict[str, Any]], feature: str) -> Aggregate:
    kind, params = (raw, {}) if isinstance(raw, str) else next(iter(raw.items()))
    if isinstance(raw, dict) and len(raw) != 1:
        raise ConfigurationError(f"feature {feature!r}: agg must name one aggregate")
    cls = KINDS.get(kind)
    if cls is None:
        raise ConfigurationError(
            f"feature {feature!r}: unknown aggregate {kind!r}; use one of {sorted(KINDS)}"
        )
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise ConfigurationError(f"feature {feature!r}: bad parameters for {kind}: {exc}") from None


def _window(raw: _WindowYaml, feature: str) -> Window:
    given = [w for w in (raw.tumbling, raw.hopping, raw.session) if w is not None]
    if len(given) != 1:
        raise ConfigurationError(
            f"feature {feature!r}: window needs exactly one of tumbling, hopping, session"
        )
    if raw.tumbling is not None:
        return Tumbling(raw.tumbling)
    if raw.hopping is not None:
        return Hopping(*raw.hopping)
    assert raw.session is not None
    return Session(raw.session)


def import_feature_set(path: str) -> FeatureSet:
    """The :class:`FeatureSet` named by ``"package.module:ATTRIBUTE"``."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"feature set {path!r}: use the form package.module:ATTRIBUTE")
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import feature set {path!r}: {exc}") from None
    if not isinstance(obj, FeatureSet):
        raise ConfigurationError(f"{path!r} is a {type(obj).__name__}, not a FeatureSet")
    return obj


def feature_set_from_yaml(value: Any) -> FeatureSet:
    """The feature set a ``features:`` YAML value gives: an import path or a mapping."""
    if isinstance(value, str):
        return import_feature_set(value)
    try:
        spec = _FeatureSetYaml.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"features.{where}: {first['msg']}") from None
    try:
        return FeatureSet(
            spec.name,
            str(spec.version),
            [
                Feature(
                    f.name,
                    field=f.field,
                    agg=_aggregate(f.agg, f.name),
                    window=_window(f.window, f.name),
                )
                for f in spec.features
            ],
            entity_field=spec.entity_field,
            time_field=spec.time_field,
            out_of_orderness_ms=spec.out_of_orderness_ms,
            allowed_lateness_ms=spec.allowed_lateness_ms,
            idle_timeout_ms=spec.idle_timeout_ms,
        )
    except FeatureError as exc:
        raise ConfigurationError(str(exc)) from None


_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_import_path(ref: str) -> bool:
    """Whether ``ref`` reads as ``package.module:ATTRIBUTE`` (else it is a file path)."""
    return bool(_IMPORT_PATH.match(ref))


def feature_set_ref(ref: str, base: Path = Path()) -> str:
    """``ref`` as a deployment stores it: an import path as it is, a file path absolute.

    Raises ``ConfigurationError`` when the feature set cannot be loaded, so a bad
    reference is refused when it is deployed rather than when the featurizer starts.
    """
    ref = ref.strip()
    if not ref:
        raise ConfigurationError("a feature set reference must not be empty")
    if not is_import_path(ref):
        ref = str((base / ref).resolve())
    resolve_feature_set(ref)
    return ref


def resolve_feature_set(ref: str) -> FeatureSet:
    """The feature set a deployment's ``feature_set`` names (see :func:`feature_set_ref`)."""
    if is_import_path(ref):
        return import_feature_set(ref)
    return load_feature_set(Path(ref))


def lineage_ref(deployed: str) -> str:
    """What a model trained for a deployment with feature set ``deployed`` (its reference,
    see :func:`feature_set_ref`) carries in ``Lineage.feature_set``: ``name@version``."""
    return resolve_feature_set(deployed).ref


def load_feature_set(path: Path) -> FeatureSet:
    """The feature set of a YAML file: its ``features:`` key, or the whole document."""
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    if isinstance(raw, dict) and "features" in raw and "name" not in raw:
        raw = raw["features"]
    if raw is None:
        raise ConfigurationError(f"{path} declares no features: add a 'features:' key")
    return feature_set_from_yaml(raw)
