"""Translation between Open Inference Protocol (V2) JSON and modelstream's records.

Pure functions, no I/O: the data plane calls them, and the unit tests pin them down.

* :func:`parse_infer` validates an inference request body (``InvalidRequest`` saying
  what to fix).
* :func:`check_inputs` checks its inputs against a model schema, naming the input at
  fault.
* :func:`parse_version` reads the ``{version}`` of a ``/versions/{version}`` URL:
  ``name@version`` names one model version; a bare integer ``N`` means version ``N``
  of the champion's model.
* :func:`infer_response` turns the :class:`~modelstream.wire.results.Result` into the
  protocol's response, or raises ``DeadlineExceeded`` when the result carries no outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelstream.errors import ConfigurationError, DeadlineExceeded, InvalidRequest
from modelstream.models.deployment import Deployment
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema
from modelstream.wire.results import Result
from modelstream.wire.tensors import Tensor, tensor_from_json, tensor_to_array

MAX_DEADLINE_MS = 3_600_000
MAX_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class InferCall:
    """A validated inference request body."""

    inputs: tuple[Tensor, ...]
    id: str | None = None
    deadline_ms: int | None = None
    entity: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()  # requested output names; empty means all


def parse_infer(payload: Any) -> InferCall:
    """Validate an inference request body (already parsed from JSON).

    Accepts everything the protocol allows: ``inputs`` (required, non-empty), ``id``,
    ``parameters`` and ``outputs``. Of the parameters, ``deadline_ms`` (positive
    integer) and ``entity`` (string) mean something to modelstream; all are passed on.
    """
    if not isinstance(payload, Mapping):
        raise InvalidRequest("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("'inputs' must be a non-empty list of tensors")
    inputs = tuple(tensor_from_json(item) for item in raw_inputs)
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"input names must be unique, got {names}")
    request_id = payload.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LENGTH
    ):
        raise InvalidRequest(f"'id' must be a string of 1-{MAX_ID_LENGTH} characters")
    parameters = payload.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, Mapping):
        raise InvalidRequest("'parameters' must be an object")
    deadline_ms = parameters.get("deadline_ms")
    if deadline_ms is not None and (
        not isinstance(deadline_ms, int)
        or isinstance(deadline_ms, bool)
        or not 0 < deadline_ms <= MAX_DEADLINE_MS
    ):
        raise InvalidRequest(
            f"parameters.deadline_ms must be an integer from 1 to {MAX_DEADLINE_MS}"
        )
    entity = parameters.get("entity")
    if entity is not None and not isinstance(entity, str):
        raise InvalidRequest("parameters.entity must be a string")
    return InferCall(
        inputs=inputs,
        id=request_id,
        deadline_ms=deadline_ms,
        entity=entity,
        parameters=dict(parameters),
        outputs=_requested_outputs(payload.get("outputs")),
    )


def _requested_outputs(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(o, Mapping) and isinstance(o.get("name"), str) for o in raw
    ):
        raise InvalidRequest("'outputs' must be a list of objects with a string 'name'")
    return tuple(str(o["name"]) for o in raw)


def check_outputs(outputs: Sequence[str], schema: ModelSchema) -> None:
    """Raise ``InvalidRequest`` when a requested output name is not an output of
    ``schema`` (a schema without outputs accepts any name)."""
    known = [o.name for o in schema.outputs]
    unknown = [name for name in outputs if name not in known]
    if known and unknown:
        raise InvalidRequest(
            f"output {unknown[0]!r} is not an output of the model; it has {', '.join(known)}"
        )


def check_inputs(inputs: Sequence[Tensor], schema: ModelSchema) -> None:
    """Raise ``InvalidRequest`` naming the first input that does not fit ``schema``.

    Every schema input must be present with the schema's datatype, rank and fixed
    dimensions (``-1`` matches any size); inputs the model does not take are refused;
    values must fit the datatype. A schema without inputs accepts anything.
    """
    if not schema.inputs:
        return
    by_name = {t.name: t for t in inputs}
    expected = ", ".join(f"{s.name} ({s.datatype} {list(s.shape)})" for s in schema.inputs)
    for spec in schema.inputs:
        tensor = by_name.pop(spec.name, None)
        if tensor is None:
            raise InvalidRequest(f"input {spec.name!r} is missing; the model takes {expected}")
        if tensor.datatype != spec.datatype:
            raise InvalidRequest(
                f"input {spec.name!r} must have datatype {spec.datatype}, got {tensor.datatype}"
            )
        if len(tensor.shape) != len(spec.shape) or any(
            d not in (-1, a) for d, a in zip(spec.shape, tensor.shape, strict=True)
        ):
            raise InvalidRequest(
                f"input {spec.name!r} must have shape {list(spec.shape)} "
                f"(-1: any size), got {list(tensor.shape)}"
            )
        if tensor.datatype != "BYTES":
            with np.errstate(over="ignore"):  # an overflow is refused below, not warned
                array = tensor_to_array(tensor)  # raises InvalidRequest on values that do not fit
            # JSON has no infinity, so an infinite value is one too large for the type.
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise InvalidRequest(
                    f"input {spec.name!r} has values too large for {spec.datatype} "
                    f"(largest {float(np.finfo(array.dtype).max):.4g}); scale them down"
                )
    if by_name:
        raise InvalidRequest(
            f"input {next(iter(by_name))!r} is not an input of the model; it takes {expected}"
        )


def parse_version(version: str, deployment: Deployment) -> ModelRef:
    """The model version a ``/versions/{version}`` URL names.

    ``name@N`` is version ``N`` of model ``name``; a bare integer ``N`` is version ``N``
    of the champion's model. Anything else is an ``InvalidRequest``. The caller checks
    that the ref is live (``Deployment.live_ref``): several versions of one name may be.
    """
    text = version.strip()
    if text.isdigit():
        champion = deployment.champion
        if champion is None:
            raise InvalidRequest(
                f"service {deployment.service!r} has no champion, so version {text} "
                "names no model; use NAME@VERSION"
            )
        if int(text) < 1:
            raise InvalidRequest("model versions start at 1")
        return ModelRef(champion.ref.name, int(text))
    try:
        return ModelRef.parse(text)
    except ConfigurationError as exc:
        raise InvalidRequest(str(exc)) from None


def infer_response(
    result: Result, outputs: Sequence[str] = (), client_id: str | None = None
) -> dict[str, Any]:
    """The protocol's inference response for ``result``.

    ``model_name`` is the service and ``model_version`` the answering model's
    ``name@version`` (absent when the service's fallback answered). ``parameters`` hold
    ``policy``, ``model``, ``deadline_met`` and ``fallback``. A result without outputs
    (every model failed or was late and no fallback output is configured) raises
    ``DeadlineExceeded`` with the result's error.
    """
    if result.outputs is None:
        raise DeadlineExceeded(
            result.error or f"no model answered request {result.request_id!r} by its deadline"
        )
    chosen = result.outputs
    if outputs:
        wanted = set(outputs)
        chosen = tuple(t for t in chosen if t.name in wanted)
    response: dict[str, Any] = {
        "model_name": result.service,
        "id": client_id if client_id is not None else result.request_id,
        "parameters": {
            "policy": result.policy,
            "model": result.ref,
            "deadline_met": result.deadline_met,
            "fallback": result.fallback,
        },
        "outputs": [t.to_json() for t in chosen],
    }
    if result.ref is not None:
        response["model_version"] = result.ref
    return response


def schema_metadata(
    service: str, versions: Sequence[str], schema: ModelSchema | None, platform: str
) -> dict[str, Any]:
    """The protocol's model metadata response for ``service``."""
    return {
        "name": service,
        "versions": list(versions),
        "platform": platform,
        "inputs": [] if schema is None else [t.to_json() for t in schema.inputs],
        "outputs": [] if schema is None else [t.to_json() for t in schema.outputs],
    }
