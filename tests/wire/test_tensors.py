"""Open Inference Protocol tensors: validation and numpy round trips."""

from __future__ import annotations

import numpy as np
import pytest

from modelstream.errors import InvalidRequest
from modelstream.wire.tensors import (
    array_to_tensor,
    datatype_of,
    tensor_from_json,
    tensor_to_array,
)


def test_nested_and_flat_data_give_the_same_array() -> None:
    flat = tensor_from_json(
        {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    )
    nested = tensor_from_json(
        {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
    )
    assert flat == nested
    array = tensor_to_array(flat)
    assert array.dtype == np.float32
    assert array.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}, "needs 4 values"),
        ({"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}, "is not one of"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}, "non-negative"),
        ({"name": "", "datatype": "FP32", "shape": [1], "data": [1]}, "non-empty string"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "'data' is missing"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_tensors_say_what_to_fix(obj: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        tensor_from_json(obj)


def test_values_that_do_not_fit_the_datatype_are_refused() -> None:
    tensor = tensor_from_json({"name": "x", "datatype": "INT32", "shape": [1], "data": ["a"]})
    with pytest.raises(InvalidRequest, match="do not fit datatype INT32"):
        tensor_to_array(tensor)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.bool_, np.uint8])
def test_array_round_trip_keeps_dtype_shape_and_values(dtype: type) -> None:
    array = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
    tensor = array_to_tensor("out", array)
    back = tensor_to_array(tensor)
    assert back.dtype == array.dtype
    assert back.shape == (2, 3)
    assert np.array_equal(back, array)


def test_strings_are_bytes_tensors() -> None:
    tensor = array_to_tensor("s", np.array(["a", "b"]))
    assert tensor.datatype == "BYTES"
    assert tensor.data == ("a", "b")
    assert datatype_of(np.array([b"x"], dtype=object)) == "BYTES"
