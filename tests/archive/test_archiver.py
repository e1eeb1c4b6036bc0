"""The archiver on the SQLite backplane: layout, readers, dead letters, crashes."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader, score_column
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.errors import BackplaneUnavailable, ConfigurationError
from modelstream.settings import Settings

from .helpers import DAY, T0, produce, traffic

pytestmark = pytest.mark.integration

PART = re.compile(r"service=svc/kind=\w+/date=\d{4}-\d\d-\d\d/part-\d+-[0-9a-f]{32}\.parquet$")


@pytest.fixture
def backplane(tmp_path: Path) -> Iterator[Backplane]:
    url = f"sqlite://{tmp_path / 'bp'}"
    bp = open_backplane(url, Settings(backplane=url, session_timeout_ms=2000))
    yield bp
    bp.close()


def drain(archiver: Archiver, records: int, timeout: float = 20.0) -> None:
    """Step until ``records`` records in all were consumed (bounded)."""
    deadline = time.monotonic() + timeout
    while archiver.stats().records < records:
        assert time.monotonic() < deadline, f"consumed {archiver.stats()} of {records}"
        archiver.step(timeout=0.2)


def test_end_to_end_layout_readers_and_dead_letters(backplane: Backplane, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    backplane.create_topic("svc.events", 2)
    t = traffic("svc", 30, step_ms=DAY // 10)  # three days of traffic
    produce(backplane, "svc", t)
    backplane.produce("svc.events", [OutRecord(b'{"temp": 71}', b"pump-1", (), T0)])
    backplane.produce("svc.scores", [OutRecord(b"not json", b"x")])
    archiver = Archiver(backplane, "svc", root, flush_rows=40, flush_seconds=60)
    drain(archiver, 30 * 5 + 2)
    archiver.close()
    stats = archiver.stats()
    assert stats.dead_lettered == 1 and stats.rows_written == 30 * 5 + 1

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files and all(PART.search(f) for f in files), files
    dates = {f.split("/")[2] for f in files if "kind=requests" in f}
    assert dates == {"date=2026-01-01", "date=2026-01-02", "date=2026-01-03"}

    # pandas and pyarrow read the directories as they are, with the date partition.
    frame = pd.read_parquet(root / "service=svc" / "kind=requests")
    assert len(frame) == 30 and set(frame["request_id"]) == {r.id for r in t.requests}
    dataset = ds.dataset(root / "service=svc" / "kind=scores", partitioning="hive")
    assert dataset.count_rows() == 60
    assert {"request_id", "model", "prediction", "probabilities", "date"} <= set(
        dataset.schema.names
    )
    events = pd.read_parquet(root / "service=svc" / "kind=events")
    assert events["value"].tolist() == ['{"temp": 71}']

    reader = ArchiveReader(root)
    reqs = reader.requests("svc")
    assert {"input_0", "input_1", "input_2", "f_mean"} <= set(reqs.columns)
    assert reqs.set_index("request_id")["input_0"].to_dict() == {
        r.id: r.inputs[0].data[0] for r in t.requests
    }
    joined = reader.joined("svc")
    assert len(joined) == 30
    truth = {lb.request_id: lb.value for lb in t.labels}
    assert joined.set_index("request_id")["label"].to_dict() == truth
    preds = {s.request_id: s.outputs[0].data[0] for s in t.scores if s.model == "gbm"}  # type: ignore[index]
    assert joined.set_index("request_id")[score_column("gbm@1", "prediction")].to_dict() == preds
    assert len(reader.results("svc")) == 30

    consumer = backplane.consumer(["svc.dead-letter"])
    try:
        dead = consumer.poll(timeout=2.0)
    finally:
        consumer.close()
    assert len(dead) == 1 and dead[0].value == b"not json"
    assert b"not valid JSON" in (dead[0].header("x-reason") or b"")
    assert dead[0].header("x-source-topic") == b"svc.scores"


def test_crashes_lose_nothing_acknowledged_and_readers_dedup(
    backplane: Backplane, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    first, second, third = (traffic("svc", 10, seed=s) for s in (1, 2, 3))
    produce(backplane, "svc", first)
    archiver = Archiver(backplane, "svc", root, flush_rows=10_000, flush_seconds=600)
    drain(archiver, 50)
    assert archiver.flush() == 50  # written and committed

    produce(backplane, "svc", second)
    drain(archiver, 100)
    archiver.write_pending()  # written, then the process dies before committing
    archiver.close(flush=False)

    produce(backplane, "svc", third)
    crashed = Archiver(backplane, "svc", root, flush_rows=10_000, flush_seconds=600)
    drain(crashed, 50 + 50)  # second again (uncommitted) and third
    crashed.close(flush=False)  # dies with everything buffered: nothing written

    restarted = Archiver(backplane, "svc", root, flush_rows=10_000, flush_seconds=600)
    drain(restarted, 100)
    restarted.close()

    raw = pd.read_parquet(root / "service=svc" / "kind=requests")
    assert len(raw) == 40  # the second batch twice: at-least-once
    reader = ArchiveReader(root)
    every = {r.id for t in (first, second, third) for r in t.requests}
    assert set(reader.requests("svc")["request_id"]) == every
    assert len(reader.requests("svc")) == 30
    assert len(reader.scores("svc")) == 60
    assert len(reader.labels("svc")) == 30
    joined = reader.joined("svc", labelled_only=True)
    assert len(joined) == 30 and joined["request_id"].is_unique
    assert not list(root.rglob(".*.tmp"))


class _Waits(threading.Event):
    """A stop event that records each wait instead of waiting, and is set after ``count``."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.count:
            self.set()
        return self.is_set()


def test_a_backplane_that_stays_down_is_retried_with_a_backoff_bounded_by_the_settings(
    backplane: Backplane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archiver = Archiver(backplane, "svc", tmp_path / "archive", retry_max_s=0.5)

    def down(timeout: float = 0.5) -> int:
        raise BackplaneUnavailable("the broker is down; check that it runs")

    monkeypatch.setattr(archiver, "step", down)
    stop = _Waits(5)
    archiver.run(stop)
    assert stop.waits == [0.2, 0.4, 0.5, 0.5, 0.5]


def test_an_archiver_without_a_backoff_bound_is_refused(
    backplane: Backplane, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="retry_max_s > 0"):
        Archiver(backplane, "svc", tmp_path / "archive", retry_max_s=0)
