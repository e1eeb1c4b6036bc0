"""Tables in, model inputs out, and back: the data mapping of the embedded scorer.

:func:`read_input` turns what a user hands :meth:`EmbeddedScorer.score
<modelstream.scoring.embedded.EmbeddedScorer.score>` into the arrays the serving model's
schema asks for; :func:`write_output` puts the model's outputs back into the same kind
of container; :func:`score_records` makes the ``<service>.scores`` records of a call.
All are pure (no I/O).

**Input mapping** of a table (pandas DataFrame, Arrow table or RecordBatch, list of
dicts), per input the schema declares:

1. a column named like the input: its values (scalars, or one array per row, stacked);
2. else, for a model of exactly one input, the *feature columns* -- ``columns`` when
   given, else every column but the id column -- in column order, as one row
   ``[N, k]`` (``k`` must be the model's width, so column order is the training order);
3. else ``InvalidRequest`` naming the missing input.

A numpy array is the single input of a one-input model (a one-dimensional array of the
model's width is one row). Numeric values are cast to the schema's datatype; a shape or
datatype that still does not fit raises ``InvalidRequest`` saying what was expected.

**Output columns** (:func:`output_columns`), in the order the model returns them: the
first output that is not a probability output is ``prediction`` (``prediction_<j>``
when it is wider than one column); a probability output (``probabilities`` and the
like, see :data:`modelstream.archive.rows.PROBABILITY_OUTPUTS`) is ``probability_<j>``
per class; any other output keeps its name (``<name>_<j>`` when wider). Every scored
table also gets ``model`` (the model name) and ``model_version`` (int): the version that
computed every row of that call. A column of the input with one of these names is
replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modelstream.archive.rows import PROBABILITY_OUTPUTS
from modelstream.backplane.records import OutRecord
from modelstream.errors import InvalidRequest
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.wire.scores import Score
from modelstream.wire.tensors import DATATYPES, Tensor, datatype_of

Arrays = dict[str, npt.NDArray[Any]]
Kind = Literal["pandas", "arrow_table", "arrow_batch", "numpy", "records"]

MODEL_COLUMN = "model"
VERSION_COLUMN = "model_version"


@dataclass(frozen=True, slots=True)
class Input:
    """One call's data: what it was, the model's inputs, and the row ids if it had any."""

    kind: Kind
    data: Any
    arrays: Arrays
    rows: int
    ids: list[str] | None


@dataclass(frozen=True, slots=True)
class ScoredArrays:
    """What scoring a numpy array returns: the outputs by name and who computed them."""

    outputs: Arrays
    ref: ModelRef

    @property
    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """The outputs as named one-dimensional columns (see the module doc)."""
        return output_columns(self.outputs)


def _numeric(datatype: str) -> bool:
    return datatype not in ("BYTES", "BOOL")


def conform(spec: TensorSpec, value: Any) -> npt.NDArray[Any]:
    """``value`` as an array for ``spec``: cast, a lone row or column shaped; else raise."""
    array = np.asarray(value)
    if array.dtype.kind in "OUS" and spec.datatype != "BYTES":
        try:
            array = np.asarray(array.tolist(), dtype=DATATYPES.get(spec.datatype))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"input {spec.name!r} is not {spec.datatype}: {exc}") from None
    have = datatype_of(array)
    if have != spec.datatype and _numeric(have) and _numeric(spec.datatype):
        array = array.astype(DATATYPES[spec.datatype], copy=False)
    if array.ndim == 1 and len(spec.shape) == 2:
        if spec.shape[1] == 1:
            array = array.reshape(-1, 1)
        elif spec.shape[1] == array.shape[0]:
            array = array.reshape(1, -1)
    if not spec.accepts(array):
        raise InvalidRequest(
            f"input {spec.name!r} must be {spec.datatype} of shape {list(spec.shape)}, "
            f"got {datatype_of(array)} of shape {list(array.shape)}"
        )
    return array


def arrays_for(inputs: Mapping[str, Any], schema: ModelSchema) -> Arrays:
    """The model's inputs from arrays by name (a one-input model takes a lone array of any
    name); ``InvalidRequest`` when one is missing or does not fit, or rows disagree."""
    out: Arrays = {}
    for spec in schema.inputs:
        if spec.name in inputs:
            value = inputs[spec.name]
        elif len(schema.inputs) == 1 and len(inputs) == 1:
            value = next(iter(inputs.values()))
        else:
            raise InvalidRequest(
                f"no input {spec.name!r}; the model takes {', '.join(_names(schema))}"
            )
        out[spec.name] = conform(spec, value)
    rows = {a.shape[0] for a in out.values() if a.ndim > 0}
    if len(rows) > 1:
        raise InvalidRequest(f"inputs disagree on the number of rows: {sorted(rows)}")
    return out


def _names(schema: ModelSchema) -> list[str]:
    return [f"{s.name} ({s.datatype} {list(s.shape)})" for s in schema.inputs]


def _column_values(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A column whose cells are arrays or lists becomes one stacked array."""
    if values.dtype == object and len(values) and isinstance(values[0], list | tuple | np.ndarray):
        return np.stack([np.asarray(v) for v in values])
    return values


def table_arrays(
    names: Sequence[str],
    column: Any,
    schema: ModelSchema,
    id_column: str | None,
    columns: Sequence[str] | None,
) -> Arrays:
    """The model's inputs from a table given its column ``names`` and a ``column(name)``
    returning a column's values as a numpy array (see the module doc)."""
    present = set(names)
    out: dict[str, Any] = {}
    for spec in schema.inputs:
        if spec.name in present and columns is None:
            out[spec.name] = _column_values(column(spec.name))
            continue
        if len(schema.inputs) != 1:
            raise InvalidRequest(
                f"the table has no column {spec.name!r}; a model of several inputs needs a "
                f"column per input: {', '.join(_names(schema))}"
            )
        features = list(columns) if columns is not None else [n for n in names if n != id_column]
        missing = [c for c in features if c not in present]
        if missing:
            raise InvalidRequest(f"the table has no column(s) {missing}; it has {list(names)}")
        width = spec.shape[1] if len(spec.shape) == 2 else -1
        if width not in (-1, len(features)):
            raise InvalidRequest(
                f"model input {spec.name!r} takes {width} features per row, but the table "
                f"gives {len(features)} feature columns ({features}); pass columns=[...] in "
                "training order, or drop the others"
            )
        out[spec.name] = np.column_stack([column(c) for c in features])
    return arrays_for(out, schema)


def read_input(
    data: Any,
    schema: ModelSchema,
    *,
    id_column: str | None = "id",
    columns: Sequence[str] | None = None,
) -> Input:
    """Recognise ``data`` and build the model's inputs; ``InvalidRequest`` on a bad fit,
    ``TypeError`` for a kind of data this module does not read."""
    kind, names, column = _reader(data)
    if kind == "numpy":
        arrays = arrays_for({"": data}, schema) if len(schema.inputs) == 1 else None
        if arrays is None:
            raise InvalidRequest(
                f"the model takes {len(schema.inputs)} inputs ({', '.join(_names(schema))}): "
                "pass a table with a column per input, or use score_arrays({name: array})"
            )
        ids = None
    else:
        arrays = table_arrays(names, column, schema, id_column, columns)
        ids = (
            [str(v) for v in column(id_column).tolist()]
            if id_column is not None and id_column in names
            else None
        )
    rows = int(next(iter(arrays.values())).shape[0]) if arrays else 0
    return Input(kind, data, arrays, rows, ids)


def _reader(data: Any) -> tuple[Kind, list[str], Any]:
    if isinstance(data, np.ndarray):
        return "numpy", [], None
    if isinstance(data, list):
        return _records_reader(data)
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and hasattr(data, "columns"):
        frame = data
        return (
            "pandas",
            [str(c) for c in frame.columns],
            lambda name: frame[name].to_numpy(),
        )
    if module == "pyarrow":
        import pyarrow as pa

        if isinstance(data, pa.Table | pa.RecordBatch):
            kind: Kind = "arrow_table" if isinstance(data, pa.Table) else "arrow_batch"
            table = data
            return (
                kind,
                list(table.schema.names),
                lambda name: _arrow_column(table.column(name)),
            )
    raise TypeError(
        f"cannot score a {type(data).__name__}: pass a pandas DataFrame, a pyarrow Table or "
        "RecordBatch, a numpy array, or a list of dicts"
    )


def _arrow_column(col: Any) -> npt.NDArray[Any]:
    values = col.to_numpy(zero_copy_only=False) if hasattr(col, "chunks") else col.to_numpy(False)
    return np.asarray(values)


def _records_reader(rows: list[Any]) -> tuple[Kind, list[str], Any]:
    if not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("a list to score must hold dicts (one per row, column -> value)")
    names = [str(k) for k in rows[0]] if rows else []

    def column(name: str) -> npt.NDArray[Any]:
        try:
            values = [row[name] for row in rows]
        except KeyError:
            raise InvalidRequest(f"a row lacks {name!r}; every row needs {names}") from None
        if values and isinstance(values[0], list | tuple | np.ndarray):
            return np.stack([np.asarray(v) for v in values])
        return np.asarray(values)

    return "records", names, column


def _layout(widths: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """``(column, output, index)`` for outputs of the given widths (see the module doc)."""
    layout: list[tuple[str, str, int]] = []
    prediction_taken = False
    for name, width in widths.items():
        if name in PROBABILITY_OUTPUTS:
            base = "probability"
        elif not prediction_taken:
            base, prediction_taken = "prediction", True
        else:
            base = name
        if width == 1:
            layout.append((base, name, 0))
        else:
            layout.extend((f"{base}_{j}", name, j) for j in range(width))
    return layout


def _flat(value: Any) -> npt.NDArray[Any]:
    array = np.asarray(value)
    width = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
    return array.reshape(array.shape[0], width)


def output_columns(outputs: Mapping[str, Any]) -> dict[str, npt.NDArray[Any]]:
    """The model's outputs as named one-dimensional columns (see the module doc)."""
    flat = {name: _flat(value) for name, value in outputs.items()}
    layout = _layout({name: int(a.shape[1]) for name, a in flat.items()})
    return {column: flat[name][:, j] for column, name, j in layout}


def output_fields(schema: ModelSchema) -> list[tuple[str, str]]:
    """``(column, datatype)`` of every column scoring with a model of ``schema`` adds, in
    order, ``model`` and ``model_version`` last; ``InvalidRequest`` when an output's
    width is not fixed in the schema (it is then known only from the data)."""
    widths: dict[str, int] = {}
    for spec in schema.outputs:
        inner = spec.shape[1:]
        if any(d < 0 for d in inner):
            raise InvalidRequest(
                f"output {spec.name!r} has shape {list(spec.shape)}: its width is not fixed, "
                "so give the scored schema yourself"
            )
        widths[spec.name] = int(np.prod(inner)) if inner else 1
    types = {s.name: s.datatype for s in schema.outputs}
    fields = [(column, types[name]) for column, name, _ in _layout(widths)]
    return [*fields, (MODEL_COLUMN, "BYTES"), (VERSION_COLUMN, "INT64")]


def empty_outputs(schema: ModelSchema) -> Arrays:
    """Zero rows of every output of ``schema`` (free inner dimensions taken as 1)."""
    return {
        s.name: np.zeros(
            (0, *(1 if d < 0 else d for d in s.shape[1:])),
            dtype=DATATYPES.get(s.datatype, np.object_),
        )
        for s in schema.outputs
    }


def write_output(source: Input, outputs: Mapping[str, Any], ref: ModelRef) -> Any:
    """The scored data, the same kind as ``source`` (numpy: :class:`ScoredArrays`)."""
    if source.kind == "numpy":
        return ScoredArrays(dict(outputs), ref)
    columns = output_columns(outputs)
    columns[MODEL_COLUMN] = np.full(source.rows, ref.name, dtype=object)
    columns[VERSION_COLUMN] = np.full(source.rows, ref.version, dtype=np.int64)
    data = source.data
    if source.kind == "pandas":
        out = data.copy(deep=False)
        for name, values in columns.items():
            out[name] = values
        return out
    if source.kind == "records":
        lists = {name: values.tolist() for name, values in columns.items()}
        return [
            {**row, **{name: values[i] for name, values in lists.items()}}
            for i, row in enumerate(data)
        ]
    import pyarrow as pa

    kept = [n for n in data.schema.names if n not in columns]
    arrays = [data.column(n) for n in kept] + [pa.array(v) for v in columns.values()]
    names = kept + list(columns)
    if source.kind == "arrow_table":
        return pa.Table.from_arrays(arrays, names=names)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def score_records(  # noqa: PLR0917 - one call site, every field of a score
    ref: ModelRef,
    role: str,
    ids: Sequence[str],
    outputs: Mapping[str, npt.NDArray[Any]] | None,
    error: str | None,
    latency_ms: float,
    at: int,
) -> list[OutRecord]:
    """One ``<service>.scores`` record per row (key = its id): its slice of ``outputs``
    as tensors of one row, or ``error`` for every row when ``outputs`` is ``None``."""
    rows = len(ids)
    per_row: list[tuple[Tensor, ...] | None] = [None] * rows
    if outputs is not None:
        columns = []
        for name, array in outputs.items():
            inner = tuple(int(d) for d in array.shape[1:])
            values = array.reshape(rows, -1).tolist()  # one conversion per output
            columns.append((name, datatype_of(array), (1, *inner), values))
        per_row = [
            tuple(Tensor(n, dt, shape, tuple(values[i])) for n, dt, shape, values in columns)
            for i in range(rows)
        ]
    records = []
    for request_id, tensors in zip(ids, per_row, strict=True):
        score = Score(
            request_id=request_id,
            model=ref.name,
            version=ref.version,
            outputs=tensors,
            error=error,
            latency_ms=round(latency_ms, 4),
            scored_at=at,
            role=role,
            batch_size=rows,
        )
        records.append(OutRecord(score.encode(), request_id.encode(), timestamp=at))
    return records
