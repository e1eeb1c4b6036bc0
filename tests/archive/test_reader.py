"""The reader: windows, label corrections, labels by entity and event time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord
from modelstream.wire.labels import Label

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


def test_an_empty_archive_reads_as_empty_frames(tmp_path: Path) -> None:
    reader = ArchiveReader(tmp_path / "nothing")
    assert reader.services() == []
    assert reader.requests("svc").empty and reader.joined("svc").empty
    assert reader.summary("svc").empty
