"""The archive's files on disk: hive-style partitions, fixed schemas, atomic writes.

Layout (readable as it is by pandas, pyarrow.dataset, DuckDB and Spark)::

    <root>/service=<S>/kind=<K>/date=<YYYY-MM-DD>/part-<unix ms>-<uuid hex>.parquet

``K`` is ``requests``, ``scores``, ``results``, ``labels`` or ``events``. The date (UTC)
is that of the row's own time: a request's ``event_time``, a score's ``scored_at``, a
result's ``decided_at``, a label's ``labelled_at``, an event's record timestamp. The
partition keys (service, kind, date) are in the path only, never in the files, so a
reader of ``<root>/service=S/kind=K`` gets them as hive partition columns.

Every kind has one fixed schema (below), so files written at different times always
concatenate; variable-width data is a JSON text column (lossless) plus a typed column:

* ``requests``: ``request_id, entity, event_time, deadline, sent_at, reply_to, target,
  inputs`` (JSON text of the protocol tensors), ``x`` (list<double>: the values of every
  numeric input, flattened in input order, when the request is a single row -- every
  input's first dimension is 1 or it is 1-D -- else null), ``features``
  (map<string, double>, the featurizer's values), ``parameters`` (JSON text).
  :class:`~modelstream.archive.reader.ArchiveReader` widens ``x`` into ``input_0..`` and
  ``features`` into ``f_<name>`` columns.
* ``scores``: ``request_id, model, version, role, outputs`` (JSON text), ``prediction``
  (double) and ``prediction_text`` (string): the first value of the first output that is
  not a probabilities output (else the argmax of the probabilities); ``probabilities``
  (list<double>: the output named ``probabilities``/``probability``/``proba``/
  ``output_probability``, one row, index = class), ``error, latency_ms, batch_size,
  scored_at``.
* ``results``: ``request_id, policy, model, version, outputs, prediction,
  prediction_text, error, fallback, deadline, deadline_met, answers, late, missing,
  decided_in_ms, decided_at``.
* ``labels``: ``request_id, entity, event_time, label`` (double, null for string
  classes), ``label_text`` (string form of any label), ``labelled_at, source``.
* ``events``: ``key, timestamp, value`` (the record value as UTF-8 text), ``headers``
  (JSON text ``[[name, value], ...]``, values as UTF-8 text; null when the record has
  none). A featurized service's events topic also carries its requests and watermark
  markers, told apart by headers, so :mod:`modelstream.features.offline` needs them.

Every kind also has ``src_partition`` and ``src_offset``: where on the topic the row came
from. Times are ``timestamp[ms, UTC]``.

**At-least-once.** A file is written under a dot-name (readers skip those), fsynced, and
renamed into place; offsets are committed only after that. A crash between the rename
and the commit writes those rows again on restart, so readers deduplicate: requests and
results by ``request_id``, scores by ``(request_id, model, version)``, labels by what
they label (the latest ``labelled_at`` wins, which also applies corrections), events by
``(src_partition, src_offset)``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

KINDS = ("requests", "scores", "results", "labels", "events")

_TS = pa.timestamp("ms", tz="UTC")
_SRC = [("src_partition", pa.int32()), ("src_offset", pa.int64())]

SCHEMAS: dict[str, pa.Schema] = {
    "requests": pa.schema(
        [
            ("request_id", pa.string()),
            ("entity", pa.string()),
            ("event_time", _TS),
            ("deadline", _TS),
            ("sent_at", _TS),
            ("reply_to", pa.string()),
            ("target", pa.string()),
            ("inputs", pa.string()),
            ("x", pa.list_(pa.float64())),
            ("features", pa.map_(pa.string(), pa.float64())),
            ("parameters", pa.string()),
            *_SRC,
        ]
    ),
    "scores": pa.schema(
        [
            ("request_id", pa.string()),
            ("model", pa.string()),
            ("version", pa.int64()),
            ("role", pa.string()),
            ("outputs", pa.string()),
            ("prediction", pa.float64()),
            ("prediction_text", pa.string()),
            ("probabilities", pa.list_(pa.float64())),
            ("error", pa.string()),
            ("latency_ms", pa.float64()),
            ("batch_size", pa.int64()),
            ("scored_at", _TS),
            *_SRC,
        ]
    ),
    "results": pa.schema(
        [
            ("request_id", pa.string()),
            ("policy", pa.string()),
            ("model", pa.string()),
            ("version", pa.int64()),
            ("outputs", pa.string()),
            ("prediction", pa.float64()),
            ("prediction_text", pa.string()),
            ("error", pa.string()),
            ("fallback", pa.bool_()),
            ("deadline", _TS),
            ("deadline_met", pa.bool_()),
            ("answers", pa.list_(pa.string())),
            ("late", pa.list_(pa.string())),
            ("missing", pa.list_(pa.string())),
            ("decided_in_ms", pa.float64()),
            ("decided_at", _TS),
            *_SRC,
        ]
    ),
    "labels": pa.schema(
        [
            ("request_id", pa.string()),
            ("entity", pa.string()),
            ("event_time", _TS),
            ("label", pa.float64()),
            ("label_text", pa.string()),
            ("labelled_at", _TS),
            ("source", pa.string()),
            *_SRC,
        ]
    ),
    "events": pa.schema(
        [
            ("key", pa.string()),
            ("timestamp", _TS),
            ("value", pa.string()),
            ("headers", pa.string()),
            *_SRC,
        ]
    ),
}

# The column whose UTC date names a row's partition, per kind.
TIME_COLUMN = {
    "requests": "event_time",
    "scores": "scored_at",
    "results": "decided_at",
    "labels": "labelled_at",
    "events": "timestamp",
}


def utc_date(ms: int) -> date:
    """The UTC calendar date of ``ms`` since the epoch."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def kind_dir(root: Path, service: str, kind: str) -> Path:
    """``<root>/service=S/kind=K``: one kind of one service, a dataset of its own."""
    return root / f"service={service}" / f"kind={kind}"


def partition_dir(root: Path, service: str, kind: str, day: date) -> Path:
    return kind_dir(root, service, kind) / f"date={day.isoformat()}"


def write_part(directory: Path, kind: str, rows: list[dict[str, Any]], now_ms: int) -> Path:
    """Write ``rows`` as one new Parquet file in ``directory``, atomically and durably.

    The file is complete and fsynced under a dot-name (which readers ignore), then renamed
    to ``part-<now_ms>-<uuid>.parquet`` and the directory fsynced, so once this returns
    the file survives a crash and no reader ever sees half of it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMAS[kind])
    name = f"part-{now_ms}-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{name}.tmp"
    final = directory / name
    try:
        with tmp.open("wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.rename(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # A new date (or kind) directory is durable only once its parent's entry is too.
    for level in (directory, directory.parent, directory.parent.parent):
        _fsync_dir(level)
    return final


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not supported on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
