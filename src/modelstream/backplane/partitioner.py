"""Kafka's default partitioner (murmur2), so every engine places a key where Kafka would.

The Java client and librdkafka's ``murmur2_random`` partitioner both compute
``(murmur2(key) & 0x7fffffff) % partitions``. Known vectors (from Kafka's own tests)
are checked in ``tests/backplane/test_partitioner.py``.
"""

from __future__ import annotations

from functools import lru_cache

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 hash of ``data``, as a signed 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    full = length - (length % 4)
    for i in range(0, full, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=65536)
def _positive_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to among ``partitions``."""
    return _positive_hash(key) % partitions
