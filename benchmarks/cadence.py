"""How often a scorer commits: after every batch, or on the commit cadence (the default).

A scorer drains a backlog of ``--records`` requests at a small batch size (1 by default:
what a steady trickle of load gives), for an ONNX GradientBoosting model of 100 trees on
20 features, on SQLite and on Kafka (a tansu broker on loopback), with
``commit_interval_ms`` 0 (a commit after every batch, as before the cadence) and 100
(the default; :mod:`modelstream.backplane.cadence`), in alternating rounds. Reports
records/s and the process's CPU per record.

Prints a table and writes ``benchmarks/results/cadence.json``. Bounded: about a minute.

    .venv/bin/python benchmarks/cadence.py [--records 3000] [--batch 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import now_ms
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.scoring.config import ScorerConfig
from modelstream.scoring.scorer import Scorer
from modelstream.settings import Settings
from modelstream.testing.broker import TansuBroker
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.topics import ServiceTopics
from scoring import out_records, requests

RESULTS = Path(__file__).parent / "results" / "cadence.json"
INTERVALS = (0, 100)


def drain(
    url: str,
    root: Path,
    service: str,
    model: bytes,
    x: np.ndarray,
    n: int,
    batch: int,
    interval: int,
) -> dict[str, float]:
    """One scorer, on a fresh service, scoring a backlog of ``n`` requests."""
    settings = Settings(
        backplane=url,
        model_store_dir=str(root / "store"),
        default_partitions=4,
        session_timeout_ms=2000,
        commit_interval_ms=interval,
    )
    bp = open_backplane(url, settings)
    try:
        registry = Registry(bp, settings)
        registry.publish(service, "gbm", model, format="onnx")
        registry.deploy(service, ModelRef("gbm", 1))
        topics = ServiceTopics(service)
        bp.create_topic(topics.requests)
        bp.produce(topics.requests, out_records(requests(x, n, service=service)))
        config = ScorerConfig(max_batch=batch, max_wait_ms=0.0)
        scorer = Scorer(bp, settings, service, "gbm", config=config).start()
        try:
            if not scorer.wait_ready(60):
                raise RuntimeError("the scorer did not load the model")
            started, cpu = time.perf_counter(), time.process_time()
            give_up = time.monotonic() + 120
            while scorer.scored < n and time.monotonic() < give_up:
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            done = scorer.scored
        finally:
            scorer.stop()
    finally:
        bp.close()
    return {"records_per_s": done / elapsed, "cpu_us_per_record": cpu * 1e6 / max(1, done)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    model, data = onnx_classifier("gbm", features=20, trees=100)
    root = Path(tempfile.mkdtemp(prefix="ms-cadence-"))
    runs: dict[str, dict[int, list[dict[str, float]]]] = {}
    with TansuBroker.start() as broker:
        engines = {"sqlite": f"sqlite://{root / 'bp'}", "kafka": broker.url}
        for engine, url in engines.items():
            runs[engine] = {i: [] for i in INTERVALS}
            for r in range(args.rounds):
                for interval in INTERVALS:
                    service = f"cadence{r}i{interval}"
                    got = drain(
                        url, root, service, model, data.x, args.records, args.batch, interval
                    )
                    runs[engine][interval].append(got)
                    console.print(
                        f"{engine} interval {interval} ms: {got['records_per_s']:,.0f} rec/s, "
                        f"{got['cpu_us_per_record']:.0f} us CPU/record"
                    )
    table = Table(title=f"scorer draining {args.records:,} requests at batch {args.batch}")
    for column in ("engine", "commits", "records/s", "CPU µs/record"):
        table.add_column(column, justify="right")
    summary: dict[str, Any] = {}
    for engine, by_interval in runs.items():
        summary[engine] = {}
        for interval, got in by_interval.items():
            rps = statistics.median(g["records_per_s"] for g in got)
            cpu = statistics.median(g["cpu_us_per_record"] for g in got)
            label = "every batch" if interval == 0 else f"every {interval} ms"
            summary[engine][label] = {"records_per_s": round(rps), "cpu_us_per_record": round(cpu)}
            table.add_row(engine, label, f"{rps:,.0f}", f"{cpu:.0f}")
    console.print(table)
    result = {
        "benchmark": "cadence",
        "at": now_ms(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "records": args.records,
        "batch": args.batch,
        "rounds": args.rounds,
        "median": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
