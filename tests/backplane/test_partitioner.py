"""Kafka's murmur2 partitioner: the vectors of Kafka's own ``UtilsTest.testMurmur2``."""

from __future__ import annotations

import random

import pytest

from modelstream.backplane.partitioner import murmur2, partition_for, partitions_for

KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_partition_is_the_positive_hash_modulo_the_count(data: bytes, expected: int) -> None:
    for partitions in (1, 3, 4, 7, 100):
        assert partition_for(data, partitions) == (expected & 0x7FFFFFFF) % partitions


def test_every_tail_length_is_hashed() -> None:
    hashes = {murmur2(b"x" * n) for n in range(9)}
    assert len(hashes) == 9
    assert all(-(2**31) <= h < 2**31 for h in hashes)


def test_a_batch_is_placed_as_each_key_alone() -> None:
    # Lengths 0..70 cover every tail; many keys of one length take the vectorised path,
    # a few of another the per-key one, so both are compared with the reference vectors.
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(71) for _ in range(30)]
    keys += [data for data, _ in KAFKA_VECTORS] * 30
    rng.shuffle(keys)
    for partitions in (1, 3, 4, 7, 100):
        assert partitions_for(keys, partitions) == [partition_for(k, partitions) for k in keys]
    for data, expected in KAFKA_VECTORS:
        assert partitions_for([data] * 40, 7) == [(expected & 0x7FFFFFFF) % 7] * 40


def test_an_empty_batch_places_nothing() -> None:
    assert partitions_for([], 4) == []
