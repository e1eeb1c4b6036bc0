"""The values the backplane carries: records going in, records coming out, topic facts.

All frozen dataclasses. A record's ``timestamp`` is its *event time* in milliseconds
since the Unix epoch; the producer sets it (it defaults to the wall clock when the
producer does not). A timestamp of 0 is refused by every engine, see
:func:`check_timestamps`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from modelstream.errors import ConfigurationError

Headers = tuple[tuple[str, bytes], ...]


def now_ms() -> int:
    """The wall clock in milliseconds since the epoch (used only for defaults)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce.

    ``partition`` is normally left ``None``: a keyed record then goes to
    ``murmur2(key) % partitions`` and an unkeyed one is spread over the partitions.
    ``timestamp`` of ``None`` means "now"; 0 is refused (see :func:`check_timestamps`).
    """

    value: bytes
    key: bytes | None = None
    headers: Headers = ()
    timestamp: int | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Record:
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


@dataclass(frozen=True, slots=True)
class Delivered:
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


_timestamp = attrgetter("timestamp")


def check_timestamps(topic: str, records: Sequence[OutRecord]) -> None:
    """Raise :class:`ConfigurationError` if any record's timestamp is 0, before any is written.

    Every engine calls this first, so all three agree: Kafka clients (librdkafka) cannot
    send a timestamp of 0, they read it as "now", and a record would be stored at the
    wrong time without a word. Refusing it everywhere makes code developed on memory or
    SQLite behave the same when it meets Kafka.
    """
    # map() with attrgetter keeps the scan in C: it runs on every produced batch.
    if 0 in map(_timestamp, records):
        raise ConfigurationError(
            f"a record for {topic!r} has timestamp 0, which Kafka clients cannot store; "
            "leave the timestamp unset for now, or give the event time in ms (>= 1)"
        )
