"""Files, connections, tables and the header codec of the SQLite engine.

Invariants the rest of the engine relies on:

* Every database is in WAL mode with ``synchronous=NORMAL``: a committed transaction is in
  the WAL file, which survives the death of the process that wrote it (not a power cut).
* A topic file is complete (schema created) before its row appears in ``meta.db``, so a
  reader that finds the row can open the file read-write without creating anything.
* Connections are opened in autocommit mode; writers use ``BEGIN IMMEDIATE`` explicitly so
  that the write lock is taken up front (no deadlock between two upgrading readers).
* Writers first take the file's write lock
  (:func:`~modelstream.backplane.sqlite.writelock.write_lock`: a thread lock, then a
  ``flock`` shared by the processes), so they queue on locks that hand over at once
  rather than in SQLite's sleeping busy handler.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from modelstream.backplane.records import Headers, TopicSpec
from modelstream.backplane.sqlite.writelock import WriteLock, write_lock
from modelstream.errors import BackplaneUnavailable

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000

META_DDL = (
    "CREATE TABLE IF NOT EXISTS topics ("
    " name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, compacted INTEGER NOT NULL,"
    " file TEXT NOT NULL, created_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS members ("
    " grp TEXT NOT NULL, member TEXT NOT NULL, topics TEXT NOT NULL,"
    " last_seen_ms INTEGER NOT NULL, PRIMARY KEY (grp, member)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS offsets ("
    " grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,"
    " next_offset INTEGER NOT NULL, PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID",
    # Bumped by every change to ``topics``: heartbeats and offset commits change meta.db
    # far more often than topics do, and this one row tells a reader its catalogue holds.
    "CREATE TABLE IF NOT EXISTS catalog_stamp ("
    " id INTEGER PRIMARY KEY CHECK (id = 0), stamp INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO catalog_stamp (id, stamp) VALUES (0, 0)",
)
READ_STAMP = "SELECT stamp FROM catalog_stamp"
BUMP_STAMP = "UPDATE catalog_stamp SET stamp = stamp + 1"

# Clustered on (partition, offset): a poll is one range scan, the next offset one seek.
TOPIC_DDL = (
    "CREATE TABLE IF NOT EXISTS records ("
    " partition INTEGER NOT NULL, offset INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " key BLOB, value BLOB NOT NULL, headers BLOB,"
    " PRIMARY KEY (partition, offset)) WITHOUT ROWID",
)

INSERT_RECORD = (
    "INSERT INTO records (partition, offset, ts, key, value, headers) VALUES (?, ?, ?, ?, ?, ?)"
)
NEXT_OFFSET = "SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE partition = ?"
# Offsets start at 0 and records are never deleted, so an empty partition begins at 0.
# One statement, not MIN then MAX: a record committed between two reads would be skipped.
BEGINNING = "SELECT COALESCE(MIN(offset), 0) FROM records WHERE partition = ?"
FIRST_OFFSET = "SELECT MIN(offset) FROM records WHERE partition = ?"
FETCH = (
    "SELECT offset, ts, key, value, headers FROM records"
    " WHERE partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
)

# Branches per compound statement: well under SQLite's limit of 500 compound terms.
MAX_BRANCHES = 64


def next_offsets_sql(count: int) -> str:
    """One statement giving ``(partition, next offset)`` for ``count`` partitions.

    Each branch is a MAX on the primary key (one seek), and one statement instead of one
    per partition means one trip through SQLite (and one release of the GIL).
    """
    branch = "SELECT ?, COALESCE((SELECT MAX(offset) + 1 FROM records WHERE partition = ?), 0)"
    return " UNION ALL ".join([branch] * count)


def fetch_sql(count: int) -> str:
    """One statement reading ``count`` partitions, each ``(partition, from, limit)``.

    Rows come partition by partition, in the order of the parameters, each in offset
    order; branches are evaluated lazily, so a reader that stops early costs no more.
    """
    branch = (
        "SELECT * FROM (SELECT partition, offset, ts, key, value, headers FROM records"
        " WHERE partition = ? AND offset >= ? ORDER BY offset LIMIT ?)"
    )
    return " UNION ALL ".join([branch] * count)


OFFSET_FOR_TIME = "SELECT MIN(offset) FROM records WHERE partition = ? AND ts >= ?"
LATEST_PER_KEY = (
    "SELECT r.partition, r.offset, r.ts, r.key, r.value, r.headers FROM records AS r"
    " JOIN (SELECT partition AS p, MAX(offset) AS o FROM records"
    "       WHERE key IS NOT NULL GROUP BY partition, key) AS m"
    " ON r.partition = m.p AND r.offset = m.o ORDER BY r.partition, r.offset"
)


def unavailable(path: Path, error: BaseException) -> BackplaneUnavailable:
    """The operator-facing error for a database that cannot be opened, read or written."""
    return BackplaneUnavailable(
        f"sqlite backplane at {path} failed ({error}); check that the directory exists, "
        f"is writable and the disk is not full, or choose another with --backplane sqlite:///dir"
    )


class Connection(sqlite3.Connection):
    """A connection that knows the process-wide write lock of its file."""

    write_lock: WriteLock | None = None


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode; ``create=False`` needs the file.

    Raises ``FileNotFoundError`` when ``create`` is false and the file does not exist
    (the topic was deleted), and :class:`BackplaneUnavailable` on any other failure.
    """
    if not create and not path.exists():
        raise FileNotFoundError(path)
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
            factory=Connection,
        )
        conn.write_lock = write_lock(path)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn
    except sqlite3.Error as error:
        raise unavailable(path, error) from error


def _retry_busy(action: Callable[[], T]) -> T:
    # Switching a fresh file to WAL takes an exclusive lock without calling the busy
    # handler, so processes opening the same new backplane at once retry here.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return action()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def create_schema(conn: sqlite3.Connection, ddl: tuple[str, ...]) -> None:
    """Create the tables of ``ddl`` if missing, in one write transaction."""

    def run() -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in ddl:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _retry_busy(run)


def topic_file_name(topic: str) -> str:
    """A file name for a new incarnation of ``topic``: readable, safe, and unique.

    The random suffix means a topic deleted and created again never reuses the file a
    slow reader of the old incarnation may still have open.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", topic)[:80]
    return f"{safe}-{uuid.uuid4().hex[:10]}.db"


_COUNT = struct.Struct("<I")
_NAME = struct.Struct("<H")


def encode_headers(headers: Headers) -> bytes:
    """Headers as bytes: count, then per header (u16 name length, name, u32 length, value)."""
    parts = [_COUNT.pack(len(headers))]
    for name, value in headers:
        raw = name.encode()
        parts += [_NAME.pack(len(raw)), raw, _COUNT.pack(len(value)), bytes(value)]
    return b"".join(parts)


def decode_headers(data: bytes) -> Headers:
    """The inverse of :func:`encode_headers`."""
    (count,) = _COUNT.unpack_from(data, 0)
    pos = _COUNT.size
    out: list[tuple[str, bytes]] = []
    for _ in range(count):
        (name_len,) = _NAME.unpack_from(data, pos)
        pos += _NAME.size
        name = data[pos : pos + name_len].decode()
        pos += name_len
        (value_len,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        out.append((name, data[pos : pos + value_len]))
        pos += value_len
    return tuple(out)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the database's write lock from its first statement
    (and, first, the file's :class:`WriteLock` when ``conn`` came from :func:`connect`)."""
    lock = getattr(conn, "write_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


@contextmanager
def guard(path: Path) -> Iterator[None]:
    """Turn any SQLite failure inside the block into :class:`BackplaneUnavailable`."""
    try:
        yield
    except sqlite3.Error as error:
        raise unavailable(path, error) from error


@dataclass(frozen=True, slots=True)
class TopicEntry:
    """A topic of the catalogue and the file (under ``topics/``) that holds its records."""

    spec: TopicSpec
    file: str


def read_catalog(meta: sqlite3.Connection) -> dict[str, TopicEntry]:
    """Every topic in ``meta.db``."""
    rows = meta.execute("SELECT name, partitions, compacted, file FROM topics").fetchall()
    return {
        name: TopicEntry(TopicSpec(name, partitions, bool(compacted)), file)
        for name, partitions, compacted, file in rows
    }
