"""Tensors in the Open Inference Protocol's JSON form, and their numpy counterparts.

A tensor on the wire is ``{"name", "datatype", "shape", "data"}`` where ``data`` is the
row-major flattened (or nested) list of values. :func:`tensor_to_array` validates it
(known datatype, data length equal to the product of the shape) and
:func:`array_to_tensor` goes the other way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt

from modelstream.errors import InvalidRequest

# Open Inference Protocol datatypes and their numpy dtypes.
DATATYPES: dict[str, npt.DTypeLike] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}

_BY_KIND = {np.dtype(v).str: k for k, v in DATATYPES.items() if k != "BYTES"}
# The same by dtype object: a dict lookup without building ``dtype.str`` (hot path).
_BY_DTYPE = {np.dtype(v): k for k, v in DATATYPES.items() if k != "BYTES"}
# Types of values that are never nested: a list of only these is already flat.
_SCALARS = frozenset({int, float, bool, str, bytes, type(None)})
_INTS = frozenset({int})


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The protocol datatype naming ``array``'s dtype (strings and objects are BYTES)."""
    dtype = array.dtype
    found = _BY_DTYPE.get(dtype)
    if found is not None:
        return found
    if dtype.kind in "OUS":
        return "BYTES"
    try:
        return _BY_KIND[dtype.str]
    except KeyError:
        raise InvalidRequest(f"dtype {array.dtype} has no Open Inference datatype") from None


class Tensor(msgspec.Struct, frozen=True, gc=False):
    """A named tensor as carried on the wire (``data`` is flat, row-major).

    Like every record of the request path, a frozen msgspec ``Struct`` rather than a
    frozen dataclass: immutable and slotted the same, but built ten times faster, and
    decoded and encoded in C. Building it checks nothing; :func:`tensor_from_json` and
    :func:`well_formed` are the checks.

    The records of the request path are also left out of the garbage collector
    (``gc=False``): the rendezvous keeps a decided request's records for late answers,
    until a late window (1 s by default) after its deadline, so under load some hundred
    thousand of them are alive at once, and each collection would walk them all, with
    every thread stopped. A record holds values (strings, numbers, tuples, other records,
    a mapping made for it) and never itself, so it can be part of no reference cycle, the
    one thing the collector is for.
    """

    # The constraints are checked when a record is decoded by type (not when one is built).
    name: Annotated[str, msgspec.Meta(min_length=1)]
    datatype: str
    shape: tuple[Annotated[int, msgspec.Meta(ge=0)], ...]
    data: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "data": list(self.data),
        }


def _flatten(data: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(data, list | tuple):
        # Fast path (the usual case): the types are checked at C speed, and a sequence
        # of scalars only is returned as it is.
        if _SCALARS.issuperset(map(type, data)):
            return data
        out: list[Any] = []
        for item in data:
            if isinstance(item, list | tuple):
                out.extend(_flatten(item))
            else:
                out.append(item)
        return out
    return [data]


def _dimension(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0


def tensor_from_json(obj: Any, *, where: str = "input") -> Tensor:
    """Validate one protocol tensor object; raises ``InvalidRequest`` saying what to fix."""
    # Exact-type checks first: they are the common case and much cheaper than the ABC
    # and union isinstance checks, which still decide every other case as before.
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise InvalidRequest(f"each {where} must be an object with name, datatype, shape, data")
    name = obj.get("name")
    datatype = obj.get("datatype")
    shape = obj.get("shape")
    data = obj.get("data")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"every {where} needs a non-empty string 'name'")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidRequest(
            f"{where} {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
        )
    if type(shape) is list and _INTS.issuperset(map(type, shape)):
        if shape and min(shape) < 0:
            raise InvalidRequest(
                f"{where} {name!r}: 'shape' must be a list of non-negative integers"
            )
    elif not isinstance(shape, list | tuple) or not all(_dimension(d) for d in shape):
        raise InvalidRequest(f"{where} {name!r}: 'shape' must be a list of non-negative integers")
    if data is None:
        raise InvalidRequest(f"{where} {name!r}: 'data' is missing")
    flat = _flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise InvalidRequest(
            f"{where} {name!r}: shape {list(shape)} needs {expected} values, got {len(flat)}"
        )
    return Tensor(name, datatype, tuple(shape), tuple(flat))


def well_formed(tensors: tuple[Tensor, ...]) -> bool:
    """Whether tensors decoded by their types (a name, sizes that are not negative) also
    pass :func:`tensor_from_json`: a known datatype, and flat data of the shape's size
    (``False`` for nested data, which the careful decoder flattens)."""
    for t in tensors:
        if (
            t.datatype not in DATATYPES
            or not _SCALARS.issuperset(map(type, t.data))
            or len(t.data) != math.prod(t.shape)
        ):
            return False
    return True


def tensor_to_array(tensor: Tensor) -> npt.NDArray[Any]:
    """The tensor as a numpy array of its shape; raises ``InvalidRequest`` on bad values."""
    try:
        if tensor.datatype == "BYTES":
            array = np.array(tensor.data, dtype=np.object_)
        else:
            array = np.asarray(tensor.data, dtype=DATATYPES[tensor.datatype])
        return array.reshape(tensor.shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(
            f"tensor {tensor.name!r}: values do not fit datatype {tensor.datatype}: {exc}"
        ) from None


def array_to_tensor(name: str, array: npt.NDArray[Any] | list[Any]) -> Tensor:
    """A wire tensor holding ``array`` (numpy scalars become plain Python values)."""
    arr = np.asarray(array)
    datatype = datatype_of(arr)
    if datatype == "BYTES":
        values = tuple(
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.ravel()
        )
    else:
        values = tuple(arr.ravel().tolist())
    return Tensor(name, datatype, tuple(int(d) for d in arr.shape), values)
