"""The same features offline: replay archived events through the same engine.

:func:`build` drives :class:`~modelstream.features.engine.FeatureEngine` exactly as the
featurizer does (per partition, in log order, watermark markers included), so:

* a **request row** gets the very features the featurizer wrote onto ``S.requests``;
* an **event row** gets the features as of its own event time, as if a request with
  that time followed the event in the log (the event itself is never in a window
  ending at or before its time, so a row never sees its own or any later value);
* the late records it reports are exactly those the featurizer sent to ``S.late``.

Sources:

* a topic (``topic:NAME``, read from the backplane: the log itself);
* the project's archive (:mod:`modelstream.archive.layout`): an archive root with a
  service (``<root>/service=S/kind=events``), a ``service=S`` or ``kind=events``
  directory, or files of that layout. Each row is the archived record: its ``value``
  is parsed as the featurizer parses it, its ``headers`` tell requests and watermark
  markers from events, rows replay in ``(src_partition, src_offset)`` order, and the
  archiver's at-least-once duplicates (the same source offset twice) are dropped. So
  the build from the archive equals the build from the topic. Any other kind of the
  archive, or files written without headers, are refused rather than misread;
* other Parquet (a file or a directory of files) of events, one per row: the entity
  is the feature set's ``entity_field`` (else an ``entity`` or ``key`` column), the
  time its ``time_field`` (else ``timestamp``). With ``partition`` and ``offset``
  columns the rows replay in that log order; without, they replay in file order,
  placed by ``murmur2(entity) % partitions`` as the backplane would place them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Record
from modelstream.errors import ConfigurationError, DecodeError, FeatureError
from modelstream.features import records as rec
from modelstream.features.definitions import FeatureSet
from modelstream.features.engine import FeatureEngine
from modelstream.features.plan import WindowResult
from modelstream.wire.requests import decode_request


@dataclass(frozen=True, slots=True)
class LateRow:
    partition: int
    offset: int
    entity: str
    event_time: int
    reason: str


@dataclass
class OfflineResult:
    """What a replay produced: training rows, window results and late records."""

    event_rows: list[dict[str, Any]] = field(default_factory=list)
    request_rows: list[dict[str, Any]] = field(default_factory=list)
    results: list[WindowResult] = field(default_factory=list)
    late: list[LateRow] = field(default_factory=list)
    undecodable: int = 0


@dataclass(frozen=True, slots=True)
class Entry:
    """One archived record: an event, a request (``request`` set) or a marker."""

    partition: int
    offset: int
    record: Record | None = None
    row: dict[str, Any] | None = None


def build(
    feature_set: FeatureSet, entries: Iterable[Entry], *, flush: bool = True
) -> OfflineResult:
    """Replay ``entries`` (any interleaving of partitions; each in offset order)."""
    engine = FeatureEngine(feature_set)
    decoder = rec.EventDecoder(feature_set)
    out = OfflineResult()
    names = set(feature_set.names)
    for entry in entries:
        p = entry.partition
        try:
            if entry.row is not None:
                row = entry.row
                key = row.get("entity", row.get("key"))
                entity, t, values = decoder.from_mapping(
                    row, None if key is None else str(key), row.get("timestamp")
                )
                base = dict(row)
            else:
                record = entry.record
                assert record is not None
                if record.header(rec.KIND_HEADER) == rec.REQUEST_KIND:
                    request = decode_request(record.value)
                    features = engine.features_as_of(p, request.entity, request.event_time)
                    out.request_rows.append(
                        {
                            "request_id": request.id,
                            "entity": request.entity,
                            "event_time": request.event_time,
                            "partition": p,
                            "offset": entry.offset,
                            **features,
                        }
                    )
                    continue
                marker = record.header(rec.WATERMARK_HEADER)
                if marker is not None:
                    engine.advance(p, int(marker))
                    continue
                entity, t, values = decoder.decode(record)
                base = {"entity": entity, "event_time": t, "partition": p, "offset": entry.offset}
                base.update(values)
        except (DecodeError, ValueError):
            out.undecodable += 1
            continue
        reason = engine.process(p, entity, t, values)
        if reason is not None:
            out.late.append(LateRow(p, entry.offset, entity, t, reason))
        clash = names & base.keys()
        if clash:
            raise FeatureError(f"archive columns {sorted(clash)} clash with feature names")
        base.update(engine.features_as_of(p, entity, t))
        out.event_rows.append(base)
        out.results.extend(engine.drain())
    if flush:
        engine.flush()
    out.results.extend(engine.drain())
    return out


def topic_entries(backplane: Backplane, topic: str) -> Iterator[Entry]:
    """Every record of ``topic`` now, partition by partition, in offset order."""
    ends = {info.partition: info.end for info in backplane.partitions(topic)}
    consumer = backplane.consumer([topic], start="earliest")
    try:
        by_partition: dict[int, list[Record]] = {p: [] for p in ends}
        remaining = {p for p, end in ends.items() if end > 0}
        while remaining:
            batch = consumer.poll(10_000, timeout=1.0)
            if not batch:
                raise ConfigurationError(f"topic {topic!r} ended before its described end")
            for record in batch:
                if record.offset < ends[record.partition]:
                    by_partition[record.partition].append(record)
                if record.offset + 1 >= ends[record.partition]:
                    remaining.discard(record.partition)
    finally:
        consumer.close()
    for p in sorted(by_partition):
        for record in by_partition[p]:
            yield Entry(p, record.offset, record=record)


def parquet_entries(
    path: Path, feature_set: FeatureSet, partitions: int, service: str | None = None
) -> Iterator[Entry]:
    """The rows of the archive or of Parquet at ``path``, as entries in log order (see
    the module doc); ``service`` picks the service's events under an archive root."""
    if not path.exists():
        raise ConfigurationError(f"archive {path} does not exist; pass a Parquet file or dir")
    events = _archived_events(path, service)
    if events is not None:
        yield from archive_entries(events, service)
        return
    rows = pq.read_table(path).to_pylist()
    time_column = feature_set.time_field or "timestamp"
    for row in rows:  # Parquet timestamps arrive as datetimes: event time is ms
        value = row.get(time_column)
        if isinstance(value, datetime):
            row[time_column] = round(value.timestamp() * 1000)
    if rows and "partition" in rows[0] and "offset" in rows[0]:
        rows.sort(key=lambda r: (r["partition"], r["offset"]))
        for row in rows:
            yield Entry(int(row["partition"]), int(row["offset"]), row=row)
        return
    entity_field = feature_set.entity_field
    counters = [0] * partitions
    for row in rows:
        entity = row.get(entity_field) if entity_field else row.get("entity", row.get("key"))
        p = partition_for(str(entity).encode(), partitions)
        yield Entry(p, counters[p], row=row)
        counters[p] += 1


# The columns of the archive's events kind (see modelstream.archive.layout).
_ARCHIVE_EVENTS = ("key", "timestamp", "value", "headers", "src_partition", "src_offset")


def _archived_events(path: Path, service: str | None) -> Path | None:
    """The archive's events at ``path`` (see the module doc), or ``None`` if ``path`` is
    not the archive. Raises ``ConfigurationError`` for archive paths it cannot use."""
    if path.is_dir() and any(path.glob("service=*")):
        if service is None:
            raise ConfigurationError(f"{path} is an archive root: pass the service to build")
        path = path / f"service={service}"
        if not path.is_dir():
            found = sorted(p.name.removeprefix("service=") for p in path.parent.glob("service=*"))
            raise ConfigurationError(
                f"archive {path.parent} holds nothing of service {service!r} (it holds {found})"
            )
    if path.name.startswith("service="):
        named = path.name.removeprefix("service=")
        if service is not None and named != service:
            raise ConfigurationError(f"{path} is service {named!r}, not {service!r}")
        path = path / "kind=events"
        if not path.is_dir():
            raise ConfigurationError(
                f"{path.parent} holds no events: archive the service's events topic "
                "(the archiver picks it up when it exists) before building features"
            )
    if path.name.startswith("kind=") and path.name != "kind=events":
        raise ConfigurationError(
            f"{path} holds the archive's {path.name.removeprefix('kind=')} rows; features "
            "are built from its events: pass the archive root and the service"
        )
    if path.name == "kind=events" or any(path.glob("date=*")):
        return path
    columns = set(ds.dataset(path, format="parquet").schema.names)
    return path if {"value", "src_partition", "src_offset"} <= columns else None


def archive_entries(path: Path, service: str | None = None) -> Iterator[Entry]:
    """The archived events records under ``path`` in log order, duplicates dropped."""
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    for fragment in dataset.get_fragments():
        missing = set(_ARCHIVE_EVENTS) - set(fragment.physical_schema.names)
        if missing:
            raise ConfigurationError(
                f"{fragment.path} lacks the archive's events columns {sorted(missing)}: "
                "without the record headers requests and watermark markers cannot be "
                "told from events; archive the events topic again with this version"
            )
    table = dataset.to_table(columns=list(_ARCHIVE_EVENTS))
    if table.num_rows == 0:
        return
    if table.column("src_partition").null_count or table.column("src_offset").null_count:
        raise ConfigurationError(f"{path}: rows without src_partition/src_offset; re-archive")
    order = [("src_partition", "ascending"), ("src_offset", "ascending")]
    table = table.take(pc.sort_indices(table, sort_keys=order))
    topic = rec.events_topic(service) if service else "events"
    columns = {name: table.column(name) for name in _ARCHIVE_EVENTS}
    columns["timestamp"] = columns["timestamp"].cast(pa.int64())  # ms since the epoch
    previous = None
    for key, ts, value, headers, p, o in zip(
        *(columns[name].to_pylist() for name in _ARCHIVE_EVENTS), strict=True
    ):
        if (p, o) == previous:
            continue  # written twice: the archiver is at-least-once
        previous = (p, o)
        pairs = () if headers is None else tuple((n, v.encode()) for n, v in orjson.loads(headers))
        record = Record(
            topic,
            p,
            o,
            ts,
            None if key is None else key.encode(),
            (value or "").encode(),
            pairs,
        )
        yield Entry(p, o, record=record)


def write_parquet(rows: list[dict[str, Any]], out: Path) -> int:
    """Write ``rows`` as one Parquet file; the number of rows written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return len(rows)
