"""Micro-batching: gather records, map request inputs to arrays, group and split.

Contract:

* :func:`collect` polls until it holds ``max_batch`` records, or ``max_wait_ms`` has
  passed since the first record arrived, whichever comes first. It returns early (with
  whatever it holds) so a scorer never sits on a record longer than ``max_wait_ms``
  plus one poll. With ``max_wait_ms`` 0 it polls once: the batch is whatever was
  already queued (natural batching), which under load fills batches without making a
  lone request wait. Measured on ``serve --processes`` with three models: a 2 ms wait
  cost a lone request about 2 ms at p50 and bought no throughput that the noise of
  the machine did not hide (``docs/benchmarks.md``).
* :func:`request_arrays` turns one request's wire tensors into the arrays the model's
  schema asks for (the *input mapping*, below) or raises ``InvalidRequest`` /
  ``SchemaMismatch`` saying what is wrong; the scorer answers such a request with an
  error score.
* :func:`make_batches` groups requests whose arrays are *compatible* (same input
  names, dtypes and every dimension after the first) and concatenates them along axis
  0, so the runtime sees one whole batch per group, in arrival order within a group.
* :func:`split_outputs` cuts a batch's outputs back into one mapping per request, by the
  rows each request brought. Every output must have the batch's row count on axis 0.

Input mapping, per input the schema declares:

1. the request input of the same name;
2. else, for an input called ``features``, the request's ``features`` object (set by
   the featurizer) as one row ``[1, k]`` **sorted by feature name** -- the same order as
   the archive's ``f_<name>`` columns and the trainer's training frame, so a model is
   served exactly the columns it was trained on (no train/serve skew from ordering);
3. else, when the model takes exactly one input and the request carries exactly one,
   that one whatever its name.

A one-dimensional array given for a two-dimensional input of matching width is read as
one row; a numeric array of another numeric datatype is cast to the schema's (JSON does
not keep float widths). Inputs the schema does not name are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.backplane.records import Record
from modelstream.errors import InvalidRequest, ScoringError
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import DATATYPES, datatype_of, tensor_to_array

Arrays = dict[str, npt.NDArray[Any]]
FEATURES_INPUT = "features"

Poll = Callable[[int, float], list[Record]]


def collect(poll: Poll, max_batch: int, max_wait_ms: float, first_timeout: float) -> list[Record]:
    """Up to ``max_batch`` records: wait ``first_timeout`` s for the first, then at most
    ``max_wait_ms`` more to fill the batch."""
    records = poll(max_batch, first_timeout)
    if not records or len(records) >= max_batch or max_wait_ms <= 0:
        return records
    deadline = time.monotonic() + max_wait_ms / 1000
    while len(records) < max_batch:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        more = poll(max_batch - len(records), remaining)
        if not more:
            break
        records.extend(more)
    return records


def _numeric(datatype: str) -> bool:
    return datatype not in ("BYTES", "BOOL")


def _conform(spec: TensorSpec, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``array`` cast and shaped for ``spec`` where that is unambiguous, else as it is."""
    have = datatype_of(array)
    if have != spec.datatype and _numeric(have) and _numeric(spec.datatype):
        array = array.astype(DATATYPES[spec.datatype], copy=False)
    if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] in (-1, array.shape[0]):
        array = array.reshape(1, -1)
    return array


def _features_row(spec: TensorSpec, features: Mapping[str, float | None]) -> npt.NDArray[Any]:
    dtype = DATATYPES.get(spec.datatype, np.float32)
    values = [np.nan if (v := features[k]) is None else v for k in sorted(features)]
    return np.asarray(values, dtype=dtype).reshape(1, -1)


def request_arrays(request: InferenceRequest, schema: ModelSchema) -> Arrays:
    """The model's inputs for ``request`` (see the module docstring for the mapping)."""
    given = {t.name: t for t in request.inputs}
    out: Arrays = {}
    rows: int | None = None
    for spec in schema.inputs:
        tensor = given.get(spec.name)
        if tensor is not None:
            array = tensor_to_array(tensor)
        elif spec.name == FEATURES_INPUT and request.features:
            array = _features_row(spec, request.features)
        elif len(schema.inputs) == 1 and len(given) == 1:
            array = tensor_to_array(next(iter(given.values())))
        else:
            raise InvalidRequest(
                f"request lacks input {spec.name!r}; the model takes "
                f"{', '.join(s.name for s in schema.inputs)}"
            )
        array = _conform(spec, array)
        if not spec.accepts(array):
            raise InvalidRequest(
                f"input {spec.name!r} must be {spec.datatype} of shape {list(spec.shape)}, "
                f"got {datatype_of(array)} of shape {list(array.shape)}"
            )
        if array.ndim == 0:
            raise InvalidRequest(f"input {spec.name!r} needs a batch dimension")
        if rows is not None and array.shape[0] != rows:
            raise InvalidRequest(
                f"inputs disagree on the number of rows: {rows} against {array.shape[0]}"
            )
        rows = int(array.shape[0])
        out[spec.name] = array
    return out


@dataclass(frozen=True, slots=True)
class Batch:
    """Compatible requests concatenated: ``rows[i]`` rows of ``inputs`` are request ``i``'s."""

    requests: tuple[InferenceRequest, ...]
    inputs: Arrays
    rows: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.requests)


def _signature(arrays: Arrays) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple(sorted((n, a.dtype.str, tuple(a.shape[1:])) for n, a in arrays.items()))


def make_batches(items: Sequence[tuple[InferenceRequest, Arrays]]) -> list[Batch]:
    """Group compatible requests (first-seen group first) and concatenate each group."""
    groups: dict[Any, list[tuple[InferenceRequest, Arrays]]] = {}
    for item in items:
        groups.setdefault(_signature(item[1]), []).append(item)
    batches = []
    for members in groups.values():
        names = list(members[0][1])
        if len(members) == 1:
            inputs = dict(members[0][1])
        else:
            inputs = {n: np.concatenate([arrays[n] for _, arrays in members]) for n in names}
        rows = tuple(int(arrays[names[0]].shape[0]) if names else 1 for _, arrays in members)
        batches.append(Batch(tuple(r for r, _ in members), inputs, rows))
    return batches


def split_outputs(batch: Batch, outputs: Mapping[str, Any]) -> list[Arrays]:
    """One mapping of outputs per request of ``batch``; ``ScoringError`` if misaligned."""
    total = sum(batch.rows)
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    for name, array in arrays.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ScoringError(
                f"output {name!r} has shape {list(array.shape)}, but the batch has {total} rows; "
                "a model must return one row per input row"
            )
    if batch.size == 1:
        return [arrays]
    parts: list[Arrays] = []
    start = 0
    for count in batch.rows:
        parts.append({name: array[start : start + count] for name, array in arrays.items()})
        start += count
    return parts
