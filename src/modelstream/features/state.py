"""The state store port: a key-value map of JSON-compatible values, flushed atomically.

Contract (proven for every implementation by ``tests/features/test_state_contract.py``):

* Values are JSON-compatible (dicts with string keys, lists, str, int, float, bool,
  None, and ``orjson.Fragment``: JSON already encoded, which the checkpointer uses to
  encode an entity's state once). ``put`` stores a copy: later changes to the caller's
  object do not leak in, and ``get`` returns a value the caller may change freely. A
  value that is not JSON raises :class:`~modelstream.errors.FeatureError` (state is
  never pickled).
* ``get`` sees every ``put`` and ``delete`` at once; ``items(prefix)`` yields the live
  keys starting with ``prefix`` in key order.
* ``flush`` makes every change since the previous flush durable *atomically*: after a
  crash, a durable store holds exactly the state of its last completed flush. The
  in-memory store is durable for the life of the object only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from modelstream.errors import FeatureError

_DELETED = object()


@runtime_checkable
class StateStore(Protocol):
    """Where the featurizer keeps per-entity state between checkpoints."""

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or ``None``."""
        ...

    def put(self, key: str, value: Any) -> None:
        """Store a copy of the JSON-compatible ``value`` under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens if it is absent)."""
        ...

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every ``(key, value)`` whose key starts with ``prefix``, in key order."""
        ...

    def flush(self) -> None:
        """Make every change since the last flush durable, all or nothing."""
        ...

    def close(self) -> None:
        """Release files; unflushed changes are lost."""
        ...


def _encode(key: str, value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise FeatureError(
            f"state for {key!r} is not JSON-compatible ({exc}); state stores hold JSON only"
        ) from None


class MemoryStateStore:
    """A dict of JSON bytes, for tests and for featurizers that restore from the changelog."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def get(self, key: str) -> Any | None:
        raw = self._data.get(key)
        return None if raw is None else orjson.loads(raw)

    def put(self, key: str, value: Any) -> None:
        self._data[key] = _encode(key, value)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            yield key, orjson.loads(self._data[key])

    def flush(self) -> None:
        """Nothing to do: the dict is as durable as this object."""

    def close(self) -> None:
        """Nothing to release."""


class SqliteStateStore:
    """A durable store: one SQLite file (WAL), changes buffered until :meth:`flush`.

    Changes wait in memory and are written in one transaction by ``flush``, so a crash
    leaves the file at the last flush. One thread uses a store at a time.
    """

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self._path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )
            self._conn.commit()
        except sqlite3.Error as exc:
            raise FeatureError(
                f"cannot open the feature state store {self._path} ({exc}); check that "
                "the directory is writable, or delete a corrupt file to rebuild it"
            ) from None
        self._pending: dict[str, bytes | object] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        raw = self._pending.get(key)
        if raw is _DELETED:
            return None
        if raw is None:
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            raw = None if row is None else row[0]
        return None if raw is None else orjson.loads(raw)  # type: ignore[arg-type]

    def put(self, key: str, value: Any) -> None:
        self._pending[key] = _encode(key, value)

    def delete(self, key: str) -> None:
        self._pending[key] = _DELETED

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        # Keys in [prefix, prefix + U+10FFFF) are exactly those starting with prefix.
        rows = self._conn.execute(
            "SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\U0010ffff"),
        ).fetchall()
        merged: dict[str, bytes | object] = dict(rows)
        merged.update((k, v) for k, v in self._pending.items() if k.startswith(prefix))
        for key in sorted(merged):
            raw = merged[key]
            if raw is not _DELETED:
                yield key, orjson.loads(raw)  # type: ignore[arg-type]

    def flush(self) -> None:
        with self._lock:
            if not self._pending:
                return
            puts = [(k, v) for k, v in self._pending.items() if v is not _DELETED]
            dels = [(k,) for k, v in self._pending.items() if v is _DELETED]
            try:
                with self._conn:  # one transaction: all or nothing
                    self._conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", puts)
                    self._conn.executemany("DELETE FROM state WHERE key = ?", dels)
            except sqlite3.Error as exc:
                raise FeatureError(
                    f"cannot write the feature state store {self._path} ({exc}); "
                    "free disk space or move the store"
                ) from None
            self._pending.clear()

    def close(self) -> None:
        self._conn.close()
