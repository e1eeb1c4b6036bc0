"""The typed first step of the request path's decoders against their careful second step.

``modelstream.wire.codec`` states the invariant: a record the typed step (with its
record's own checks) accepts is one the careful decoder accepts too, decoded to the same
value. So each decoder gives what its careful decoder gives: the same value, or the same
error message. These tests generate records near the wire format (every field right,
missing, null or of another type; tensor data flat or nested, of the shape's size or
not) and check it for each record type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelstream.errors import DecodeError
from modelstream.wire import requests, results, scores
from modelstream.wire.codec import typed
from modelstream.wire.requests import decode_request
from modelstream.wire.results import decode_result
from modelstream.wire.scores import decode_score

# What a producer gets wrong: a value of another type, or a field left out.
_WRONG = st.sampled_from([None, True, 1.5, -3, "x", "", [], [-1], [[1], [2]], {}])
_MISSING = object()


@st.composite
def _tensor(draw: st.DrawFn) -> dict[str, Any]:
    """A tensor whose data fits its shape, then at most one of its fields spoiled."""
    shape = draw(st.lists(st.integers(0, 3), max_size=2))
    datatype = draw(st.sampled_from(["FP32", "INT64", "BYTES"]))
    values = (
        st.text(max_size=3)
        if datatype == "BYTES"
        else st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False))
    )
    size = math.prod(shape)
    tensor = {
        "name": draw(st.sampled_from(["x", "label"])),
        "datatype": datatype,
        "shape": shape,
        "data": draw(st.lists(values, min_size=size, max_size=size)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(tensor)), max_size=1)):
        tensor[name] = draw(st.one_of(_WRONG, st.sampled_from(["FP99", [1, 2, 3, 4, 5]])))
    return tensor


_TENSORS = st.lists(_tensor(), max_size=2)


@st.composite
def _near(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> bytes:
    """A record with every field right, then up to two of them wrong or left out."""
    obj = draw(st.fixed_dictionaries(fields))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
        value = draw(st.one_of(_WRONG, st.just(_MISSING)))
        if value is _MISSING:
            del obj[name]
        else:
            obj[name] = value
    return orjson.dumps(obj)


_INT = st.integers(0, 2**40)
_TEXT = st.text(min_size=1, max_size=4)
_STRINGS = st.lists(st.sampled_from(["gbm@1", "lr@2"]), max_size=2)

REQUESTS = _near(
    {
        "id": _TEXT,
        "service": _TEXT,
        "event_time": _INT,
        "deadline": _INT,
        "inputs": _TENSORS,
        "reply_to": _TEXT,
        "entity": _TEXT,
        "parameters": st.dictionaries(_TEXT, st.integers(-5, 5), max_size=2),
        "features": st.dictionaries(_TEXT, st.one_of(st.floats(allow_nan=False), st.none())),
        "target": _TEXT,
        "sent_at": _INT,
    }
)
SCORES = _near(
    {
        "request_id": _TEXT,
        "model": _TEXT,
        "version": _INT,
        "outputs": _TENSORS,
        "error": _TEXT,
        "latency_ms": st.floats(0, 100),
        "scored_at": _INT,
        "role": st.sampled_from(["champion", "canary"]),
        "batch_size": st.integers(1, 64),
    }
)
RESULTS = _near(
    {
        "request_id": _TEXT,
        "service": _TEXT,
        "policy": st.sampled_from(["preference", "first"]),
        "model": _TEXT,
        "version": _INT,
        "outputs": _TENSORS,
        "error": _TEXT,
        "fallback": st.booleans(),
        "deadline": _INT,
        "deadline_met": st.booleans(),
        "answers": _STRINGS,
        "late": _STRINGS,
        "missing": _STRINGS,
        "decided_in_ms": st.floats(0, 100),
        "decided_at": _INT,
    }
)

CASES: dict[str, tuple[st.SearchStrategy[bytes], Any, Callable[[bytes], Any], Any]] = {
    "request": (REQUESTS, requests._DECODER, decode_request, requests._decode_checked),
    "score": (SCORES, scores._DECODER, decode_score, scores._decode_checked),
    "result": (RESULTS, results._DECODER, decode_result, results._decode_checked),
}


def _careful(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except DecodeError as exc:
        return exc


@pytest.mark.parametrize("kind", CASES)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_typed_step_accepts_only_what_the_careful_decoder_accepts_and_agrees(
    kind: str, data: st.DataObject
) -> None:
    strategy, _, decode, checked = CASES[kind]
    record = data.draw(strategy)
    careful = _careful(checked, record)
    got = _careful(decode, record)
    if isinstance(careful, DecodeError):
        assert isinstance(got, DecodeError)
        assert str(got) == str(careful)
    else:
        assert got == careful


def test_an_empty_role_reads_as_champion_whichever_step_decodes_it() -> None:
    # Found by the test above in a CI run: the typed form alone kept the empty role.
    score = {"request_id": "r", "model": "m", "version": 1, "error": "x", "latency_ms": 0}
    record = orjson.dumps({**score, "scored_at": 3, "role": ""})
    assert decode_score(record).role == "champion"
    assert scores._decode_checked(record).role == "champion"


@pytest.mark.parametrize("kind", CASES)
def test_a_well_formed_record_takes_the_typed_step(kind: str) -> None:
    _, decoder, decode, checked = CASES[kind]
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]}
    record = {
        "request": {"id": "r", "service": "s", "event_time": 1, "deadline": 2, "inputs": [tensor]},
        "score": {
            "request_id": "r",
            "model": "gbm",
            "version": 1,
            "outputs": [tensor],
            "error": None,
            "latency_ms": 0.5,
            "scored_at": 3,
        },
        "result": {
            "request_id": "r",
            "service": "s",
            "policy": "first",
            "outputs": [tensor],
            "deadline": 2,
            "decided_at": 1,
        },
    }[kind]
    encoded = orjson.dumps(record)
    fast = typed(encoded, decoder)
    assert fast is not None
    assert fast == checked(encoded) == decode(encoded)
    assert decode(fast.encode()) == fast
