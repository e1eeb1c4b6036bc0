"""The SQLite backplane: durable topics shared by the processes of one machine.

Contract (beyond :mod:`modelstream.backplane.port`):

* :meth:`SqliteBackplane.produce` returns once its one transaction is committed to the
  topic's WAL; offsets are taken from the partition's current end inside that
  transaction, so concurrent producers (threads or processes) keep offsets dense.
* The object is safe to share between threads: each thread gets its own connections
  (SQLite connections must not be used by two threads at once) and its own view of the
  topic catalogue, refreshed whenever ``meta.db`` has changed (``PRAGMA data_version``).
* A directory that cannot be created or written raises :class:`BackplaneUnavailable`.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelstream.backplane.partitioner import missing_partition, partition_for
from modelstream.backplane.port import StartFrom
from modelstream.backplane.records import (
    LOCAL_MAX_RECORD_BYTES,
    Delivered,
    OutRecord,
    PartitionInfo,
    Record,
    TopicDescription,
    TopicPartition,
    TopicSpec,
    check_sizes,
    now_ms,
)
from modelstream.backplane.sqlite import groups, schema, writelock
from modelstream.backplane.sqlite.consumer import SqliteConsumer, to_record
from modelstream.backplane.sqlite.wakeup import Wakeups, wakeups_for
from modelstream.errors import BackplaneUnavailable, ConfigurationError, TopicNotFound
from modelstream.settings import Settings


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.meta: sqlite3.Connection | None = None
        self.version = -1  # meta.db's data_version when the catalogue was last checked
        self.stamp = -1  # the catalogue stamp it was read at
        self.catalog: dict[str, schema.TopicEntry] = {}
        self.files: dict[str, sqlite3.Connection] = {}


class SqliteBackplane:
    """Topics in SQLite files under ``path``; see the module docstring."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self._settings = settings
        self._path = Path(path)
        self._topics_dir = self._path / "topics"
        try:
            self._topics_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BackplaneUnavailable(
                f"cannot create the sqlite backplane directory {self._path} "
                f"({error.strerror or error}); create it or choose a writable one with "
                f"--backplane sqlite:///dir (or MODELSTREAM_BACKPLANE)"
            ) from error
        self.meta_path = self._path / "meta.db"
        self._state = _ThreadState()
        self._lock = threading.Lock()
        # every connection opened, with the thread that uses it (see close())
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._unkeyed = itertools.count()
        self._wakeups = wakeups_for(self._topics_dir)
        with schema.guard(self._path):
            schema.create_schema(self._meta(), schema.META_DDL)

    @property
    def url(self) -> str:
        return f"sqlite://{self._path}"

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def max_record_bytes(self) -> int:
        return self._settings.max_record_bytes or LOCAL_MAX_RECORD_BYTES

    @property
    def wakeups(self) -> Wakeups:
        """Where consumers wait for records of this directory's topic files."""
        return self._wakeups

    def topic_path(self, file: str) -> Path:
        """Where the records of a topic whose catalogue entry names ``file`` live."""
        return self._topics_dir / file

    # -- connections and the catalogue ---------------------------------------------------

    def _track(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        with self._lock:
            # Connections of threads that ended are closed here, so short-lived threads
            # that produce do not leave open files behind in a long-running process.
            dead = [c for t, c in self._connections if not t.is_alive()]
            if dead:
                self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
            self._connections.append((threading.current_thread(), conn))
        for old in dead:
            old.close()
        return conn

    def _meta(self) -> sqlite3.Connection:
        state = self._state
        if state.meta is None:
            state.meta = self._track(schema.connect(self.meta_path, create=True))
        return state.meta

    def catalog(self) -> dict[str, schema.TopicEntry]:
        """This thread's view of the topics, reloaded when another connection changed
        them (its catalogue stamp is looked at only when ``meta.db`` changed at all)."""
        state = self._state
        meta = self._meta()
        version = meta.execute("PRAGMA data_version").fetchone()[0]
        if version == state.version:
            return state.catalog
        state.version = version
        stamp = meta.execute(schema.READ_STAMP).fetchone()[0]
        if stamp != state.stamp:
            state.catalog = schema.read_catalog(meta)
            state.stamp = stamp
            # A file no longer in the catalogue belongs to a deleted topic: writing
            # through an old connection would go to an unlinked file, so drop it.
            live = {entry.file for entry in state.catalog.values()}
            for file in [f for f in state.files if f not in live]:
                state.files.pop(file).close()
        return state.catalog

    def _entry(self, name: str, *, create: bool) -> schema.TopicEntry:
        entry = self.catalog().get(name)
        if entry is None:
            if not create:
                raise TopicNotFound(name)
            self.create_topic(name)
            entry = self.catalog()[name]
        return entry

    def _records_conn(self, entry: schema.TopicEntry) -> sqlite3.Connection:
        conn = self._state.files.get(entry.file)
        if conn is None:
            conn = schema.connect(self.topic_path(entry.file), create=False)
            self._state.files[entry.file] = self._track(conn)
        return conn

    # -- topics -----------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int | None = None, *, compacted: bool = False
    ) -> TopicSpec:
        if not name:
            raise ConfigurationError("a topic needs a non-empty name")
        count = self._settings.default_partitions if partitions is None else partitions
        if count < 1:
            raise ConfigurationError(f"topic {name!r} needs at least 1 partition, not {count}")
        with schema.guard(self._path):
            existing = self.catalog().get(name)
            if existing is not None:
                return existing.spec
            # The file is complete before the catalogue names it (see schema.py).
            file = schema.topic_file_name(name)
            fresh = schema.connect(self.topic_path(file), create=True)
            try:
                schema.create_schema(fresh, schema.TOPIC_DDL)
            finally:
                fresh.close()
            meta = self._meta()
            with schema.transaction(meta):
                row = meta.execute(
                    "SELECT partitions, compacted FROM topics WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    meta.execute(
                        "INSERT INTO topics (name, partitions, compacted, file, created_ms)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (name, count, int(compacted), file, now_ms()),
                    )
                    meta.execute(schema.BUMP_STAMP)
            # data_version ignores this connection's own commits: reload next time.
            self._state.version = -1
            if row is not None:  # another process created it first
                self._remove_files(file)
                return TopicSpec(name, row[0], bool(row[1]))
            return TopicSpec(name, count, compacted)

    def delete_topic(self, name: str) -> None:
        with schema.guard(self._path):
            meta = self._meta()
            with schema.transaction(meta):
                row = meta.execute("SELECT file FROM topics WHERE name = ?", (name,)).fetchone()
                if row is not None:
                    meta.execute("DELETE FROM topics WHERE name = ?", (name,))
                    meta.execute(schema.BUMP_STAMP)
                    groups.forget_topic(meta, name)
            self._state.version = -1
            if row is None:
                raise TopicNotFound(name)
            conn = self._state.files.pop(row[0], None)
            if conn is not None:
                conn.close()
            self._remove_files(row[0])

    def _remove_files(self, file: str) -> None:
        base = self.topic_path(file)
        for suffix in ("", "-wal", "-shm", writelock.SUFFIX):
            base.with_name(base.name + suffix).unlink(missing_ok=True)

    def list_topics(self) -> list[TopicSpec]:
        with schema.guard(self._path):
            return sorted((e.spec for e in self.catalog().values()), key=lambda s: s.name)

    def set_group_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        with schema.guard(self._path):
            groups.commit(self._meta(), group, "", offsets, now_ms())

    def partitions(self, name: str) -> tuple[PartitionInfo, ...]:
        with schema.guard(self._path):
            return self._partitions(self._entry(name, create=False))

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        with schema.guard(self._path):
            entry = self._entry(topic, create=False)
            wanted = [TopicPartition(topic, p) for p in range(entry.spec.partitions)]
            found = groups.committed(self._meta(), group, wanted)
            return {tp.partition: o for tp, o in found.items() if o is not None}

    def describe_topic(self, name: str) -> TopicDescription:
        with schema.guard(self._path):
            entry = self._entry(name, create=False)
            infos = self._partitions(entry)
            found = groups.describe_groups(
                self._meta(),
                name,
                {p.partition: p.end for p in infos},
                {p.partition: p.start for p in infos},
                now_ms=now_ms(),
                timeout_ms=self._settings.session_timeout_ms,
            )
            return TopicDescription(entry.spec, infos, found)

    def _partitions(self, entry: schema.TopicEntry) -> tuple[PartitionInfo, ...]:
        conn = self._records_conn(entry)
        infos = []
        for p in range(entry.spec.partitions):
            end = conn.execute(schema.NEXT_OFFSET, (p,)).fetchone()[0]
            first = conn.execute(schema.FIRST_OFFSET, (p,)).fetchone()[0]
            infos.append(PartitionInfo(p, end if first is None else first, end))
        return tuple(infos)

    # -- producing ----------------------------------------------------------------------

    def produce(self, topic: str, records: Sequence[OutRecord]) -> list[Delivered]:
        check_sizes(topic, records, self.max_record_bytes)
        with schema.guard(self._path):
            try:
                return self._produce(topic, records)
            except FileNotFoundError:
                # The topic was deleted by another process since this thread looked it
                # up; produce creates topics on first use, so try once more.
                self._state.version = -1
                return self._produce(topic, records)

    def _produce(self, topic: str, records: Sequence[OutRecord]) -> list[Delivered]:
        entry = self._entry(topic, create=True)
        if not records:
            return []
        count = entry.spec.partitions
        placed: list[int] = []
        for out in records:
            if out.partition is not None:
                if not 0 <= out.partition < count:
                    raise missing_partition(topic, out.partition, count)
                placed.append(out.partition)
            elif out.key is not None:
                placed.append(partition_for(out.key, count))
            else:
                placed.append(next(self._unkeyed) % count)
        conn = self._records_conn(entry)
        stamp = now_ms()
        encode = schema.encode_headers
        delivered: list[Delivered] = []
        with schema.transaction(conn):
            wanted = sorted(set(placed))
            nexts: dict[int, int] = {}
            for start in range(0, len(wanted), schema.MAX_BRANCHES):
                chunk = wanted[start : start + schema.MAX_BRANCHES]
                params = [v for p in chunk for v in (p, p)]
                nexts.update(conn.execute(schema.next_offsets_sql(len(chunk)), params).fetchall())
            rows = []
            for out, p in zip(records, placed, strict=True):
                offset = nexts[p]
                nexts[p] = offset + 1
                ts = stamp if out.timestamp is None else out.timestamp
                headers = encode(out.headers) if out.headers else None
                rows.append((p, offset, ts, out.key, out.value, headers))
                delivered.append(Delivered(topic, p, offset, ts))
            conn.executemany(schema.INSERT_RECORD, rows)
        self._wakeups.changed(entry.file)
        return delivered

    def read_compacted(self, topic: str) -> dict[bytes, Record]:
        """Per key, the record with the highest offset in its partition.

        A key normally lives in one partition; if records of one key were sent to
        several partitions explicitly, the one with the latest timestamp wins.
        """
        with schema.guard(self._path):
            entry = self._entry(topic, create=True)
            latest: dict[bytes, Record] = {}
            for partition, *row in self._records_conn(entry).execute(schema.LATEST_PER_KEY):
                record = to_record(topic, partition, row)
                key = record.key
                assert key is not None  # the query selects keyed records only
                previous = latest.get(key)
                if previous is None or previous.timestamp <= record.timestamp:
                    latest[key] = record
            return latest

    # -- consuming ----------------------------------------------------------------------

    def consumer(
        self, topics: Sequence[str], *, group: str | None = None, start: StartFrom = "earliest"
    ) -> SqliteConsumer:
        if not topics:
            raise ConfigurationError("a consumer needs at least one topic")
        if start not in ("earliest", "latest"):
            raise ConfigurationError(f"start must be 'earliest' or 'latest', not {start!r}")
        with schema.guard(self._path):
            for name in topics:
                self._entry(name, create=True)
            return SqliteConsumer(self, tuple(dict.fromkeys(topics)), group, start)

    def close(self) -> None:
        """Close the connections this object opened in this thread and in threads that
        have ended; afterwards any thread that uses it again opens fresh connections.

        A connection of a thread still running is not closed here: that thread may be
        inside a statement on it, and closing it underneath is a use-after-free in SQLite
        (a segmentation fault, not an error). It is closed when that thread's state is
        released, at the latest when the thread ends.
        """
        me = threading.current_thread()
        with self._lock:
            connections, self._connections = self._connections, []
        for thread, conn in connections:
            if thread is me or not thread.is_alive():
                conn.close()
        self._state = _ThreadState()
