"""Reading the archive back: deduplicated tables per kind, and the joined training set.

:class:`ArchiveReader` reads ``<root>/service=S/kind=K`` with ``pyarrow.dataset`` (hive
partitions, date-pruned), deduplicates as :mod:`.layout` describes, and returns pandas
DataFrames. Windows are half-open ``[start, end)`` on each kind's own time column
(``event_time`` for requests); naive datetimes are taken as UTC.

:meth:`ArchiveReader.joined` is the training and evaluation set: one row per request of
the window, with its label (by request id, else by entity and event time) and, per model
version, that model's score columns named by :func:`score_column`. Scores whose request
was never archived (an embedded scorer writes scores but no requests) get rows of their
own, with empty request columns, so ``compare`` and promotion see them too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from modelstream.archive.layout import KINDS, SCHEMAS, TIME_COLUMN, kind_dir
from modelstream.models.refs import ModelRef

SCORE_FIELDS = ("prediction", "prediction_text", "probabilities", "error", "latency_ms")


def score_column(ref: ModelRef | str, field: str) -> str:
    """The column of :meth:`ArchiveReader.joined` holding ``field`` of ``ref``'s score."""
    return f"{ref}.{field}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ArchiveReader:
    """Reads an archive root written by :class:`~modelstream.archive.archiver.Archiver`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def services(self) -> list[str]:
        """Names of the services with anything archived."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name.removeprefix("service=") for p in self.root.glob("service=*") if p.is_dir()
        )

    def _dataset(self, service: str, kind: str) -> ds.Dataset | None:
        """One kind of one service as a hive-partitioned dataset; ``None`` if never written."""
        directory = kind_dir(self.root, service, kind)
        if not directory.is_dir():
            return None
        schema = SCHEMAS[kind].append(pa.field("date", pa.string()))
        partitioning = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
        return ds.dataset(directory, schema=schema, format="parquet", partitioning=partitioning)

    def _table(
        self,
        service: str,
        kind: str,
        start: datetime | None,
        end: datetime | None,
        extra: ds.Expression | None = None,
    ) -> pa.Table:
        dataset = self._dataset(service, kind)
        if dataset is None:
            return SCHEMAS[kind].append(pa.field("date", pa.string())).empty_table()
        column = ds.field(TIME_COLUMN[kind])
        condition: ds.Expression | None = extra
        if start is not None:
            start = _utc(start)
            # Date partitions prune whole directories before any file is opened.
            bound = (ds.field("date") >= start.date().isoformat()) & (column >= pa.scalar(start))
            condition = bound if condition is None else condition & bound
        if end is not None:
            end = _utc(end)
            bound = (ds.field("date") <= end.date().isoformat()) & (column < pa.scalar(end))
            condition = bound if condition is None else condition & bound
        return dataset.to_table(filter=condition)

    def _frame(self, table: pa.Table, keys: list[str], order: str) -> pd.DataFrame:
        frame: pd.DataFrame = table.to_pandas()
        if frame.empty:
            return frame
        frame = frame.sort_values([order, "src_partition", "src_offset"], kind="stable")
        return frame.drop_duplicates(keys, keep="last").reset_index(drop=True)

    def requests(
        self,
        service: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        wide: bool = True,
    ) -> pd.DataFrame:
        """Requests by ``event_time`` in the window, one row per request id.

        With ``wide``, ``x`` becomes ``input_0..input_{n-1}`` and ``features`` becomes
        ``f_<name>`` columns (NaN where a request lacks one), in place of both.
        """
        frame = self._frame(
            self._table(service, "requests", start, end), ["request_id"], "event_time"
        )
        return _widen(frame) if wide else frame

    def scores(
        self, service: str, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Scores by ``scored_at``, one row per (request id, model, version)."""
        table = self._table(service, "scores", start, end)
        return self._frame(table, ["request_id", "model", "version"], "scored_at")

    def results(
        self, service: str, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Results by ``decided_at``, one row per request id."""
        return self._frame(
            self._table(service, "results", start, end), ["request_id"], "decided_at"
        )

    def labels(
        self, service: str, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Labels by ``labelled_at``; per labelled thing, the latest ``labelled_at`` wins."""
        frame: pd.DataFrame = self._table(service, "labels", start, end).to_pandas()
        if frame.empty:
            return frame
        frame["_key"] = frame["request_id"].where(
            frame["request_id"].notna(),
            "\x00" + frame["entity"].astype(str) + "@" + frame["event_time"].astype(str),
        )
        frame = frame.sort_values(["labelled_at", "src_partition", "src_offset"], kind="stable")
        frame = frame.drop_duplicates("_key", keep="last").drop(columns="_key")
        return frame.reset_index(drop=True)

    def events(
        self, service: str, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Events by record timestamp, one row per source offset."""
        table = self._table(service, "events", start, end)
        return self._frame(table, ["src_partition", "src_offset"], "timestamp")

    def summary(self, service: str) -> pd.DataFrame:
        """Rows and files per kind and date (before deduplication): ``archive ls``."""
        rows: list[dict[str, object]] = []
        for kind in KINDS:
            directory = kind_dir(self.root, service, kind)
            for day_dir in sorted(directory.glob("date=*")):
                files = sorted(day_dir.glob("part-*.parquet"))
                count = sum(ds.dataset(f, format="parquet").count_rows() for f in files)
                rows.append(
                    {"kind": kind, "date": day_dir.name[5:], "files": len(files), "rows": count}
                )
        return pd.DataFrame(rows, columns=["kind", "date", "files", "rows"])

    def joined(
        self,
        service: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        models: Iterable[ModelRef] | None = None,
        horizon: timedelta | None = None,
        labelled_only: bool = False,
    ) -> pd.DataFrame:
        """Requests of the window ⨝ labels ⨝ per-model scores (wide), one row per request.

        Columns: the wide request columns; ``label``, ``label_text``, ``labelled_at``; and
        for each model version (``models``, default every one seen) ``score_column(ref,
        f)`` for f in :data:`SCORE_FIELDS`. Scores and labels are looked for from the
        window's start to ``end + horizon`` (default: no upper bound), since both come
        after their request.

        **Scores without a request.** A request id that has scores (of ``models``, when
        given) with ``scored_at`` in the window but no archived request at all -- the
        embedded scorer and the Spark and Bytewax adapters write scores only -- gets a
        row too, after the request rows: ``request_id``, the label columns and the score
        columns are filled, every request column is null (``event_time`` is ``NaT``, the
        inputs NaN), so it is compared and monitored but never trained on. A label with
        neither a request nor a score makes no row: there is nothing to judge it against.
        """
        reqs = self.requests(service, start, end)
        upper = None if end is None or horizon is None else end + horizon
        wanted = None if models is None else {(m.name, m.version) for m in models}
        ids = pa.array(reqs["request_id"].tolist() if not reqs.empty else [], pa.string())
        scores = self._frame(
            self._table(service, "scores", start, upper, ds.field("request_id").isin(ids)),
            ["request_id", "model", "version"],
            "scored_at",
        )
        orphans = self._scores_without_request(service, start, end, ids, wanted)
        if not orphans.empty:
            reqs = _append_ids(reqs, orphans["request_id"].unique().tolist())
            scores = pd.concat([scores, orphans], ignore_index=True) if len(scores) else orphans
        no_time = pd.Series(pd.NaT, index=reqs.index, dtype="datetime64[ms, UTC]")
        frame = reqs.assign(label=float("nan"), label_text=None, labelled_at=no_time)
        if reqs.empty:
            return frame
        labels = self.labels(service, start, upper)
        if not labels.empty:
            frame = _attach_labels(
                frame.drop(columns=["label", "label_text", "labelled_at"]), labels
            )
        refs = sorted(
            {(m, int(v)) for m, v in zip(scores["model"], scores["version"], strict=True)}
        )
        for name, version in refs if wanted is None else sorted(wanted):
            ref = ModelRef(name, version)
            mine = scores[(scores["model"] == name) & (scores["version"] == version)]
            part = mine.set_index("request_id")[list(SCORE_FIELDS)]
            part.columns = [score_column(ref, f) for f in SCORE_FIELDS]
            frame = frame.join(part, on="request_id")
        if labelled_only:
            frame = frame[frame["label_text"].notna()]
        return frame.reset_index(drop=True)

    def _scores_without_request(
        self,
        service: str,
        start: datetime | None,
        end: datetime | None,
        known: pa.Array,
        wanted: set[tuple[str, int]] | None,
    ) -> pd.DataFrame:
        """Deduplicated scores of ``[start, end)`` by ``scored_at`` whose request id is
        neither in ``known`` (the window's requests) nor anywhere in the requests archive."""
        condition = ~ds.field("request_id").isin(known)
        if wanted is not None:
            by_model = [
                (ds.field("model") == name) & (ds.field("version") == version)
                for name, version in sorted(wanted)
            ]
            if not by_model:
                return pd.DataFrame()
            either = by_model[0]
            for other in by_model[1:]:
                either = either | other
            condition = condition & either
        scores = self._frame(
            self._table(service, "scores", start, end, condition),
            ["request_id", "model", "version"],
            "scored_at",
        )
        if scores.empty:
            return scores
        # A request of another window (scored across the window's edge) is not an orphan:
        # look its id up in the whole requests archive, reading that one column only.
        candidates = pa.array(scores["request_id"].unique().tolist(), pa.string())
        requests = self._dataset(service, "requests")
        if requests is not None:
            found = requests.to_table(
                columns=["request_id"], filter=ds.field("request_id").isin(candidates)
            )
            seen = set(found.column("request_id").to_pylist())
            scores = scores[~scores["request_id"].isin(seen)]
        return scores.reset_index(drop=True)


def _append_ids(reqs: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """``reqs`` with one more row per id in ``ids``: that id, every other column null."""
    # reindex, not concat: it keeps each column's dtype (NaT in event_time) and does not
    # warn about concatenating all-null columns.
    reqs = reqs.reset_index(drop=True)
    for column in reqs.select_dtypes("integer").columns:  # nullable, so they stay integers
        nullable = pd.api.types.pandas_dtype(str(reqs[column].dtype).capitalize())
        reqs[column] = reqs[column].astype(nullable)
    out = reqs.reindex(range(len(reqs) + len(ids)))
    out.loc[len(reqs) :, "request_id"] = ids
    return out


def _attach_labels(frame: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Add label columns: by request id first, else by (entity, event_time)."""
    cols = ["label", "label_text", "labelled_at"]
    by_id = labels[labels["request_id"].notna()].set_index("request_id")[cols]
    out = frame.join(by_id, on="request_id")
    by_entity = labels[labels["request_id"].isna()]
    if not by_entity.empty:
        keyed = by_entity.set_index(["entity", "event_time"])[cols]
        other = frame.join(keyed, on=["entity", "event_time"])
        missing = out["label_text"].isna()
        for col in cols:
            out.loc[missing, col] = other.loc[missing, col]
    return out


def _widen(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace ``x`` by ``input_i`` columns and ``features`` by ``f_<name>`` columns."""
    if frame.empty:
        return frame.drop(columns=["x", "features"], errors="ignore")
    xs = [list(v) if v is not None else [] for v in frame["x"]]
    width = max((len(v) for v in xs), default=0)
    inputs = pd.DataFrame(
        [v + [float("nan")] * (width - len(v)) for v in xs],
        columns=[f"input_{i}" for i in range(width)],
        index=frame.index,
        dtype="float64",
    )
    feats = pd.DataFrame(
        [dict(v) if v is not None else {} for v in frame["features"]], index=frame.index
    )
    feats = feats.reindex(sorted(feats.columns), axis=1).astype("float64")
    feats.columns = [f"f_{name}" for name in feats.columns]
    return pd.concat([frame.drop(columns=["x", "features"]), inputs, feats], axis=1)
