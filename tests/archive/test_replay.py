"""Replay re-sends exactly the archived requests of the window, with fresh ids and deadlines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader
from modelstream.archive.replay import REPLAY_HEADER, replay, replay_request_id
from modelstream.backplane.factory import open_backplane
from modelstream.errors import ConfigurationError
from modelstream.settings import Settings
from modelstream.wire.requests import decode_request

from .helpers import DAY, produce, traffic


@pytest.mark.integration
def test_replay_sends_the_window_onto_another_service(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    bp = open_backplane(url, Settings(backplane=url))
    try:
        t = traffic("svc", 24, step_ms=DAY // 8)  # three days
        produce(bp, "svc", t)
        produce(bp, "svc", t)  # delivered twice: replay must still send each once
        archiver = Archiver(bp, "svc", tmp_path / "a", flush_rows=1000, flush_seconds=60)
        while archiver.step(timeout=0.2):
            pass
        archiver.close()
        start, end = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
        sleeps: list[float] = []
        report = replay(
            bp,
            ArchiveReader(tmp_path / "a"),
            "svc",
            start,
            end,
            to_service="svc2",
            rate=4,
            now=lambda: 5_000_000_000_000,
            sleep=sleeps.append,
            clock=lambda: 0.0,
        )
        assert report.sent == 8 and report.to_service == "svc2"
        assert sleeps == [1.0, 2.0]  # 4 per second: two batches of 4

        consumer = bp.consumer(["svc2.requests"])
        try:
            records = []
            while len(records) < 8:
                got = consumer.poll(timeout=2.0)
                assert got, "replayed requests did not arrive"
                records.extend(got)
        finally:
            consumer.close()
        window = [
            r
            for r in t.requests
            if start.timestamp() * 1000 <= r.event_time < end.timestamp() * 1000
        ]
        originals = {r.id: r for r in window}
        assert len(records) == 8
        for record in records:
            sent = decode_request(record.value)
            old = originals[(record.header(REPLAY_HEADER) or b"").decode()]
            assert sent.id == replay_request_id(old.id, "svc2") != old.id
            assert record.key == sent.id.encode() and record.timestamp == old.event_time
            assert sent.service == "svc2" and sent.reply_to is None
            assert (sent.entity, sent.event_time, sent.features) == (
                old.entity,
                old.event_time,
                old.features,
            )
            assert sent.inputs == old.inputs
            assert sent.sent_at == 5_000_000_000_000
            assert sent.deadline == 5_000_000_000_000 + (old.deadline - (old.sent_at or 0))
    finally:
        bp.close()


def test_replay_ids_are_deterministic_and_rate_must_be_positive(tmp_path: Path) -> None:
    assert replay_request_id("r1", "b") == replay_request_id("r1", "b")
    assert replay_request_id("r1", "b") != replay_request_id("r1", "c")
    bp = open_backplane("memory://")
    with pytest.raises(ConfigurationError, match="--rate"):
        replay(bp, ArchiveReader(tmp_path), "svc", None, None, rate=0)
    assert replay(bp, ArchiveReader(tmp_path), "svc", None, None).sent == 0
