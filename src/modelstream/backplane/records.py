"""The values the backplane carries: records going in, records coming out, topic facts.

All frozen. The four made per record (:class:`TopicPartition`, :class:`OutRecord`,
:class:`Record`, :class:`Delivered`) are msgspec ``Struct`` types, built several times
faster than a frozen dataclass, and not tracked by the garbage collector: they hold only
strings, bytes, numbers and tuples of them, so they can be in no reference cycle. The
others are frozen dataclasses. A record's ``timestamp`` is its *event time* in milliseconds
since the Unix epoch; the producer sets it (it defaults to the wall clock when the
producer does not). Event times start at 1 ms: a timestamp of 0 is stored as it is by the
memory and SQLite engines, but Kafka clients (librdkafka) cannot send 0 and stamp the
record with the time of sending instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from modelstream.errors import RecordTooLarge

Headers = tuple[tuple[str, bytes], ...]
# The largest record the local engines take (SQLite, memory). Kafka's is the broker's
# message.max.bytes (1 MB by default), which is why the setting exists.
LOCAL_MAX_RECORD_BYTES = 64 * 1024 * 1024
KAFKA_MAX_RECORD_BYTES = 1_000_000


def now_ms() -> int:
    """The wall clock in milliseconds since the epoch (used only for defaults)."""
    return time.time_ns() // 1_000_000


class TopicPartition(msgspec.Struct, frozen=True, gc=False):
    """One partition of one topic."""

    topic: str
    partition: int


class OutRecord(msgspec.Struct, frozen=True, gc=False):
    """A record to produce.

    ``partition`` is normally left ``None``: a keyed record then goes to
    ``murmur2(key) % partitions`` and an unkeyed one is spread over the partitions.
    ``timestamp`` of ``None`` means "now".
    """

    value: bytes
    key: bytes | None = None
    headers: Headers = ()
    timestamp: int | None = None
    partition: int | None = None


class Record(msgspec.Struct, frozen=True, gc=False):
    """A record read from a topic, at a fixed partition and offset."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: Headers = ()

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The last header called ``name``, or ``None``."""
        found: bytes | None = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class Delivered(msgspec.Struct, frozen=True, gc=False):
    """Where a produced record was durably stored."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name, partition count and whether it is compacted."""

    name: str
    partitions: int
    compacted: bool = False


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """Offsets of one partition: ``start`` is the first readable, ``end`` the next to write."""

    partition: int
    start: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group's committed offsets on one topic, and its lag per partition."""

    group: str
    committed: dict[int, int] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    members: int = 0

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """What ``modelstream topics describe`` shows."""

    spec: TopicSpec
    partitions: tuple[PartitionInfo, ...]
    groups: tuple[GroupInfo, ...] = ()

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)


def record_size(record: OutRecord) -> int:
    """The bytes a record weighs against a size limit: value, key and headers."""
    size = len(record.value) + (len(record.key) if record.key is not None else 0)
    for name, value in record.headers:
        size += len(name) + len(value)
    return size


def check_sizes(topic: str, records: Sequence[OutRecord], limit: int) -> None:
    """Raise ``RecordTooLarge`` for the first of ``records`` above ``limit`` bytes.

    Engines call it before writing anything, so a call with one oversized record writes
    none (the caller can drop or replace that record and produce the rest again).
    """
    for record in records:
        size = record_size(record)
        if size > limit:
            raise RecordTooLarge(topic, size, limit)
