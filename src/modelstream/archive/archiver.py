"""The archiver role: a service's topics into Parquet, committed only once durable.

Contract:

* Consumer group ``<service>.archiver`` over ``<service>.requests``, ``.scores``,
  ``.results`` and ``.labels`` (created when missing, with the partition count of
  ``.requests`` when that exists so topics stay co-partitioned), and ``.events`` when
  that topic already exists. Several archivers share the partitions; each writes files
  of its own.
* Rows are buffered per (kind, date) and written (see :func:`.layout.write_part`) when
  ``flush_rows`` rows are buffered or the oldest buffered row is ``flush_seconds`` old,
  and on :meth:`Archiver.close`. Offsets are committed only after every buffered file is
  durable: **at-least-once**. A crash loses nothing that was committed, and may write
  some rows twice; readers deduplicate (see :mod:`.layout`).
* A record that cannot be decoded goes to ``<service>.dead-letter`` with the reason, and
  its offset is committed with the rest.
* :meth:`Archiver.run` outlives a backplane that goes away: on ``BackplaneUnavailable``
  (or another ``BackplaneError``, such as a commit refused after a rebalance) it waits
  with a growing backoff and goes on; a commit that failed is retried with the next
  flush (the rows are already durable, so nothing is lost meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from modelstream.archive.layout import partition_dir, write_part
from modelstream.archive.rows import to_row
from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import Record, TopicPartition, now_ms
from modelstream.backplane.retry import Backoff
from modelstream.errors import BackplaneError, ConfigurationError, ConsumerClosed, DecodeError
from modelstream.wire.deadletter import send_to_dead_letter
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ArchiverStats:
    """Counters since the archiver started."""

    records: int
    rows_written: int
    files_written: int
    dead_lettered: int
    buffered: int


class Archiver:
    """Archives one service; drive it with :meth:`run` or :meth:`step` (one thread)."""

    def __init__(
        self,
        backplane: Backplane,
        service: str,
        root: Path,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        retry_max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_rows < 1 or flush_seconds <= 0 or retry_max_s <= 0:
            raise ConfigurationError(
                "archiver needs flush_rows >= 1, flush_seconds > 0 and retry_max_s > 0"
            )
        self._bp = backplane
        self._topics = ServiceTopics(service)
        self._root = Path(root)
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._retry_max_s = retry_max_s  # the settings' retry_max_s(): see Settings
        self._clock = clock
        self._kinds = self._subscribe()
        self._consumer: Consumer = backplane.consumer(
            list(self._kinds), group=f"{service}.archiver", start="earliest"
        )
        self._buffers: dict[tuple[str, date], list[dict[str, Any]]] = defaultdict(list)
        self._pending: dict[TopicPartition, int] = {}
        self._buffered = 0
        self._oldest: float | None = None
        self._records = self._rows_written = self._files = self._dead = 0
        self._closed = False

    @property
    def service(self) -> str:
        return self._topics.service

    def _subscribe(self) -> dict[str, str]:
        """Topic name -> kind, creating the core topics that are missing."""
        t = self._topics
        existing = {spec.name: spec.partitions for spec in self._bp.list_topics()}
        partitions = existing.get(t.requests)
        kinds = {t.requests: "requests", t.scores: "scores", t.results: "results"}
        kinds[t.labels] = "labels"
        for name in kinds:
            if name not in existing:
                self._bp.create_topic(name, partitions)
        if t.events in existing:
            kinds[t.events] = "events"
        return kinds

    def stats(self) -> ArchiverStats:
        return ArchiverStats(
            self._records, self._rows_written, self._files, self._dead, self._buffered
        )

    def step(self, timeout: float = 0.5, max_records: int = 1000) -> int:
        """Poll once, buffer what came, flush if due; return the records consumed."""
        records = self._consumer.poll(max_records=max_records, timeout=timeout)
        for i, record in enumerate(records):
            try:
                self._take(record)
            except BackplaneError:
                # A dead-letter write failed: read this record and the rest again later.
                firsts: dict[TopicPartition, int] = {}
                for left in records[i:]:
                    firsts.setdefault(left.topic_partition, left.offset)
                for tp, offset in firsts.items():
                    self._consumer.seek(tp, offset)
                raise
        if self._due():
            self.flush()
        return len(records)

    def _take(self, record: Record) -> None:
        kind = self._kinds[record.topic]
        self._records += 1
        try:
            day, row = to_row(kind, record)
        except DecodeError as exc:
            send_to_dead_letter(self._bp, self._topics.dead_letter, record, str(exc))
            self._dead += 1
        else:
            self._buffers[(kind, day)].append(row)
            self._buffered += 1
            if self._oldest is None:
                self._oldest = self._clock()
        tp = record.topic_partition
        self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)

    def _due(self) -> bool:
        if self._buffered >= self._flush_rows:
            return True
        if self._oldest is not None and self._clock() - self._oldest >= self._flush_seconds:
            return True
        # Records that were all dead-lettered buffer nothing, yet their offsets must move.
        return self._buffered == 0 and bool(self._pending)

    def write_pending(self) -> dict[TopicPartition, int]:
        """Write every buffered row to durable files; return the offsets now safe to commit.

        Split from :meth:`flush` so a test can stop between the write and the commit
        (the crash that duplicates rows).
        """
        written = now_ms()
        for (kind, day), rows in sorted(self._buffers.items()):
            if rows:
                write_part(partition_dir(self._root, self.service, kind, day), kind, rows, written)
                self._rows_written += len(rows)
                self._files += 1
        self._buffers.clear()
        self._buffered = 0
        self._oldest = None
        offsets, self._pending = self._pending, {}
        return offsets

    def flush(self) -> int:
        """Write buffered rows durably, then commit their offsets; return rows written."""
        before = self._rows_written
        offsets = self.write_pending()
        # Commit only partitions still ours: after a rebalance the new owner commits its
        # own progress, and rows it re-reads are deduplicated by readers.
        assigned = self._consumer.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in assigned}
        if mine:
            try:
                self._consumer.commit(mine)
            except BackplaneError:
                # The rows are durable; commit their offsets with the next flush instead.
                for tp, offset in mine.items():
                    self._pending[tp] = max(self._pending.get(tp, 0), offset)
                raise
        return self._rows_written - before

    def run(self, stop: threading.Event | None = None, poll_timeout: float = 0.5) -> None:
        """Archive until ``stop`` is set (or Ctrl-C); flush and leave the group on exit."""
        stop = stop or threading.Event()
        backoff = Backoff(self._retry_max_s)
        try:
            while not stop.is_set():
                try:
                    self.step(timeout=poll_timeout)
                except BackplaneError as exc:
                    if isinstance(exc, ConsumerClosed):
                        raise
                    wait = backoff.failed()
                    log.warning("archiver of %s: %s; retrying in %.1f s", self.service, exc, wait)
                    stop.wait(wait)
                else:
                    backoff.succeeded()
        finally:
            self.close()

    def close(self, *, flush: bool = True) -> None:
        """Flush (unless ``flush`` is false: a crash, losing only uncommitted rows) and
        leave the group. Idempotent."""
        if self._closed:
            return
        try:
            if flush:
                self.flush()
        finally:
            self._closed = True
            self._consumer.close()
