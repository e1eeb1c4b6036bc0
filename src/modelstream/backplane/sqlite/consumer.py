"""The consumer of the SQLite engine.

A consumer owns its connections (one to ``meta.db``, one per topic file), so it can be
handed from thread to thread as long as one thread uses it at a time. Every *tick*
(a fifth of the session timeout, at most 200 ms) it re-reads the catalogue, renews its
group lease and recomputes its assignment. Between ticks a waiting :meth:`poll` sleeps
on an event of :mod:`modelstream.backplane.sqlite.wakeup`: a producer of this process
sets it right after committing to one of the consumer's topics, and the directory's
watcher thread sets it within a couple of milliseconds when another process commits.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelstream.backplane.port import StartFrom
from modelstream.backplane.records import Record, TopicPartition, now_ms
from modelstream.backplane.sqlite import groups, schema
from modelstream.errors import ConfigurationError, ConsumerClosed

if TYPE_CHECKING:
    from modelstream.backplane.sqlite.engine import SqliteBackplane


def to_record(topic: str, partition: int, row: Sequence[Any]) -> Record:
    """A :class:`Record` from a ``(offset, ts, key, value, headers)`` row."""
    offset, ts, key, value, headers = row
    return Record(
        topic, partition, offset, ts, key, value, schema.decode_headers(headers) if headers else ()
    )


class SqliteConsumer:
    """A consumer of a :class:`SqliteBackplane`; see the port's contract."""

    def __init__(
        self,
        backplane: SqliteBackplane,
        topics: tuple[str, ...],
        group: str | None,
        start: StartFrom,
    ) -> None:
        self._bp = backplane
        self._topics = topics
        self._group = group
        self._start = start
        self._member = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._timeout_ms = backplane.settings.session_timeout_ms
        self._tick_every = min(0.2, self._timeout_ms / 5000)
        self._next_tick = 0.0
        self._meta = schema.connect(backplane.meta_path, create=False)
        # topic -> (file, connection, partition count)
        self._files: dict[str, tuple[str, sqlite3.Connection, int]] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._rotation = 0
        self._closed = False
        self._wakeups = backplane.wakeups
        self._wake = threading.Event()
        self._tick()

    # -- membership and assignment ------------------------------------------------------

    def _tick(self) -> None:
        """Re-read the catalogue, renew the lease, and move to the current assignment."""
        self._refresh_topics()
        counts = {topic: count for topic, (_, _, count) in self._files.items()}
        if self._group is None:
            target = frozenset(
                TopicPartition(t, p) for t, count in counts.items() for p in range(count)
            )
        else:
            members = groups.heartbeat(
                self._meta,
                self._group,
                self._member,
                self._topics,
                now_ms=now_ms(),
                timeout_ms=self._timeout_ms,
            )
            members[self._member] = self._topics
            target = groups.member_assignment(members, self._member, counts)
        if target != self._positions.keys():
            self._assign(target)
        self._next_tick = time.monotonic() + self._tick_every

    def _refresh_topics(self) -> None:
        catalog = schema.read_catalog(self._meta)
        for topic in self._topics:
            entry = catalog.get(topic)
            held = self._files.get(topic)
            if held is not None and (entry is None or entry.file != held[0]):
                # Deleted (and perhaps created again): the old positions mean nothing.
                self._wakeups.unwatch([held[0]], self._wake)
                held[1].close()
                del self._files[topic]
                self._positions = {tp: o for tp, o in self._positions.items() if tp.topic != topic}
            if entry is not None and topic not in self._files:
                try:
                    conn = schema.connect(self._bp.topic_path(entry.file), create=False)
                except FileNotFoundError:
                    continue  # deleted meanwhile; the next tick sees the new catalogue
                self._files[topic] = (entry.file, conn, entry.spec.partitions)
                self._wakeups.watch([entry.file], self._wake)

    def _assign(self, target: frozenset[TopicPartition]) -> None:
        kept = {tp: pos for tp, pos in self._positions.items() if tp in target}
        fresh = [tp for tp in target if tp not in kept]
        stored = groups.committed(self._meta, self._group, fresh) if self._group and fresh else {}
        for tp in fresh:
            offset = stored.get(tp)
            kept[tp] = offset if offset is not None else self._start_offset(tp)
        self._positions = kept

    def _start_offset(self, tp: TopicPartition) -> int:
        return self._end(tp) if self._start == "latest" else self._beginning(tp)

    def _conn(self, tp: TopicPartition) -> sqlite3.Connection:
        return self._files[tp.topic][1]

    def _end(self, tp: TopicPartition) -> int:
        end: int = self._conn(tp).execute(schema.NEXT_OFFSET, (tp.partition,)).fetchone()[0]
        return end

    def _beginning(self, tp: TopicPartition) -> int:
        first: int = self._conn(tp).execute(schema.BEGINNING, (tp.partition,)).fetchone()[0]
        return first

    # -- reading ------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        self._check_open()
        with schema.guard(self._bp.meta_path.parent):
            start = time.monotonic()
            deadline = start + max(0.0, timeout)
            if start >= self._next_tick:
                self._tick()
            while True:
                # Clear, then look: a commit after the look sets the event again, so no
                # wake-up is missed (see the wakeup module's invariant).
                self._wake.clear()
                batch = self._fetch(max_records)
                if batch:
                    return batch
                now = time.monotonic()
                if now >= deadline:
                    return []
                self._wake.wait(min(deadline, self._next_tick) - now)
                if time.monotonic() >= self._next_tick:
                    self._tick()

    def _fetch(self, max_records: int) -> list[Record]:
        order = sorted(self._positions, key=lambda tp: (tp.topic, tp.partition))
        if not order:
            return []
        # Start at a different partition each poll so a busy one cannot starve the rest.
        shift = self._rotation % len(order)
        self._rotation += 1
        batch: list[Record] = []
        decode = schema.decode_headers
        # One statement per topic file (not per partition): the partitions of a file in
        # rotation order, read lazily until max_records rows are in hand.
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in order[shift:] + order[:shift]:
            by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in by_topic.items():
            conn = self._files[topic][1]
            for start in range(0, len(tps), schema.MAX_BRANCHES):
                chunk = tps[start : start + schema.MAX_BRANCHES]
                want = max_records - len(batch)
                if want <= 0:
                    break
                params = [v for tp in chunk for v in (tp.partition, self._positions[tp], want)]
                last: dict[int, int] = {}
                cursor = conn.execute(schema.fetch_sql(len(chunk)), params)
                try:
                    for p, o, ts, k, v, h in cursor:
                        batch.append(Record(topic, p, o, ts, k, v, decode(h) if h else ()))
                        last[p] = o
                        if len(batch) >= max_records:
                            break
                finally:
                    cursor.close()
                for p, o in last.items():
                    self._positions[TopicPartition(topic, p)] = o + 1
        return batch

    # -- offsets ------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if self._group is None:
            raise ConfigurationError("commit needs a consumer group: pass group=... ")
        chosen = dict(self._positions) if offsets is None else dict(offsets)
        with schema.guard(self._bp.meta_path.parent):
            groups.commit(self._meta, self._group, self._member, chosen, now_ms())

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check_open()
        wanted = list(partitions)
        if self._group is None:
            return dict.fromkeys(wanted)
        with schema.guard(self._bp.meta_path.parent):
            return groups.committed(self._meta, self._group, wanted)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def position(self, partition: TopicPartition) -> int:
        return self._positions[self._assigned(partition)]

    def _assigned(self, partition: TopicPartition) -> TopicPartition:
        self._check_open()
        if partition not in self._positions:
            raise ConfigurationError(f"{partition} is not assigned to this consumer")
        return partition

    def _targets(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        self._check_open()
        chosen = list(self._positions) if partitions is None else list(partitions)
        return [tp for tp in chosen if tp in self._positions]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._positions[self._assigned(partition)] = max(0, offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        with schema.guard(self._bp.meta_path.parent):
            for tp in self._targets(partitions):
                self._positions[tp] = self._beginning(tp)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        with schema.guard(self._bp.meta_path.parent):
            for tp in self._targets(partitions):
                self._positions[tp] = self._end(tp)

    def seek_to_time(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        with schema.guard(self._bp.meta_path.parent):
            for tp in self._targets(partitions):
                found = (
                    self._conn(tp)
                    .execute(schema.OFFSET_FOR_TIME, (tp.partition, timestamp_ms))
                    .fetchone()[0]
                )
                self._positions[tp] = self._end(tp) if found is None else int(found)

    # -- lifetime -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosed("this consumer was closed; create a new one")

    def close(self) -> None:
        """Leave the group at once (the others take over at their next tick)."""
        if self._closed:
            return
        self._closed = True
        self._positions = {}
        try:
            if self._group is not None:
                with schema.guard(self._bp.meta_path.parent):
                    groups.leave(self._meta, self._group, self._member)
        finally:
            for file, conn, _ in self._files.values():
                self._wakeups.unwatch([file], self._wake)
                conn.close()
            self._files = {}
            self._meta.close()
