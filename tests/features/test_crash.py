"""kill -9 the featurizer mid-stream; restarted, it produces exactly the same features.

A real process on the SQLite backplane is killed with SIGKILL after it has enriched some
requests, then started again (with its SQLite state store, or without it so that it
rebuilds from the changelog). Every copy of every enriched request, from before and
after the crash, must equal the offline replay of the same log, and so must the late
records and the final window results; and the restarted process must have resumed at
its checkpoint's offsets (it applies fewer events than the log holds).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.features import offline
from modelstream.settings import Settings
from tests.features.helpers import enriched, event, read_all, request, truck_features

PROC = Path(__file__).with_name("featurizer_proc.py")
REQUESTS = 60


def _start(url: str, store: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(PROC), url, str(store)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _count(bp: Backplane, topic: str) -> int:
    return bp.describe_topic(topic).records


def _wait(predicate: Any, seconds: float = 40.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(row[k], float) and math.isnan(row[k]) else row[k]
        for k in truck_features().names
    }


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("keep_store", [True, False], ids=["same-store", "new-store"])
def test_kill_9_then_restart_reproduces_the_features(tmp_path: Path, keep_store: bool) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    bp = open_backplane(url, Settings(backplane=url, default_partitions=2))
    for topic in ("trucks.events", "trucks.requests", "trucks.late", "trucks.features"):
        bp.create_topic(topic, 2)
    records = []
    for i in range(REQUESTS * 10):
        entity = f"t{i % 5}"
        jitter = -15 if i % 17 == 0 else (-60 if i % 53 == 0 else 0)  # some late records
        records.append(event(entity, i * 9 + jitter, float(i % 11)))
        if i % 10 == 9:
            records.append(request(f"r{i}", entity, i * 9 + 4))
    bp.produce("trucks.events", records)

    first = _start(url, tmp_path / "state-1.db")
    try:
        _wait(lambda: _count(bp, "trucks.requests") >= 12)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        first.stdout.close()  # type: ignore[union-attr]
    assert _count(bp, "trucks.requests") < REQUESTS, "the crash came after the end"

    second = _start(url, tmp_path / ("state-1.db" if keep_store else "state-2.db"))
    try:
        _wait(lambda: len(enriched(bp, "trucks.requests")) == REQUESTS)
        _wait(lambda: bp.describe_topic("trucks.events").groups[0].total_lag == 0)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        report = orjson.loads(second.stdout.read())  # type: ignore[union-attr]
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
        second.stdout.close()  # type: ignore[union-attr]

    # It resumed from its checkpoint, not from the start of the log: it applied only the
    # events after the checkpoint offsets, yet every feature below comes out the same.
    assert sum(report["resumed_at"].values()) > 0
    assert 0 < report["events"] < REQUESTS * 10
    expected = offline.build(
        truck_features(ooo=20, lateness=10),
        offline.topic_entries(bp, "trucks.events"),
        flush=False,
    )
    got = enriched(bp, "trucks.requests")
    for row in expected.request_rows:
        copies = got[row["request_id"]]
        assert all(copy == _plain(row) for copy in copies), row["request_id"]
    late = {(r.partition, r.offset) for r in expected.late}
    seen_late = {
        (int(r.header("x-source-partition") or 0), int(r.header("x-source-offset") or 0))
        for r in read_all(bp, "trucks.late")
    }
    assert late and seen_late == late
    results = {}
    for record in read_all(bp, "trucks.features"):
        value = orjson.loads(record.value)
        results[(value["entity"], value["window"], value["start"], value["kind"])] = value["values"]
    for r in expected.results:
        key = (r.entity, r.window, r.start, r.kind)
        assert results[key] == {k: None if math.isnan(v) else v for k, v in r.values.items()}, key
    bp.close()
