"""The reader: windows, label corrections, labels by entity and event time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader, score_column
from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord
from modelstream.models.refs import ModelRef
from modelstream.training.frame import build_frame
from modelstream.wire.labels import Label
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor

from .helpers import DAY, T0, produce, traffic


def archive(tmp_path: Path, extra_labels: list[Label]) -> ArchiveReader:
    bp = MemoryBackplane()
    produce(bp, "svc", traffic("svc", 20, step_ms=DAY // 4))
    bp.produce("svc.labels", [OutRecord(lb.encode(), lb.key) for lb in extra_labels])
    archiver = Archiver(bp, "svc", tmp_path, flush_rows=7, flush_seconds=60)
    while archiver.step(timeout=0.05):
        pass
    archiver.close()
    return ArchiveReader(tmp_path)


def test_windows_are_half_open_on_event_time(tmp_path: Path) -> None:
    reader = archive(tmp_path, [])
    start = datetime(2026, 1, 2, tzinfo=UTC)
    end = datetime(2026, 1, 3)  # naive is UTC
    reqs = reader.requests("svc", start, end)
    assert len(reqs) == 4
    assert reqs["event_time"].min() == start and reqs["event_time"].max() < end.replace(tzinfo=UTC)
    joined = reader.joined("svc", start, end)
    assert len(joined) == 4 and joined["label_text"].notna().all()
    assert reader.services() == ["svc"]
    summary = reader.summary("svc")
    assert summary[summary["kind"] == "requests"]["rows"].sum() == 20


def test_latest_label_wins_and_entity_labels_join_by_event_time(tmp_path: Path) -> None:
    reader = archive(
        tmp_path,
        [
            Label("svc", 7, T0 + 10 * DAY, request_id="svc-0-0"),  # a correction
            Label("svc", 5, T0 + 10 * DAY, request_id="svc-0-0-unknown"),
            Label("svc", 9, T0 + 10 * DAY, entity="e1", event_time=T0 + 1 * DAY // 4),
        ],
    )
    labels = reader.labels("svc")
    assert len(labels) == 22
    joined = reader.joined("svc").set_index("request_id")
    assert joined.loc["svc-0-0", "label"] == 7
    # svc-0-1 has a label by id already: by id comes first.
    assert joined.loc["svc-0-1", "label"] in (0, 1)
    assert len(joined) == 20


def test_entity_label_fills_an_unlabelled_request(tmp_path: Path) -> None:
    bp = MemoryBackplane()
    t = traffic("svc", 3)
    produce(bp, "svc", traffic("svc", 0))
    bp.produce("svc.requests", [OutRecord(r.encode(), r.key) for r in t.requests])
    lb = Label("svc", "broken", T0 + DAY, entity="e2", event_time=t.requests[2].event_time)
    bp.produce("svc.labels", [OutRecord(lb.encode(), lb.key)])
    archiver = Archiver(bp, "svc", tmp_path, flush_rows=100, flush_seconds=60)
    while archiver.step(timeout=0.05):
        pass
    archiver.close()
    joined = ArchiveReader(tmp_path).joined("svc").set_index("request_id")
    assert joined["label_text"].isna().tolist() == [True, True, False]
    assert joined.loc["svc-0-2", "label_text"] == "broken"
    assert joined["label"].isna().all()  # a string class has no number


def test_scores_without_a_request_get_rows_of_their_own(tmp_path: Path) -> None:
    bp = MemoryBackplane()
    produce(bp, "svc", traffic("svc", 20, step_ms=DAY // 4))
    out = (Tensor("label", "INT64", (1,), (1,)),)
    start = T0 + DAY  # the window is the second day
    extra = [
        Score("emb-1", "emb", 1, out, None, 0.3, start + 2_000),  # an embedded scorer's
        Score("emb-2", "emb", 1, out, None, 0.3, start + 2 * DAY),  # after the window
        Score("svc-0-3", "late", 1, out, None, 0.3, start + 1_000),  # request: day one
    ]
    bp.produce("svc.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in extra])
    label = Label("svc", 1, start + 3_000, request_id="emb-1")
    bp.produce("svc.labels", [OutRecord(label.encode(), label.key)])
    archiver = Archiver(bp, "svc", tmp_path, flush_rows=100, flush_seconds=60)
    while archiver.step(timeout=0.05):
        pass
    archiver.close()
    reader = ArchiveReader(tmp_path)
    end = datetime.fromtimestamp((start + DAY) / 1000, UTC)

    joined = reader.joined("svc", datetime.fromtimestamp(start / 1000, UTC), end)
    assert len(joined) == 5  # four requests of the day, and emb-1
    row = joined.set_index("request_id").loc["emb-1"]
    assert row["label"] == 1 and row[score_column(ModelRef("emb", 1), "prediction")] == 1
    assert pd.isna(row["event_time"]) and pd.isna(row["input_0"])
    assert joined.iloc[:4]["event_time"].notna().all()  # request rows first, as before
    assert "svc-0-3" not in set(joined["request_id"])  # scored in the window, but day one's
    assert build_frame(joined).rows == 4  # no inputs: compared, never trained on

    only_gbm = reader.joined("svc", models=[ModelRef("gbm", 1)])
    assert "emb-1" not in set(only_gbm["request_id"]) and len(only_gbm) == 20
    assert set(reader.joined("svc")["request_id"]) >= {"emb-1", "emb-2"}


def test_an_empty_archive_reads_as_empty_frames(tmp_path: Path) -> None:
    reader = ArchiveReader(tmp_path / "nothing")
    assert reader.services() == []
    assert reader.requests("svc").empty and reader.joined("svc").empty
    assert reader.summary("svc").empty
