from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from modelstream.backplane.records import Record
from modelstream.errors import InvalidRequest, ScoringError
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.scoring.batcher import collect, make_batches, request_arrays, split_outputs
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import Tensor, array_to_tensor

from .fakes import SCHEMA


def request(rid: str, rows: list[list[float]] | None = None, **kw: object) -> InferenceRequest:
    inputs = kw.pop("inputs", None)
    if inputs is None:
        inputs = (array_to_tensor("input", np.asarray(rows or [[1, 2, 3]], np.float32)),)
    return InferenceRequest(rid, "svc", 0, 10**13, inputs, **kw)  # type: ignore[arg-type]


def test_inputs_by_name_cast_and_single_row() -> None:
    arrays = request_arrays(request("a", [[1, 2, 3]]), SCHEMA)
    assert arrays["input"].dtype == np.float32 and arrays["input"].shape == (1, 3)
    fp64 = Tensor("input", "FP64", (3,), (1.0, 2.0, 3.0))  # 1-D and FP64: one row, cast
    arrays = request_arrays(request("b", inputs=(fp64,)), SCHEMA)
    assert arrays["input"].shape == (1, 3) and arrays["input"].dtype == np.float32


def test_single_input_under_another_name_and_features() -> None:
    renamed = (array_to_tensor("x", np.ones((2, 3), np.float32)),)
    assert request_arrays(request("a", inputs=renamed), SCHEMA)["input"].shape == (2, 3)
    schema = ModelSchema((TensorSpec("features", "FP32", (-1, 2)),), SCHEMA.outputs)
    features: Mapping[str, float] = {"b": 2.0, "a": 1.0}
    req = InferenceRequest(
        "f", "svc", 0, 1, (Tensor("other", "FP32", (0,), ()),), features=features
    )
    arrays = request_arrays(req, schema)
    assert arrays["features"].tolist() == [[1.0, 2.0]]  # sorted by feature name


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (Tensor("input", "FP32", (1, 4), (1.0, 2.0, 3.0, 4.0)), "must be FP32 of shape"),
        (Tensor("input", "BYTES", (1, 3), ("a", "b", "c")), "must be FP32"),
    ],
)
def test_inputs_that_do_not_fit_are_refused(tensor: Tensor, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        request_arrays(request("a", inputs=(tensor,)), SCHEMA)


def test_an_input_of_the_schema_s_own_datatype_and_shape_is_taken_as_it_is() -> None:
    exact = Tensor("input", "FP32", (2, 3), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
    arrays = request_arrays(request("a", inputs=(exact,)), SCHEMA)
    assert arrays["input"].dtype == np.float32
    assert arrays["input"].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    # Its values are still checked, and a scalar still lacks a batch dimension.
    text = Tensor("input", "FP32", (1, 3), (1.0, "two", 3.0))
    with pytest.raises(InvalidRequest, match="values do not fit datatype FP32"):
        request_arrays(request("b", inputs=(text,)), SCHEMA)
    scalar = ModelSchema((TensorSpec("input", "FP32", ()),), SCHEMA.outputs)
    with pytest.raises(InvalidRequest, match="needs a batch dimension"):
        request_arrays(request("c", inputs=(Tensor("input", "FP32", (), (1.0,)),)), scalar)


def test_missing_input_is_refused() -> None:
    schema = ModelSchema(
        (TensorSpec("a", "FP32", (-1, 1)), TensorSpec("b", "FP32", (-1, 1))), SCHEMA.outputs
    )
    with pytest.raises(InvalidRequest, match="lacks input 'a'"):
        request_arrays(request("x"), schema)


def test_batches_group_compatible_requests_and_split_back() -> None:
    reqs = [request("a", [[1, 1, 1]]), request("b", [[2, 2, 2], [3, 3, 3]])]
    odd = request("c", inputs=(Tensor("input", "FP32", (1, 3), (9.0, 9.0, 9.0)),))
    items = [(r, request_arrays(r, SCHEMA)) for r in [*reqs, odd]]
    # A request with another trailing shape cannot share a batch.
    other = ModelSchema((TensorSpec("input", "FP32", (-1, -1)),), SCHEMA.outputs)
    wide = request("d", inputs=(array_to_tensor("input", np.ones((1, 5), np.float32)),))
    items.append((wide, request_arrays(wide, other)))
    batches = make_batches(items)
    assert [[r.id for r in b.requests] for b in batches] == [["a", "b", "c"], ["d"]]
    first = batches[0]
    assert first.inputs["input"].shape == (4, 3) and first.rows == (1, 2, 1)
    parts = split_outputs(first, {"y": first.inputs["input"].sum(axis=1)})
    assert [p["y"].tolist() for p in parts] == [[3.0], [6.0, 9.0], [27.0]]


def test_outputs_without_one_row_per_input_row_are_an_error() -> None:
    r = request("a", [[1, 1, 1], [2, 2, 2]])
    (batch,) = make_batches([(r, request_arrays(r, SCHEMA))])
    with pytest.raises(ScoringError, match="one row per input row"):
        split_outputs(batch, {"y": np.zeros(1)})
    with pytest.raises(ScoringError):
        split_outputs(batch, {"y": np.float32(1)})


def test_collect_fills_a_batch_within_max_wait() -> None:
    rec = Record("t", 0, 0, 0, None, b"")
    feed = [[rec], [rec, rec], [], [rec]]
    calls: list[tuple[int, float]] = []

    def poll(n: int, timeout: float) -> list[Record]:
        calls.append((n, timeout))
        return feed.pop(0) if feed else []

    assert len(collect(poll, 8, 50.0, 0.1)) == 3  # stops at the first empty poll
    assert calls[0] == (8, 0.1) and calls[1][0] == 7
    feed[:] = [[rec] * 4]
    assert len(collect(poll, 4, 50.0, 0.1)) == 4  # full at once: no more polls
    feed[:] = [[rec], [rec]]
    assert len(collect(poll, 4, 0.0, 0.1)) == 1  # no waiting at all


def test_fast_output_tensors_equal_the_general_conversion() -> None:
    from modelstream.scoring.process import _tensors

    reqs = [request("a", [[1, 1, 1]]), request("b", [[2, 2, 2], [3, 3, 3]]), request("c")]
    (batch,) = make_batches([(r, request_arrays(r, SCHEMA)) for r in reqs])
    outputs = {
        "label": np.arange(4, dtype=np.int64),
        "probabilities": np.arange(8, dtype=np.float32).reshape(4, 2) / 8,
        "text": np.array(["w", "x", "y", "z"], dtype=object),
    }
    parts = split_outputs(batch, outputs)
    fast = _tensors(batch.rows, parts, outputs)
    slow = [tuple(array_to_tensor(n, v) for n, v in part.items()) for part in parts]
    assert fast == slow
