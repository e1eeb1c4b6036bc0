"""Checkpoints: the engine's state, per partition, in a store and a changelog topic.

A checkpoint of partition ``p`` at input offset ``o`` (the next event to read) takes
four steps, in this order:

1. produce one record per entity changed since the last checkpoint onto the compacted
   ``S.features-changelog`` (key = ``<p>/<entity>``: an entity's state is per
   partition, and one entity can be in several): ``{"p", "epoch", "state", "prev"}``, where
   ``prev`` is the entity's previous checkpointed ``{"epoch", "state"}``;
2. produce the partition's marker (key ``\\0checkpoint/p``): ``{"epoch", "offset", "meta"}``;
3. put the same states and marker into the :class:`StateStore` and ``flush`` it (atomic);
4. (the featurizer) commit ``o`` for the consumer group, for lag monitoring only.

Restore reads the local store if it holds the changelog's latest epoch (the fast path
after a restart on the same machine), else rebuilds from the changelog: for each entity
it takes ``state`` if its epoch is at most the marker's, else ``prev``. An entity record
newer than the marker belongs to a checkpoint cut short by a crash between steps 1 and
2, and its ``prev`` is exactly the state the marker's offset goes with. Either way the
featurizer resumes at the marker's offset with the state that offset goes with, so it
re-derives the very outputs it would have produced without the crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.features.engine import FeatureEngine
from modelstream.features.state import StateStore


def _marker_key(partition: int) -> bytes:
    return f"\0checkpoint/{partition}".encode()


def _changelog_key(partition: int, entity: str) -> bytes:
    return f"{partition}/{entity}".encode()


def _entity_key(partition: int, entity: str) -> str:
    return f"e/{partition}/{entity}"


def _meta_key(partition: int) -> str:
    return f"m/{partition}"


class Checkpointer:
    """Writes and restores the checkpoints of one featurizer's partitions."""

    def __init__(
        self, backplane: Backplane, topic: str, store: StateStore, engine: FeatureEngine
    ) -> None:
        self._backplane = backplane
        self._topic = topic
        self._store = store
        self._engine = engine
        self._epochs: dict[int, int] = {}
        # entities whose newest changelog record came from a checkpoint a crash cut short:
        # the next checkpoint rewrites them, so no later restore can pick that record
        self._rewrite: dict[int, set[str]] = {}
        # per partition, store key -> the JSON of the version the store holds (after the
        # last flush): the next checkpoint's "prev", without reading and decoding the
        # store (a few hundred bytes per entity; refilled from the store after restore)
        self._written: dict[int, dict[str, bytes]] = {}
        backplane.create_topic(topic, 1, compacted=True)

    def checkpoint(self, partition: int, offset: int) -> None:
        """Record ``partition``'s state as of input ``offset`` (the next to read)."""
        epoch = self._epochs.get(partition, 0) + 1
        dirty: dict[str, bytes | None] = dict(self._engine.take_dirty(partition))
        for entity in self._rewrite.pop(partition, set()) - dirty.keys():
            current = self._engine.entity_json(partition, entity)
            dirty[entity] = None if current is None else orjson.dumps(current)
        records = []
        versions: list[tuple[str, bytes | None]] = []
        store = self._store
        written = self._written.setdefault(partition, {})
        head = b'{"p":%d,"epoch":%d,"state":' % (partition, epoch)
        for entity, state in dirty.items():
            key = _entity_key(partition, entity)
            prev = written.get(key)
            if prev is None:
                held = store.get(key)
                prev = b"null" if held is None else orjson.dumps(held)
            # The state is encoded once (by the engine) and spliced into the changelog
            # record and the stored version: encoding is most of a checkpoint's cost.
            encoded = b"null" if state is None else state
            value = b'%s%s,"prev":%s}' % (head, encoded, prev)
            records.append(OutRecord(value, _changelog_key(partition, entity)))
            version = None if state is None else b'{"epoch":%d,"state":%s}' % (epoch, state)
            versions.append((key, version))
        if records:
            self._backplane.produce(self._topic, records)
        marker = {"epoch": epoch, "offset": offset, "meta": self._engine.meta(partition)}
        out = OutRecord(orjson.dumps(marker), _marker_key(partition))
        self._backplane.produce(self._topic, [out])
        for key, version in versions:
            if version is None:
                store.delete(key)
            else:
                store.put(key, orjson.Fragment(version))
        self._store.put(_meta_key(partition), marker)
        self._store.flush()
        self._epochs[partition] = epoch
        for key, version in versions:  # only now does the store hold them
            if version is None:
                written.pop(key, None)
            else:
                written[key] = version

    def forget(self, partition: int) -> None:
        """Drop what is kept in memory for ``partition`` (it was revoked)."""
        self._written.pop(partition, None)
        self._rewrite.pop(partition, None)

    def restore(self, partition: int) -> int | None:
        """Load ``partition`` into the engine; the offset to resume at (``None``: start)."""
        self.forget(partition)
        compacted = self._backplane.read_compacted(self._topic)
        marker_record = compacted.get(_marker_key(partition))
        marker = None if marker_record is None else orjson.loads(marker_record.value)
        local = self._store.get(_meta_key(partition))
        if local is not None and (marker is None or local["epoch"] >= marker["epoch"]):
            chosen = local
        elif marker is not None:
            chosen = marker
        else:
            chosen = {"epoch": 0, "offset": None, "meta": None}
        epoch = int(chosen["epoch"])
        from_log = self._scan_changelog(partition, epoch, compacted, keep=chosen is not local)
        entities = self._from_store(partition) if chosen is local else iter(from_log)
        if chosen["meta"] is None:
            self._engine.drop(partition)
        else:
            self._engine.restore(partition, chosen["meta"], entities)
        if chosen is marker:
            self._store.put(_meta_key(partition), marker)
            self._store.flush()
        return None if chosen["offset"] is None else int(chosen["offset"])

    def _from_store(self, partition: int) -> Iterator[tuple[str, Any]]:
        prefix = _entity_key(partition, "")
        for key, value in self._store.items(prefix):
            yield key[len(prefix) :], value["state"]

    def _scan_changelog(
        self, partition: int, epoch: int, compacted: dict[bytes, Any], *, keep: bool
    ) -> list[tuple[str, Any]]:
        """The entities' states as of ``epoch``; note records newer than it for rewriting."""
        chosen: list[tuple[str, Any]] = []
        newest = epoch
        rewrite: set[str] = set()
        prefix = _changelog_key(partition, "")
        for key, record in compacted.items():
            if not key.startswith(prefix):
                continue  # another partition's entity, or a marker
            value = orjson.loads(record.value)
            entity = key[len(prefix) :].decode()
            version = {"epoch": value["epoch"], "state": value["state"]}
            if version["epoch"] > epoch:  # written by a checkpoint a crash cut short
                newest = max(newest, version["epoch"])
                rewrite.add(entity)
                version = value.get("prev")
                if version is None or version["epoch"] > epoch:
                    continue
            if version["state"] is not None:
                chosen.append((entity, version["state"]))
                if keep:  # the local store is behind: bring it up to the changelog
                    self._store.put(_entity_key(partition, entity), version)
        self._epochs[partition] = newest
        self._rewrite[partition] = rewrite
        return chosen
