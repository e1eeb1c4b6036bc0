"""Preparing a version before it serves: fetch, verify and load, validate, warm.

:func:`prepare` is all-or-nothing: it returns an :class:`~modelstream.scoring.slot.ActiveModel`
ready to swap in, or raises a :class:`~modelstream.errors.ModelError` (and closes
whatever it had loaded), so the caller keeps the old version on any failure:

1. **fetch** the bytes (inline or by location) -- ``ModelSource.fetch``;
2. **verify and load** -- ``ModelSource.load``: the sha256 always, the signature where the
   deployment requires one, then the format's loader (``IntegrityError``,
   ``SignatureError``, ``ModelLoadError``);
3. **validate**: the loaded model must take exactly the inputs the descriptor declares
   and return at least its outputs (``SchemaMismatch``);
4. **warm**: one ``predict`` on a sample batch of one row built from the schema, bounded
   by a timeout, on a runner of its own so the serving model is not delayed; it must
   return one row per output (``ModelLoadError`` otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.backplane.records import now_ms
from modelstream.errors import ModelError, ModelLoadError, SchemaMismatch, ScoringError
from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.loader import LoadedModel
from modelstream.models.schema import ModelSchema
from modelstream.scoring.runner import ModelRunner
from modelstream.scoring.slot import ActiveModel
from modelstream.settings import Settings
from modelstream.wire.tensors import DATATYPES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where model bytes come from and how they are verified and loaded."""

    fetch: Callable[[ModelDescriptor], bytes]
    load: Callable[[ModelDescriptor, bytes, Deployment], LoadedModel]


def registry_source(settings: Settings | None = None) -> ModelSource:
    """The real source: the models package's store and verified loading pipeline."""
    from modelstream.models.formats import load_verified
    from modelstream.models.store import fetch_bytes

    def load(descriptor: ModelDescriptor, data: bytes, deployment: Deployment) -> LoadedModel:
        return load_verified(descriptor, data, deployment, settings=settings)

    return ModelSource(fetch=fetch_bytes, load=load)


def sample_inputs(schema: ModelSchema, rows: int = 1) -> dict[str, npt.NDArray[Any]]:
    """Zeros (empty strings for BYTES) of every input, ``rows`` rows, free dims as 1."""
    out: dict[str, npt.NDArray[Any]] = {}
    for spec in schema.inputs:
        shape = tuple(
            rows if i == 0 and d == -1 else (1 if d == -1 else d) for i, d in enumerate(spec.shape)
        )
        if spec.datatype == "BYTES":
            out[spec.name] = np.full(shape, "", dtype=np.object_)
        else:
            out[spec.name] = np.zeros(shape, dtype=DATATYPES[spec.datatype])
    return out


def validate_schema(descriptor: ModelDescriptor, model: LoadedModel) -> None:
    """Raise ``SchemaMismatch`` when ``model`` does not fit ``descriptor``'s schema."""
    declared, actual = descriptor.schema, model.schema
    if not declared.compatible_with(actual):
        raise SchemaMismatch(
            f"{descriptor.ref} declares inputs {[t.to_json() for t in declared.inputs]} and "
            f"outputs {[t.name for t in declared.outputs]}, but the model takes "
            f"{[t.to_json() for t in actual.inputs]} and returns "
            f"{[t.name for t in actual.outputs]}; republish it with its real schema"
        )


def warm(model: LoadedModel, timeout_s: float, name: str) -> float:
    """Run one sample batch through ``model``; the time it took (ms)."""
    runner = ModelRunner(timeout_s, name=f"{name}-warm")
    try:
        outputs, elapsed = runner.run(model, sample_inputs(model.schema))
    except ScoringError as exc:
        raise ModelLoadError(f"warm-up on a sample input failed: {exc}") from exc
    finally:
        runner.close(wait_s=0.0)
    for out_name, value in outputs.items():
        array = np.asarray(value)
        if array.ndim == 0 or array.shape[0] != 1:
            raise ModelLoadError(
                f"warm-up: output {out_name!r} has shape {list(array.shape)} for a batch of 1 "
                "row; a model must return one row per input row"
            )
    return elapsed


def prepare(
    descriptor: ModelDescriptor,
    deployment: Deployment,
    role: str,
    source: ModelSource,
    warm_timeout_s: float,
) -> tuple[ActiveModel, dict[str, float]]:
    """The version ready to serve, and the time of each step (ms); see the module doc."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mark = started

    def lap(step: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[step] = round((now - mark) * 1000, 3)
        mark = now

    try:
        data = source.fetch(descriptor)
    except ModelError:
        raise
    except Exception as exc:  # a store failure must not kill the follower's thread
        raise ModelLoadError(f"could not fetch {descriptor.ref}: {exc}") from exc
    lap("fetch")
    try:
        model = source.load(descriptor, data, deployment)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{descriptor.ref} did not load: {exc}") from exc
    lap("load")
    try:
        validate_schema(descriptor, model)
        lap("validate")
        warm(model, warm_timeout_s, descriptor.name)
        lap("warm")
    except BaseException:
        close_quietly(model)
        raise
    timings["total"] = round((time.perf_counter() - started) * 1000, 3)
    active = ActiveModel(descriptor.ref, role, model, descriptor, now_ms())
    return active, timings


def close_quietly(resource: object) -> None:
    """Close ``resource`` if it can be closed; a failure is logged, never raised (closing
    a broken model must not hide why it was refused, nor stop a role on its way out)."""
    closer = getattr(resource, "close", None)
    if closer is None:
        return
    try:
        closer()
    except Exception:
        log.debug("closing %r failed", resource, exc_info=True)
