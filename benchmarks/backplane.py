"""Backplane speed per engine: throughput both ways, produce->consume latency (1 and 2 procs).

Run: ``.venv/bin/python benchmarks/backplane.py``. Starts its own tansu broker for the
Kafka engine (and measures raw confluent-kafka on the same broker for comparison), prints
a Rich table and writes ``benchmarks/results/backplane.json``. Bounded: a few hundred
thousand records in all, well under three minutes on two cores.

The Kafka engine and raw confluent-kafka are measured in alternating rounds and the best
round of each is reported (all rounds are in the JSON): the machine is shared, and a
single round of either can land on a busy second. Raw confluent-kafka gets the engine's
own librdkafka settings (less its logging hooks), so the comparison is the cost of the
engine's Python layer, not of a tuning difference. Its consume loop reads each message's
topic, partition, offset, timestamp, key, value and headers, as building a Record must.
Raw keyed produce is measured twice: fire-and-forget (no delivery callback), and with a
delivery callback per record, the least a produce that returns offsets has to do.
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
KAFKA_ROUNDS = 3
RESULTS = Path(__file__).parent / "results" / "backplane.json"
RATIOS = ("produce_per_s", "produce_keyed_per_s", "consume_per_s")


def settings(url: str) -> Settings:
    return Settings(backplane=url, default_partitions=4, session_timeout_ms=3000)


def request_ids() -> list[bytes]:
    """Distinct keys, like request ids: no key repeats, so no cache helps."""
    return [uuid.uuid4().hex.encode() for _ in range(RECORDS)]


def produce_rate(bp: Backplane, topic: str) -> float:
    records = [OutRecord(VALUE) for _ in range(BATCH)]
    started = time.perf_counter()
    for _ in range(RECORDS // BATCH):
        bp.produce(topic, records)
    return RECORDS / (time.perf_counter() - started)


def produce_keyed_rate(bp: Backplane, topic: str) -> float:
    keys = request_ids()
    batches = [
        [OutRecord(VALUE, key=key) for key in keys[i : i + BATCH]] for i in range(0, RECORDS, BATCH)
    ]
    started = time.perf_counter()
    for batch in batches:
        bp.produce(topic, batch)
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


def raw_config(kind: str, bootstrap: str) -> dict[str, Any]:
    """The engine's librdkafka settings for ``kind`` (producer/consumer), minus Python hooks."""
    from modelstream.backplane.kafka import config

    s = settings(f"kafka://{bootstrap}")
    conf = (
        config.producer(bootstrap, s) if kind == "producer" else config.consumer(bootstrap, s, "")
    )
    return {k: v for k, v in conf.items() if k not in ("logger", "error_cb")}


def raw_round(bootstrap: str) -> dict[str, float]:
    """One round of plain confluent-kafka on the same broker, configured as the engine is."""
    from confluent_kafka import Consumer, Message, Producer, TopicPartition

    topic = f"raw-{uuid.uuid4().hex[:8]}"
    bp = open_backplane(f"kafka://{bootstrap}", settings(f"kafka://{bootstrap}"))
    bp.create_topic(topic, 4)
    bp.create_topic(f"{topic}-keyed", 4)
    bp.close()
    producer = Producer(raw_config("producer", bootstrap))
    started = time.perf_counter()
    for _ in range(RECORDS // BATCH):
        for _ in range(BATCH):
            producer.produce(topic, VALUE)
        producer.flush(30)
    produce = RECORDS / (time.perf_counter() - started)
    keys = request_ids()
    started = time.perf_counter()
    for i in range(0, RECORDS, BATCH):
        for key in keys[i : i + BATCH]:
            producer.produce(f"{topic}-keyed", VALUE, key)
        producer.flush(30)
    produce_keyed = RECORDS / (time.perf_counter() - started)
    # The least a produce that returns each record's offset must do: a delivery callback.
    reports: list[Message] = []
    started = time.perf_counter()
    for i in range(0, RECORDS, BATCH):
        for key in keys[i : i + BATCH]:
            producer.produce(
                f"{topic}-keyed", VALUE, key, on_delivery=lambda _, m: reports.append(m)
            )
        producer.flush(30)
    produce_reported = RECORDS / (time.perf_counter() - started)

    def consume(read_fields: bool) -> float:
        # A fresh consumer per pass: re-assigning one makes librdkafka refetch slowly.
        consumer = Consumer({**raw_config("consumer", bootstrap), "group.id": uuid.uuid4().hex})
        consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
        seen, started = 0, time.perf_counter()
        deadline = time.monotonic() + 60
        while seen < RECORDS and time.monotonic() < deadline:
            messages = consumer.consume(5_000, 1.0)
            if read_fields:
                fields = [
                    (
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.timestamp(),
                        m.key(),
                        m.value(),
                        m.headers(),
                    )
                    for m in messages
                    if m.error() is None
                ]
                seen += len(fields)
            else:
                seen += sum(1 for m in messages if m.error() is None)
        rate = seen / (time.perf_counter() - started)
        consumer.close()
        return rate

    return {
        "produce_per_s": produce,
        "produce_keyed_per_s": produce_keyed,
        "produce_keyed_reported_per_s": produce_reported,
        "consume_per_s": consume(read_fields=True),
        "consume_count_only_per_s": consume(read_fields=False),
    }


def engine_round(bp: Backplane) -> dict[str, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    bp.create_topic(topic, 4)
    bp.create_topic(f"{topic}-keyed", 4)
    return {
        "produce_per_s": produce_rate(bp, topic),
        "produce_keyed_per_s": produce_keyed_rate(bp, f"{topic}-keyed"),
        "consume_per_s": consume_rate(bp, topic),
    }


def best(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """The best of each figure over ``rounds``, and every round's figures."""
    keys = rounds[0].keys()
    return {
        **{k: round(max(r[k] for r in rounds)) for k in keys},
        "rounds": {k: [round(r[k]) for r in rounds] for k in keys},
    }


def measure_kafka(url: str, bootstrap: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Kafka engine and raw confluent-kafka, in alternating rounds (see the docstring)."""
    bp = open_backplane(url, settings(url))
    try:
        engine: list[dict[str, float]] = []
        raw: list[dict[str, float]] = []
        for _ in range(KAFKA_ROUNDS):
            engine.append(engine_round(bp))
            raw.append(raw_round(bootstrap))
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        row: dict[str, Any] = {
            "engine": "kafka",
            **best(engine),
            "latency_1proc": latency_in_process(bp, f"{topic}-lat"),
            "latency_2proc": latency_cross_process(bp, url, f"{topic}-x"),
        }
    finally:
        bp.close()
    return row, {"engine": "raw confluent-kafka", **best(raw)}


def measure(name: str, url: str) -> dict[str, Any]:
    bp = open_backplane(url, settings(url))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        bp.create_topic(topic, 4)
        bp.create_topic(f"{topic}-keyed", 4)
        row: dict[str, Any] = {
            "engine": name,
            "produce_per_s": round(produce_rate(bp, topic)),
            "produce_keyed_per_s": round(produce_keyed_rate(bp, f"{topic}-keyed")),
            "consume_per_s": round(consume_rate(bp, topic)),
            "latency_1proc": latency_in_process(bp, f"{topic}-lat"),
        }
        if name != "memory":  # memory:// lives in one process by design
            row["latency_2proc"] = latency_cross_process(bp, url, f"{topic}-x")
        return row
    finally:
        bp.close()


def main() -> None:
    console = Console(width=120)
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
        console.print(f"measuring kafka (tansu) and raw confluent-kafka, {KAFKA_ROUNDS} rounds ...")
        kafka, raw = measure_kafka(broker.url, broker.bootstrap)
        rows += [kafka, raw]
        rows.append(
            {
                "engine": "raw: consume count only, keyed + delivery cb",
                "produce_per_s": raw["produce_per_s"],
                "produce_keyed_per_s": raw["produce_keyed_reported_per_s"],
                "consume_per_s": raw["consume_count_only_per_s"],
            }
        )

    table = Table(title=f"backplane: {RECORDS} records of {len(VALUE)} B, batches of {BATCH}")
    columns = ("engine", "produce/s", "keyed produce/s", "consume/s")
    for column in (*columns, "1-proc p50/p99 ms", "2-proc p50/p99 ms"):
        table.add_column(column, justify="right")
    for row in rows:

        def lat(key: str, row: dict[str, Any] = row) -> str:
            value = row.get(key)
            return f"{value['p50_ms']:.2f} / {value['p99_ms']:.2f}" if value else "-"

        table.add_row(
            row["engine"],
            f"{row['produce_per_s']:,}",
            f"{row['produce_keyed_per_s']:,}",
            f"{row['consume_per_s']:,}",
            lat("latency_1proc"),
            lat("latency_2proc"),
        )
    console.print(table)
    ratios = {k: round(kafka[k] / raw[k], 3) for k in RATIOS}
    ratios["produce_keyed_vs_reported"] = round(
        kafka["produce_keyed_per_s"] / raw["produce_keyed_reported_per_s"], 3
    )
    console.print(
        "kafka engine / raw confluent-kafka: "
        + ", ".join(f"{k.removesuffix('_per_s')} {v:.0%}" for k, v in ratios.items())
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "records": RECORDS,
        "value_bytes": len(VALUE),
        "batch": BATCH,
        "cpus": os.cpu_count(),
        "kafka_rounds": KAFKA_ROUNDS,
    }
    report = {"config": meta, "results": rows, "kafka_vs_raw": ratios}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
