"""Label records: both ways of naming what is labelled, round trips, clear errors."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelstream.errors import DecodeError
from modelstream.wire.labels import Label, decode_label


def test_label_by_request_id_round_trips_and_is_keyed_by_it() -> None:
    label = Label("fraud", 1, 5000, request_id="r1", source="chargebacks")
    assert decode_label(label.encode()) == label
    assert label.key == b"r1"


def test_label_by_entity_and_event_time_is_keyed_by_entity() -> None:
    label = Label("pumps", "failed", 9000, entity="pump-7", event_time=1000)
    back = decode_label(label.encode())
    assert back == label
    assert back.key == b"pump-7"
    assert back.request_id is None


def test_numbers_and_booleans() -> None:
    assert decode_label(Label("s", 3.25, 1, request_id="r").encode()).value == 3.25
    raw = orjson.dumps({"service": "s", "request_id": "r", "value": True, "labelled_at": 1})
    value = decode_label(raw).value
    assert value == 1 and type(value) is int


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"service": "s", "value": 1, "labelled_at": 1}, "request_id, or both entity"),
        ({"service": "s", "entity": "e", "value": 1, "labelled_at": 1}, "entity and event_time"),
        ({"service": "s", "request_id": "r", "labelled_at": 1}, "'value'"),
        ({"service": "s", "request_id": "r", "value": [1], "labelled_at": 1}, "'value'"),
        ({"service": "s", "request_id": "r", "value": 1}, "'labelled_at'"),
        ({"service": "s", "request_id": 5, "value": 1, "labelled_at": 1}, "'request_id'"),
    ],
)
def test_bad_labels_say_which_field(obj: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_label(orjson.dumps(obj))


def test_not_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_label(b"\xff{")


@given(st.binary(max_size=200))
def test_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_label(data)
