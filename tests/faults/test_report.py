"""The fault tests' figures: every xdist worker merges its own into one JSON file."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from tests.faults.conftest import Reliability

WORKERS, WRITES = 6, 15


def _worker(path: str, worker: int) -> None:
    for i in range(WRITES):
        report = Reliability()
        report.record(f"test_{worker}_{i}", {"lost": 0})
        report.write(Path(path))


def test_workers_writing_at_once_keep_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "reliability.json"
    Reliability().write(path)  # nothing recorded: nothing written
    assert not path.exists()
    context = mp.get_context("spawn")
    workers = [context.Process(target=_worker, args=(str(path), w)) for w in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * WORKERS
    tests = json.loads(path.read_text())["tests"]
    assert set(tests) == {f"test_{w}_{i}" for w in range(WORKERS) for i in range(WRITES)}
