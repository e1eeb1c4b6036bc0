"""Backplane speed per engine: throughput both ways, produce->consume latency (1 and 2 procs).

Run: ``.venv/bin/python benchmarks/backplane.py``. Starts its own tansu broker for the
Kafka engine (and measures raw confluent-kafka on the same broker for comparison), prints
a Rich table and writes ``benchmarks/results/backplane.json``. Bounded: a few hundred
thousand records in all, well under three minutes on two cores.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.settings import Settings
from modelstream.testing.broker import TansuBroker

RECORDS = 200_000
BATCH = 1_000
VALUE = b"x" * 200
LATENCY_SAMPLES = 300
RESULTS = Path(__file__).parent / "results" / "backplane.json"


def settings(url: str) -> Settings:
    return Settings(backplane=url, default_partitions=4, session_timeout_ms=3000)


def produce_rate(bp: Backplane, topic: str) -> float:
    records = [OutRecord(VALUE) for _ in range(BATCH)]
    started = time.perf_counter()
    for _ in range(RECORDS // BATCH):
        bp.produce(topic, records)
    return RECORDS / (time.perf_counter() - started)


def consume_rate(bp: Backplane, topic: str) -> float:
    consumer = bp.consumer([topic])
    seen = 0
    started = time.perf_counter()
    deadline = time.monotonic() + 60
    while seen < RECORDS and time.monotonic() < deadline:
        seen += len(consumer.poll(5_000, 1.0))
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


def latency_in_process(bp: Backplane, topic: str) -> dict[str, float]:
    consumer = bp.consumer([topic], start="latest")
    consumer.poll(10, 0.5)
    samples: list[float] = []
    for _ in range(LATENCY_SAMPLES):
        sent = time.perf_counter()
        bp.produce(topic, [OutRecord(VALUE)])
        deadline = time.monotonic() + 5
        while not consumer.poll(10, 0.05) and time.monotonic() < deadline:
            pass
        samples.append((time.perf_counter() - sent) * 1000)
    consumer.close()
    return percentiles(samples)


def child(url: str, topic: str, ready: str) -> None:
    """Second process: consume ``topic`` from its end; print one latency (ms) a record."""
    bp = open_backplane(url, settings(url))
    consumer = bp.consumer([topic], start="latest")
    consumer.poll(10, 0.5)
    Path(ready).touch()
    got, deadline = 0, time.monotonic() + 60
    while got < LATENCY_SAMPLES and time.monotonic() < deadline:
        for record in consumer.poll(100, 0.1):
            print((time.time_ns() - int(record.value)) / 1e6, flush=True)
            got += 1
    consumer.close()
    bp.close()


def latency_cross_process(bp: Backplane, url: str, topic: str) -> dict[str, float]:
    ready = Path(tempfile.mkdtemp()) / "ready"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", url, topic, str(ready)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(LATENCY_SAMPLES):
            bp.produce(topic, [OutRecord(str(time.time_ns()).encode())])
            time.sleep(0.005)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return percentiles([float(line) for line in out.split()])


def raw_kafka(bootstrap: str) -> dict[str, float]:
    """Plain confluent-kafka on the same broker, configured as the engine is."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = f"raw-{uuid.uuid4().hex[:8]}"
    bp = open_backplane(f"kafka://{bootstrap}", settings(f"kafka://{bootstrap}"))
    bp.create_topic(topic, 4)
    bp.close()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "batch.num.messages": 10_000,
        }
    )
    started = time.perf_counter()
    for _ in range(RECORDS // BATCH):
        for _ in range(BATCH):
            producer.produce(topic, VALUE)
        producer.flush(30)
    produce = RECORDS / (time.perf_counter() - started)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "raw", "fetch.wait.max.ms": 20}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    seen, started = 0, time.perf_counter()
    deadline = time.monotonic() + 60
    while seen < RECORDS and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(5_000, 1.0) if m.error() is None)
    count_only = seen / (time.perf_counter() - started)
    # The fair baseline reads what every consumer reads: each message's fields.
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    seen, started = 0, time.perf_counter()
    deadline = time.monotonic() + 60
    while seen < RECORDS and time.monotonic() < deadline:
        fields = [
            (m.topic(), m.partition(), m.offset(), m.timestamp(), m.key(), m.value(), m.headers())
            for m in consumer.consume(5_000, 1.0)
            if m.error() is None
        ]
        seen += len(fields)
    consume = seen / (time.perf_counter() - started)
    consumer.close()
    return {
        "produce_per_s": round(produce),
        "consume_per_s": round(consume),
        "consume_count_only_per_s": round(count_only),
    }


def measure(name: str, url: str) -> dict[str, Any]:
    bp = open_backplane(url, settings(url))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        bp.create_topic(topic, 4)
        row: dict[str, Any] = {
            "engine": name,
            "produce_per_s": round(produce_rate(bp, topic)),
            "consume_per_s": round(consume_rate(bp, topic)),
            "latency_1proc": latency_in_process(bp, f"{topic}-lat"),
        }
        if name != "memory":  # memory:// lives in one process by design
            row["latency_2proc"] = latency_cross_process(bp, url, f"{topic}-x")
        return row
    finally:
        bp.close()


def main() -> None:
    console = Console()
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="modelstream-bench-"))
    engines: list[tuple[str, Callable[[], str]]] = [
        ("memory", lambda: "memory://"),
        ("sqlite", lambda: f"sqlite://{workdir / 'sqlite'}"),
    ]
    for name, url in engines:
        console.print(f"measuring {name} ...")
        rows.append(measure(name, url()))
    with TansuBroker.start() as broker:
        console.print("measuring kafka (tansu) ...")
        rows.append(measure("kafka", broker.url))
        raw = raw_kafka(broker.bootstrap)
        rows.append({"engine": "raw confluent-kafka", **raw})
        rows.append(
            {
                "engine": "raw, count only",
                "produce_per_s": raw["produce_per_s"],
                "consume_per_s": raw["consume_count_only_per_s"],
            }
        )

    table = Table(title=f"backplane: {RECORDS} records of {len(VALUE)} B, batches of {BATCH}")
    for column in ("engine", "produce/s", "consume/s", "1-proc p50/p99 ms", "2-proc p50/p99 ms"):
        table.add_column(column, justify="right")
    for row in rows:

        def lat(key: str, row: dict[str, Any] = row) -> str:
            value = row.get(key)
            return f"{value['p50_ms']:.2f} / {value['p99_ms']:.2f}" if value else "-"

        table.add_row(
            row["engine"],
            f"{row['produce_per_s']:,}",
            f"{row['consume_per_s']:,}",
            lat("latency_1proc"),
            lat("latency_2proc"),
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"records": RECORDS, "value_bytes": len(VALUE), "batch": BATCH, "cpus": os.cpu_count()}
    RESULTS.write_text(json.dumps({"config": meta, "results": rows}, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
