"""The in-process engine (``memory://``): for tests and throw-away runs.

Everything lives in this process and is lost when it exits. It implements the whole
contract of :mod:`modelstream.backplane.port`, consumer groups included (members of a
group are consumers of this process; a member that stops polling for longer than the
session timeout is evicted, as on the other engines).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from modelstream.backplane.assignment import range_assign
from modelstream.backplane.partitioner import missing_partition, partition_for
from modelstream.backplane.port import StartFrom
from modelstream.backplane.records import (
    LOCAL_MAX_RECORD_BYTES,
    Delivered,
    GroupInfo,
    OutRecord,
    PartitionInfo,
    Record,
    TopicDescription,
    TopicPartition,
    TopicSpec,
    check_sizes,
    now_ms,
)
from modelstream.errors import ConfigurationError, ConsumerClosed, TopicNotFound
from modelstream.settings import Settings


@dataclass
class _Topic:
    spec: TopicSpec
    logs: list[list[Record]]
    next_unkeyed: itertools.count[int] = field(default_factory=itertools.count)


@dataclass
class _Group:
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    # member id -> (topics it subscribes to, monotonic time of its last poll)
    members: dict[str, tuple[tuple[str, ...], float]] = field(default_factory=dict)
    generation: int = 0


class MemoryBackplane:
    """In-process topics; thread-safe. See the module docstring."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings(backplane="memory://")
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._cond = threading.Condition()

    @property
    def url(self) -> str:
        return "memory://"

    @property
    def max_record_bytes(self) -> int:
        return self._settings.max_record_bytes or LOCAL_MAX_RECORD_BYTES

    # -- topics -----------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int | None = None, *, compacted: bool = False
    ) -> TopicSpec:
        with self._cond:
            return self._ensure(name, partitions, compacted).spec

    def _ensure(self, name: str, partitions: int | None = None, compacted: bool = False) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            count = self._settings.default_partitions if partitions is None else partitions
            if count < 1:
                raise ConfigurationError(f"topic {name!r} needs at least 1 partition")
            topic = _Topic(TopicSpec(name, count, compacted), [[] for _ in range(count)])
            self._topics[name] = topic
        return topic

    def delete_topic(self, name: str) -> None:
        with self._cond:
            if self._topics.pop(name, None) is None:
                raise TopicNotFound(name)
            for group in self._groups.values():
                for tp in [tp for tp in group.committed if tp.topic == name]:
                    del group.committed[tp]
                group.generation += 1

    def list_topics(self) -> list[TopicSpec]:
        with self._cond:
            return sorted((t.spec for t in self._topics.values()), key=lambda s: s.name)

    def set_group_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        with self._cond:
            self._groups.setdefault(group, _Group()).committed.update(offsets)

    def partitions(self, name: str) -> tuple[PartitionInfo, ...]:
        with self._cond:
            topic = self._topics.get(name)
            if topic is None:
                raise TopicNotFound(name)
            return tuple(PartitionInfo(p, 0, len(log)) for p, log in enumerate(topic.logs))

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        with self._cond:
            if topic not in self._topics:
                raise TopicNotFound(topic)
            found = self._groups.get(group)
            committed = found.committed.items() if found is not None else ()
            return {tp.partition: o for tp, o in committed if tp.topic == topic}

    def describe_topic(self, name: str) -> TopicDescription:
        with self._cond:
            topic = self._topics.get(name)
            if topic is None:
                raise TopicNotFound(name)
            parts = self.partitions(name)
            groups = []
            for group_name, group in sorted(self._groups.items()):
                committed = {
                    tp.partition: off for tp, off in group.committed.items() if tp.topic == name
                }
                members = sum(1 for topics, _ in group.members.values() if name in topics)
                if not committed and not members:
                    continue
                lag = {p.partition: p.end - committed.get(p.partition, 0) for p in parts}
                groups.append(GroupInfo(group_name, committed, lag, members))
            return TopicDescription(topic.spec, parts, tuple(groups))

    # -- producing ----------------------------------------------------------------------

    def produce(self, topic: str, records: Sequence[OutRecord]) -> list[Delivered]:
        delivered: list[Delivered] = []
        check_sizes(topic, records, self.max_record_bytes)
        with self._cond:
            target = self._ensure(topic)
            count = target.spec.partitions
            # Check every explicit partition first: a bad one must not leave half a batch.
            for out in records:
                if out.partition is not None and not 0 <= out.partition < count:
                    raise missing_partition(topic, out.partition, count)
            for out in records:
                if out.partition is not None:
                    partition = out.partition
                elif out.key is not None:
                    partition = partition_for(out.key, count)
                else:
                    partition = next(target.next_unkeyed) % count
                log = target.logs[partition]
                ts = now_ms() if out.timestamp is None else out.timestamp
                log.append(Record(topic, partition, len(log), ts, out.key, out.value, out.headers))
                delivered.append(Delivered(topic, partition, len(log) - 1, ts))
            self._cond.notify_all()
        return delivered

    def read_compacted(self, topic: str) -> dict[bytes, Record]:
        with self._cond:
            target = self._ensure(topic)
            latest: dict[bytes, Record] = {}
            for log in target.logs:
                # Within a partition the highest offset wins (as Kafka's compaction keeps
                # it, whatever its timestamp); across partitions, the latest timestamp.
                newest: dict[bytes, Record] = {}
                for record in log:
                    if record.key is not None:
                        newest[record.key] = record
                for key, record in newest.items():
                    previous = latest.get(key)
                    if previous is None or previous.timestamp <= record.timestamp:
                        latest[key] = record
            return latest

    # -- consuming ----------------------------------------------------------------------

    def consumer(
        self, topics: Sequence[str], *, group: str | None = None, start: StartFrom = "earliest"
    ) -> MemoryConsumer:
        if not topics:
            raise ConfigurationError("a consumer needs at least one topic")
        with self._cond:
            for name in topics:
                self._ensure(name)
        return MemoryConsumer(self, tuple(topics), group, start)

    def close(self) -> None:
        """Nothing to release: the topics live as long as this object."""

    # Internal API used by MemoryConsumer, always called with self._cond held.

    def _join(self, group: str, member: str, topics: tuple[str, ...]) -> None:
        state = self._groups.setdefault(group, _Group())
        state.members[member] = (topics, time.monotonic())
        state.generation += 1

    def _leave(self, group: str, member: str) -> None:
        state = self._groups.get(group)
        if state is not None and state.members.pop(member, None) is not None:
            state.generation += 1

    def _heartbeat(self, group: str, member: str, topics: tuple[str, ...]) -> _Group:
        state = self._groups.setdefault(group, _Group())
        now = time.monotonic()
        if member not in state.members:  # evicted while silent: join again
            state.generation += 1
        state.members[member] = (topics, now)
        expiry = now - self._settings.session_timeout_ms / 1000
        dead = [m for m, (_, seen) in state.members.items() if seen < expiry]
        for gone in dead:
            del state.members[gone]
            state.generation += 1
        return state

    def _group_assignment(self, group: _Group, member: str) -> frozenset[TopicPartition]:
        assigned: set[TopicPartition] = set()
        for name in group.members[member][0]:
            topic = self._topics.get(name)
            if topic is None:
                continue
            subscribers = [m for m, (topics, _) in group.members.items() if name in topics]
            assigned |= range_assign(subscribers, {name: topic.spec.partitions})[member]
        return frozenset(assigned)


class MemoryConsumer:
    """A consumer of a :class:`MemoryBackplane`; see the port's contract."""

    def __init__(
        self,
        backplane: MemoryBackplane,
        topics: tuple[str, ...],
        group: str | None,
        start: StartFrom,
    ) -> None:
        self._bp = backplane
        self._topics = topics
        self._group = group
        self._start = start
        self._member = f"memory-{uuid.uuid4().hex[:12]}"
        self._positions: dict[TopicPartition, int] = {}
        self._generation = -1
        self._rotation = 0
        self._closed = False
        with backplane._cond:
            if group is not None:
                backplane._join(group, self._member, topics)
            else:
                self._assign(self._all_partitions())

    def _all_partitions(self) -> frozenset[TopicPartition]:
        return frozenset(
            TopicPartition(name, p)
            for name in self._topics
            for p in range(self._bp._ensure(name).spec.partitions)
        )

    def _assign(self, partitions: frozenset[TopicPartition]) -> None:
        state = self._bp._groups.get(self._group) if self._group else None
        kept = {tp: pos for tp, pos in self._positions.items() if tp in partitions}
        for tp in partitions - kept.keys():
            committed = state.committed.get(tp) if state else None
            if committed is not None:
                kept[tp] = committed
            elif self._start == "earliest":
                kept[tp] = 0
            else:
                kept[tp] = self._end(tp)
        self._positions = kept

    def _end(self, tp: TopicPartition) -> int:
        topic = self._bp._topics.get(tp.topic)
        return 0 if topic is None else len(topic.logs[tp.partition])

    def _refresh(self) -> None:
        if self._closed:
            raise ConsumerClosed("this consumer was closed; create a new one")
        if self._group is None:
            return
        state = self._bp._heartbeat(self._group, self._member, self._topics)
        if state.generation != self._generation:
            self._generation = state.generation
            self._assign(self._bp._group_assignment(state, self._member))

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        with self._bp._cond:
            while True:
                self._refresh()
                batch: list[Record] = []
                order = sorted(self._positions, key=lambda t: (t.topic, t.partition))
                # Start at another partition each time so a busy one cannot starve the rest.
                shift = self._rotation % len(order) if order else 0
                self._rotation += 1
                for tp in order[shift:] + order[:shift]:
                    topic = self._bp._topics.get(tp.topic)
                    if topic is None:
                        continue
                    log = topic.logs[tp.partition]
                    pos = self._positions[tp]
                    take = log[pos : pos + max_records - len(batch)]
                    if take:
                        batch.extend(take)
                        self._positions[tp] = pos + len(take)
                    if len(batch) >= max_records:
                        break
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0:
                    return batch
                # Wake at least every 100 ms to heartbeat and notice rebalances.
                self._bp._cond.wait(min(remaining, 0.1))

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self._group is None:
            raise ConfigurationError("commit needs a consumer group: pass group=... ")
        with self._bp._cond:
            self._refresh()
            state = self._bp._groups.setdefault(self._group, _Group())
            state.committed.update(dict(self._positions) if offsets is None else offsets)

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        with self._bp._cond:
            state = self._bp._groups.get(self._group) if self._group else None
            return {tp: state.committed.get(tp) if state else None for tp in partitions}

    def assignment(self) -> frozenset[TopicPartition]:
        with self._bp._cond:
            return frozenset(self._positions)

    def position(self, partition: TopicPartition) -> int:
        with self._bp._cond:
            if partition not in self._positions:
                raise ConfigurationError(f"{partition} is not assigned to this consumer")
            return self._positions[partition]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        with self._bp._cond:
            if partition not in self._positions:
                raise ConfigurationError(f"{partition} is not assigned to this consumer")
            self._positions[partition] = max(0, offset)

    def _targets(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        chosen = list(self._positions) if partitions is None else list(partitions)
        return [tp for tp in chosen if tp in self._positions]

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        with self._bp._cond:
            for tp in self._targets(partitions):
                self._positions[tp] = 0

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        with self._bp._cond:
            for tp in self._targets(partitions):
                self._positions[tp] = self._end(tp)

    def seek_to_time(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        with self._bp._cond:
            for tp in self._targets(partitions):
                topic = self._bp._topics.get(tp.topic)
                log = topic.logs[tp.partition] if topic is not None else []
                self._positions[tp] = next(
                    (r.offset for r in log if r.timestamp >= timestamp_ms), len(log)
                )

    def close(self) -> None:
        with self._bp._cond:
            if self._closed:
                return
            self._closed = True
            if self._group is not None:
                self._bp._leave(self._group, self._member)
            self._positions = {}
            self._bp._cond.notify_all()
