"""Dead-letter copies: the record untouched when it fits, cut when it would not."""

from __future__ import annotations

from modelstream.backplane.records import OutRecord, Record, record_size
from modelstream.wire.codec import MAX_RECORD_BYTES
from modelstream.wire.deadletter import KEPT_BYTES, dead_letter_record

LIMIT = 1_000_000  # Kafka's default


def source(value: bytes) -> Record:
    return Record("svc.requests", 1, 42, 7, b"key", value, (("trace", b"t1"),))


def test_a_copy_that_fits_keeps_the_record_whole_and_says_where_it_came_from() -> None:
    copy = dead_letter_record(source(b"{not json"), "not valid JSON", LIMIT)
    assert (copy.value, copy.key, copy.timestamp) == (b"{not json", b"key", 7)
    assert dict(copy.headers) == {
        "trace": b"t1",
        "x-source-topic": b"svc.requests",
        "x-source-partition": b"1",
        "x-source-offset": b"42",
        "x-reason": b"not valid JSON",
    }


def test_a_record_just_under_the_limit_is_cut_so_its_copy_fits() -> None:
    value = b"x" * (LIMIT - 100)  # fits the backplane; with the headers it would not
    copy = dead_letter_record(source(value), "wrong schema: 'inputs' missing", LIMIT)
    assert copy.value == value[:KEPT_BYTES]
    assert dict(copy.headers)["x-original-size"] == str(len(value)).encode()
    assert dict(copy.headers)["x-reason"] == b"wrong schema: 'inputs' missing"
    assert record_size(copy) <= LIMIT


def test_a_record_above_the_decoders_limit_is_cut_whatever_the_backplane_takes() -> None:
    value = b"x" * (MAX_RECORD_BYTES + 1)
    copy = dead_letter_record(source(value), "exceeds", 64 * MAX_RECORD_BYTES)
    assert len(copy.value) == KEPT_BYTES


def test_under_a_tiny_limit_the_copy_keeps_what_room_is_left() -> None:
    copy = dead_letter_record(source(b"x" * 5000), "r" * 300, 2048)
    assert 0 < len(copy.value) < KEPT_BYTES
    assert record_size(OutRecord(copy.value, copy.key, copy.headers)) <= 2048
