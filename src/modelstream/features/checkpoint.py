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

A changelog record restore cannot read (not JSON, the wrong schema, above the size
limit) is skipped: it goes to ``S.dead-letter`` with the reason (once per featurizer
process, again after a restart, until a later checkpoint replaces it), and restore
carries on with the others, so one bad record costs the entity it stands for, never the partition.
A poisoned entity record is rewritten by the next checkpoint of its partition. A
poisoned marker counts as no marker: restore falls back to the local store, or else to
the start of the events log (re-deriving every state from the events).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.errors import DecodeError
from modelstream.features.engine import FeatureEngine
from modelstream.features.state import StateStore
from modelstream.wire import codec
from modelstream.wire.deadletter import send_to_dead_letter

log = logging.getLogger(__name__)


def _marker_key(partition: int) -> bytes:
    return f"\0checkpoint/{partition}".encode()


def _changelog_key(partition: int, entity: str) -> bytes:
    return f"{partition}/{entity}".encode()


def _entity_key(partition: int, entity: str) -> str:
    return f"e/{partition}/{entity}"


def _meta_key(partition: int) -> str:
    return f"m/{partition}"


def _version(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    epoch = codec.field(obj, "epoch", int, where)
    if epoch < 0:
        raise DecodeError(f"{where} field 'epoch' must be at least 0, got {epoch}")
    if "state" not in obj:
        raise DecodeError(f"{where} record lacks required field 'state'")
    state = obj["state"]
    if state is not None:
        if not isinstance(state, dict):
            raise DecodeError(f"{where} field 'state' must be an object or null")
        windows = codec.field(state, "w", list, f"{where} state")
        finals = codec.field(state, "f", list, f"{where} state")
        if len(windows) != len(finals):
            raise DecodeError(f"{where} state has {len(windows)} windows but {len(finals)} finals")
    return {"epoch": epoch, "state": state}


def decode_entry(data: bytes) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """An entity record of the changelog: its partition, its ``{"epoch", "state"}`` and
    its ``prev`` (``None``: the entity had no checkpointed state). ``DecodeError`` names
    the field at fault."""
    obj = codec.loads(data, "changelog")
    partition = codec.field(obj, "p", int, "changelog")
    prev = obj.get("prev")
    if prev is not None and not isinstance(prev, dict):
        raise DecodeError("changelog field 'prev' must be an object or null")
    return (
        partition,
        _version(obj, "changelog"),
        None if prev is None else _version(prev, "changelog prev"),
    )


def decode_marker(data: bytes) -> dict[str, Any]:
    """A checkpoint marker ``{"epoch", "offset", "meta"}``; ``DecodeError`` names the
    field at fault."""
    obj = codec.loads(data, "checkpoint marker")
    epoch = codec.field(obj, "epoch", int, "checkpoint marker")
    offset = codec.optional(obj, "offset", int, "checkpoint marker")
    if epoch < 0 or (offset is not None and offset < 0):
        raise DecodeError("checkpoint marker fields 'epoch' and 'offset' must be at least 0")
    meta = codec.optional(obj, "meta", dict, "checkpoint marker")
    if meta is not None:
        for name in ("wm", "max_ts"):
            codec.field(meta, name, int, "checkpoint marker meta")
        codec.optional(meta, "late", int, "checkpoint marker meta")
    return {"epoch": epoch, "offset": offset, "meta": meta}


class Checkpointer:
    """Writes and restores the checkpoints of one featurizer's partitions; changelog
    records restore cannot read go to ``dead_letter`` (see the module docstring)."""

    def __init__(
        self,
        backplane: Backplane,
        topic: str,
        store: StateStore,
        engine: FeatureEngine,
        *,
        dead_letter: str,
    ) -> None:
        self._backplane = backplane
        self._topic = topic
        self._dead_letter = dead_letter
        # (partition, offset) of the changelog records this instance dead-lettered: a
        # poison record is copied once however often its partition is restored
        self._dead: set[tuple[int, int]] = set()
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
        marker = None if marker_record is None else self._marker(partition, marker_record)
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

    def _marker(self, partition: int, record: Record) -> dict[str, Any] | None:
        try:
            return decode_marker(record.value)
        except DecodeError as exc:
            reason = f"unreadable checkpoint marker (restoring as if none): {exc}"
            self._skip(partition, record, reason)
            return None

    def _skip(self, partition: int, record: Record, reason: str) -> None:
        """Dead-letter a changelog record restore cannot read (once per instance)."""
        if (partition, record.offset) in self._dead:
            return
        log.error(
            "featurizer restore of partition %d skips %s@%d: %s; its state is rebuilt without it",
            partition,
            record.topic,
            record.offset,
            reason,
        )
        send_to_dead_letter(self._backplane, self._dead_letter, record, reason)
        self._dead.add((partition, record.offset))

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
            try:
                entity = key[len(prefix) :].decode()
                p, version, prev = decode_entry(record.value)
                if p != partition:
                    raise DecodeError(f"changelog record of partition {p} under key {key!r}")
            except (DecodeError, UnicodeDecodeError) as exc:
                self._skip(partition, record, f"unreadable changelog record: {exc}")
                # the next checkpoint writes the entity's state (none) over the poison
                rewrite.add(key[len(prefix) :].decode(errors="replace"))
                continue
            if version["epoch"] > epoch:  # written by a checkpoint a crash cut short
                newest = max(newest, version["epoch"])
                rewrite.add(entity)
                if prev is None or prev["epoch"] > epoch:
                    continue
                version = prev
            if version["state"] is not None:
                chosen.append((entity, version["state"]))
                if keep:  # the local store is behind: bring it up to the changelog
                    self._store.put(_entity_key(partition, entity), version)
        self._epochs[partition] = newest
        self._rewrite[partition] = rewrite
        return chosen
