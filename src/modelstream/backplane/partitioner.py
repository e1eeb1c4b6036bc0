"""Kafka's default partitioner (murmur2), so every engine places a key where Kafka would.

The Java client and librdkafka's ``murmur2_random`` partitioner both compute
``(murmur2(key) & 0x7fffffff) % partitions``. Known vectors (from Kafka's own tests)
are checked in ``tests/backplane/test_partitioner.py``.

Two paths compute the same function:

* :func:`partition_for` places one key (pure Python over 32-bit words, with a cache for
  keys that recur, such as entity ids);
* :func:`partitions_for` places a whole batch: keys of equal length are hashed together
  as columns of a NumPy ``uint32`` array (``uint32`` products wrap modulo 2**32, exactly
  the masking murmur2 needs), so a batch of request ids costs a few dozen array
  operations instead of a Python loop per key. Small groups take the scalar path, where
  NumPy's per-call overhead would dominate.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import cast

import numpy as np
import numpy.typing as npt

from modelstream.errors import ConfigurationError

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
# Below this many keys of one length, the scalar loop beats NumPy's per-call overhead.
_VECTOR_MIN = 24
# Little-endian 32-bit words, as murmur2 reads them; one precompiled unpacker per count.
_WORDS: list[Callable[[bytes], tuple[int, ...]]] = [
    struct.Struct(f"<{n}I").unpack_from for n in range(64)
]


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 hash of ``data``, as a signed 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    count = length >> 2
    words = _WORDS[count](data) if count < 64 else struct.unpack_from(f"<{count}I", data)
    m, mask = _M, _MASK
    for word in words:
        k = (word * m) & mask
        k = ((k ^ (k >> 24)) * m) & mask
        h = ((h * m) & mask) ^ k
    rest = length & 3
    if rest:
        full = length - rest
        if rest == 3:
            h ^= data[full + 2] << 16
        if rest >= 2:
            h ^= data[full + 1] << 8
        h = ((h ^ data[full]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


@lru_cache(maxsize=65536)
def _positive_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to among ``partitions``."""
    return _positive_hash(key) % partitions


def murmur2_same_length(keys: Sequence[bytes], length: int) -> npt.NDArray[np.uint32]:
    """murmur2 of each of ``keys`` (all ``length`` bytes long), as unsigned 32-bit values."""
    n = len(keys)
    m = np.uint32(_M)
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(n, length)
    h = np.full(n, (_SEED ^ length) & _MASK, dtype=np.uint32)
    full = length & ~3
    if full:
        words = np.ascontiguousarray(data[:, :full]).view("<u4")
        for j in range(full >> 2):
            k = words[:, j] * m
            k ^= k >> np.uint32(24)
            k *= m
            h *= m
            h ^= k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[:, full + 2].astype(np.uint32) << np.uint32(16)
        if rest >= 2:
            h ^= data[:, full + 1].astype(np.uint32) << np.uint32(8)
        h ^= data[:, full].astype(np.uint32)
        h *= m
    h ^= h >> np.uint32(13)
    h *= m
    h ^= h >> np.uint32(15)
    return h


def partitions_for(keys: Sequence[bytes], partitions: int) -> list[int]:
    """``[partition_for(k, partitions) for k in keys]``, computed a batch at a time."""
    if len(keys) < _VECTOR_MIN:
        return [_positive_hash(k) % partitions for k in keys]
    lengths = set(map(len, keys))
    if len(lengths) == 1:  # the usual batch: ids of one format
        hashes = murmur2_same_length(keys, lengths.pop())
        return cast(
            "list[int]", ((hashes & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)).tolist()
        )
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(index)
    placed = [0] * len(keys)
    for length, indexes in by_length.items():
        if len(indexes) < _VECTOR_MIN:
            for i in indexes:
                placed[i] = _positive_hash(keys[i]) % partitions
            continue
        hashes = murmur2_same_length([keys[i] for i in indexes], length)
        chosen = ((hashes & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)).tolist()
        for i, p in zip(indexes, chosen, strict=True):
            placed[i] = p
    return placed


def missing_partition(topic: str, partition: int, count: int) -> ConfigurationError:
    """The error every engine raises for a record sent to a partition ``topic`` lacks."""
    return ConfigurationError(
        f"partition {partition} does not exist in {topic!r} "
        f"(it has {count}); leave partition unset to place by key"
    )
