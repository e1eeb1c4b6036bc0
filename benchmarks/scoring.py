"""Benchmark of the scorer role (issue 3).

1. Records/s scored by one scorer for an ONNX GradientBoosting model of 100 trees on 20
   features, at batch sizes 1, 16 and 256:
   * ``in-process``: the scorer's own batch path (:func:`score_records`: decode, map
     inputs, batch, predict, split, encode scores) on records already in memory;
   * ``memory`` / ``sqlite``: a real :class:`Scorer` draining a backlog of requests
     through the backplane (poll, score, produce scores, commit).
2. Time from publish to the first score by the new version, over 20 swaps under load
   (p50/p99), and the errors and unscored requests during the swaps.

Targets: >= 20,000 records/s at batch 256; swap <= 50 ms p99; zero errors during swaps.
Prints a table and writes ``benchmarks/results/scoring.json``. Bounded: under 3 minutes.

    .venv/bin/python benchmarks/scoring.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record, now_ms
from modelstream.models.deployment import Deployment
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.scoring.config import ScorerConfig
from modelstream.scoring.loading import prepare, registry_source
from modelstream.scoring.process import score_records
from modelstream.scoring.runner import ModelRunner
from modelstream.scoring.scorer import Scorer
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import decode_score
from modelstream.wire.tensors import array_to_tensor
from modelstream.wire.topics import ServiceTopics

SERVICE = "bench"
RESULTS = Path(__file__).parent / "results" / "scoring.json"
BATCHES = (1, 16, 256)


def requests(
    x: np.ndarray, n: int, start: int = 0, service: str = SERVICE
) -> list[InferenceRequest]:
    now = now_ms()
    return [
        InferenceRequest(
            f"b{start + i}",
            service,
            now,
            now + 600_000,
            (array_to_tensor("input", x[(start + i) % len(x)].reshape(1, -1)),),
            sent_at=now,
        )
        for i in range(n)
    ]


def out_records(reqs: list[InferenceRequest]) -> list[OutRecord]:
    return [OutRecord(r.encode(), key=r.key) for r in reqs]


def open_engine(kind: str, root: Path) -> tuple[Backplane, Settings]:
    url = "memory://" if kind == "memory" else f"sqlite://{root / kind}"
    settings = Settings(backplane=url, model_store_dir=str(root / "store"), default_partitions=4)
    return open_backplane(url, settings), settings


def in_process(model_bytes: bytes, x: np.ndarray, batch: int, n: int, root: Path) -> float:
    bp, settings = open_engine("memory", root)
    registry = Registry(bp, settings)
    descriptor = registry.publish(SERVICE, "gbm", model_bytes, format="onnx")
    active, _ = prepare(
        descriptor,
        Deployment(SERVICE, ()),
        "champion",
        registry_source(settings),
        30.0,
    )
    records = [
        Record(f"{SERVICE}.requests", 0, i, 0, o.key, o.value)
        for i, o in enumerate(out_records(requests(x, n)))
    ]
    runner = ModelRunner(5.0)
    topics = ServiceTopics(SERVICE)
    try:
        started = time.perf_counter()
        for i in range(0, n, batch):
            outcome = score_records(records[i : i + batch], active, runner, topics)
            assert all(s.score.ok for s in outcome.scores)
        return n / (time.perf_counter() - started)
    finally:
        runner.close()
        active.model.close()


def through_backplane(
    kind: str, model_bytes: bytes, x: np.ndarray, batch: int, n: int, root: Path
) -> float:
    bp, settings = open_engine(kind, root / f"bp-{batch}")
    try:
        registry = Registry(bp, settings)
        registry.publish(SERVICE, "gbm", model_bytes, format="onnx")
        registry.deploy(SERVICE, ModelRef("gbm", 1))
        topics = ServiceTopics(SERVICE)
        bp.create_topic(topics.requests)
        for i in range(0, n, 2000):
            bp.produce(topics.requests, out_records(requests(x, min(2000, n - i), i)))
        config = ScorerConfig(max_batch=batch, max_wait_ms=0.0, timeout_ms=5000)
        scorer = Scorer(bp, settings, SERVICE, "gbm", config=config).start()
        try:
            assert scorer.wait_ready(60), "the scorer did not load the model"
            started = time.perf_counter()
            deadline = time.monotonic() + 120
            while scorer.scored < n and time.monotonic() < deadline:
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
            done = scorer.scored
        finally:
            scorer.stop()
        return done / elapsed
    finally:
        bp.close()


def read_all(bp: Backplane, topic: str) -> list[Record]:
    consumer = bp.consumer([topic], start="earliest")
    out: list[Record] = []
    try:
        while batch := consumer.poll(5000, 0.5):
            out.extend(batch)
    finally:
        consumer.close()
    return out


def swaps(kind: str, model_bytes: bytes, x: np.ndarray, count: int, root: Path) -> dict[str, Any]:
    bp, settings = open_engine(kind, root / "swaps")
    registry = Registry(bp, settings)
    topics = ServiceTopics(SERVICE)
    registry.publish(SERVICE, "gbm", model_bytes, format="onnx")
    registry.deploy(SERVICE, ModelRef("gbm", 1))
    bp.create_topic(topics.scores)
    watcher = bp.consumer([topics.scores], start="earliest")
    config = ScorerConfig(max_batch=256, max_wait_ms=1.0, timeout_ms=5000)
    scorer = Scorer(bp, settings, SERVICE, "gbm", config=config).start()
    stop, sent = threading.Event(), [0]

    def load() -> None:  # about 2,000 requests/s in small bursts
        while not stop.is_set():
            bp.produce(topics.requests, out_records(requests(x, 10, sent[0])))
            sent[0] += 10
            stop.wait(0.005)

    first_by_version: dict[int, int] = {}
    seen: set[str] = set()
    errors = 0

    def drain(timeout: float = 0.01) -> None:
        nonlocal errors
        for record in watcher.poll(5000, timeout):
            score = decode_score(record.value)
            seen.add(score.request_id)
            errors += 0 if score.ok else 1
            first_by_version.setdefault(score.version, score.scored_at)

    latencies: list[float] = []
    thread = threading.Thread(target=load, daemon=True)
    try:
        assert scorer.wait_ready(60)
        thread.start()
        time.sleep(0.5)
        for version in range(2, count + 2):
            published = now_ms()
            registry.publish(SERVICE, "gbm", model_bytes, format="onnx")
            registry.deploy(SERVICE, ModelRef("gbm", version))
            deadline = time.monotonic() + 20
            while version not in first_by_version and time.monotonic() < deadline:
                drain()
            if version in first_by_version:
                latencies.append(first_by_version[version] - published)
        stop.set()
        thread.join(10)
        deadline = time.monotonic() + 20
        while len(seen) < sent[0] and time.monotonic() < deadline:
            drain(0.05)
    finally:
        stop.set()
        thread.join(10)
        scorer.stop()
        watcher.close()
    try:
        # The truth, from the topics themselves rather than the live watcher.
        asked = {r.key for r in read_all(bp, topics.requests)}
        answered = {r.key for r in read_all(bp, topics.scores)}
    finally:
        bp.close()
    ordered = sorted(latencies)
    return {
        "swaps": len(latencies),
        "p50_ms": statistics.median(ordered) if ordered else None,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None,
        "max_ms": max(ordered) if ordered else None,
        "requests": sent[0],
        "errors": errors,
        "unscored": len(asked - answered),
        "unseen_by_live_reader": sent[0] - len(seen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer records and swaps")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    console = Console()
    console.print("training GradientBoosting (100 trees, 20 features) and converting to ONNX ...")
    model_bytes, data = onnx_classifier("gbm", features=20)
    x = data.x
    root = Path(tempfile.mkdtemp(prefix="ms-bench-"))
    sizes = {1: int(2000 * scale), 16: int(8000 * scale), 256: int(40000 * scale)}
    throughput: dict[str, dict[int, float]] = {"in-process": {}, "memory": {}, "sqlite": {}}
    try:
        for batch in BATCHES:
            n = sizes[batch]
            throughput["in-process"][batch] = in_process(model_bytes, x, batch, n, root / "ip")
            for kind in ("memory", "sqlite"):
                throughput[kind][batch] = through_backplane(
                    kind, model_bytes, x, batch, n, root / f"{kind}-tp"
                )
            console.print(
                f"batch {batch}: "
                + ", ".join(f"{k} {v[batch]:,.0f}/s" for k, v in throughput.items())
            )
        swap = {
            kind: swaps(kind, model_bytes, x, 20 if not args.quick else 5, root / f"{kind}-swap")
            for kind in ("memory", "sqlite")
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)

    table = Table(title="scorer: ONNX GBM, 100 trees, 20 features (records/s)")
    table.add_column("path")
    for batch in BATCHES:
        table.add_column(f"batch {batch}", justify="right")
    for path, row in throughput.items():
        table.add_row(path, *(f"{row[b]:,.0f}" for b in BATCHES))
    console.print(table)
    swaps_table = Table(title="swap: publish -> first score by the new version, under load")
    for column in (
        "engine",
        "swaps",
        "p50 ms",
        "p99 ms",
        "max ms",
        "requests",
        "errors",
        "unscored",
    ):
        swaps_table.add_column(column, justify="right")
    for kind, s in swap.items():
        swaps_table.add_row(
            kind,
            str(s["swaps"]),
            *(f"{s[k]:.0f}" if s[k] is not None else "-" for k in ("p50_ms", "p99_ms", "max_ms")),
            f"{s['requests']:,}",
            str(s["errors"]),
            str(s["unscored"]),
        )
    console.print(swaps_table)
    result = {
        "benchmark": "scoring",
        "at": now_ms(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "model": "onnx GradientBoostingClassifier, 100 trees, depth 3, 20 features",
        "records_per_s": {
            k: {str(b): round(v) for b, v in row.items()} for k, row in throughput.items()
        },
        "swap": swap,
        "targets": {"records_per_s_batch_256": 20000, "swap_p99_ms": 50, "swap_errors": 0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
