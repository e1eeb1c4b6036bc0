"""Helpers shared by the record codecs: JSON in and out, typed field access.

Every decoder raises :class:`~modelstream.errors.DecodeError` (never ``KeyError`` or a
``TypeError``) with a message naming the field, so a reader can send the record to the
dead-letter topic with a useful reason and carry on.

The records of the request path (requests, scores, results and their tensors) are
msgspec ``Struct`` types, and each of their decoders has two steps:

1. :func:`typed` decodes the record straight into its type, checking every field's type
   and constraint (``msgspec.Meta``: a name that is not empty, sizes that are not
   negative) at C speed; the record's decoder then checks what types do not say, with
   :func:`~modelstream.wire.tensors.well_formed`. That is the common case, and it costs
   a quarter of the second step.
2. When it fails, the careful decoder (``field``, ``optional``, ``tensors`` ...) decodes
   the record again. It accepts what the wire format allows beyond the typed form (a
   ``null`` optional field, nested tensor data, a float batch size), and it names what
   is wrong when the record is bad.

Invariant: the first step accepts only records that the second accepts too, and then
returns the same value; so a decoder answers as its careful decoder does
(``tests/wire/test_typed.py`` checks it on generated records).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
import numpy as np
import orjson

from modelstream.errors import DecodeError, InvalidRequest
from modelstream.wire.tensors import Tensor, tensor_from_json

T = TypeVar("T")

MAX_RECORD_BYTES = 16 * 1024 * 1024


def loads(data: bytes, kind: str) -> Mapping[str, Any]:
    """Parse ``data`` as a JSON object of a ``kind`` record."""
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError(f"{kind} record of {len(data)} bytes exceeds {MAX_RECORD_BYTES} bytes")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{kind} record is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"{kind} record must be a JSON object, got {type(obj).__name__}")
    return obj


def dumps(obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain(obj: Any) -> Any:
    """What msgspec cannot encode by itself: numpy values and read-only mappings."""
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise NotImplementedError(f"cannot encode a {type(obj).__name__} in a record")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)


def encode(record: msgspec.Struct) -> bytes:
    """A record type's JSON (non-finite floats become ``null``, as :func:`dumps` does)."""
    return _ENCODER.encode(record)


def typed(data: bytes, decoder: msgspec.json.Decoder[T]) -> T | None:
    """``data`` decoded into the decoder's type, or ``None`` when it is not in that
    form (the careful decoder then decides, and names what is wrong)."""
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        return decoder.decode(data)
    except msgspec.DecodeError:  # and its subclass ValidationError
        return None


def field(obj: Mapping[str, Any], name: str, kind: type[T], record: str) -> T:
    """A required field of type ``kind`` (``int`` refuses booleans)."""
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        if value is None:
            raise DecodeError(f"{record} record lacks required field {name!r}")
        raise DecodeError(
            f"{record} field {name!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def optional(obj: Mapping[str, Any], name: str, kind: type[T], record: str) -> T | None:
    """An optional field: ``None`` when absent or null, else it must be ``kind``."""
    if obj.get(name) is None:
        return None
    return field(obj, name, kind, record)


def number(obj: Mapping[str, Any], name: str, record: str, default: float = 0.0) -> float:
    value = obj.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DecodeError(f"{record} field {name!r} must be a number")
    return float(value)


def tensors(obj: Mapping[str, Any], name: str, record: str) -> tuple[Tensor, ...] | None:
    """A list of protocol tensors, or ``None`` when the field is absent or null."""
    raw = obj.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise DecodeError(f"{record} field {name!r} must be a list of tensors")
    try:
        return tuple(tensor_from_json(item, where=name.rstrip("s")) for item in raw)
    except InvalidRequest as exc:
        raise DecodeError(f"{record} record: {exc}") from None


def strings(obj: Mapping[str, Any], name: str, record: str) -> tuple[str, ...]:
    raw = obj.get(name) or []
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise DecodeError(f"{record} field {name!r} must be a list of strings")
    return tuple(raw)
