"""The rendezvous role alone: how many requests per second one process decides, and its CPU.

A :class:`~modelstream.rendezvous.server.Rendezvous` runs in this process on a fresh
SQLite backplane (the embedded default), for a service of three live models under the preference
policy (``gbm@1`` champion, ``logreg@1`` and ``tree@1`` challengers), as in
``benchmarks/serving.py``. A producer *process* plays the gateway and the scorer: it
writes requests in batches of 500, and after each batch the three lanes' scores of the
batch before it (500 records per model, as a scorer's lanes produce them), keeping at
most ``--window`` requests unanswered. This process only decides, so its CPU time per
request is the rendezvous's cost: read a request and three scores, decide, write the
answer to ``results`` and to the request's ``reply_to``, commit.

The process settles its heap once the role has started (:func:`modelstream.heap.settle`),
as ``modelstream serve`` and ``modelstream run`` do: without it, the collector's default
thresholds make full collections of the held mailboxes a third of the run.

This is the ceiling of the streaming figure of ``benchmarks/serving.py``, whose
rendezvous process is the busiest there, and of every layout: the role decides the
requests of its partitions on one core.

Prints a table and writes ``benchmarks/results/rendezvous.json``. Bounded: under a minute.

    .venv/bin/python benchmarks/rendezvous.py [--requests 30000] [--window 1500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modelstream import heap
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.models.codec import encode_deployment
from modelstream.models.deployment import Deployment, LiveModel, Role
from modelstream.models.refs import ModelRef
from modelstream.rendezvous.server import Rendezvous
from modelstream.settings import Settings
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor
from modelstream.wire.topics import ServiceTopics

SERVICE = "bench"
TOPICS = ServiceTopics(SERVICE)
REPLIES = TOPICS.replies("bench")
MODELS = (ModelRef("gbm", 1), ModelRef("logreg", 1), ModelRef("tree", 1))
BATCH = 500
RESULTS = Path(__file__).parent / "results" / "rendezvous.json"


def _producer(url: str, total: int, window: int, deadline_ms: int, answered: Any) -> None:
    """Requests, then the lanes' scores one batch behind, at most ``window`` unanswered."""
    bp = open_backplane(url, Settings(backplane=url))
    inputs = (Tensor("input", "FP32", (1, 20), tuple(float(i) for i in range(20))),)
    outputs = (
        Tensor("label", "INT64", (1,), (1,)),
        Tensor("probabilities", "FP32", (1, 2), (0.25, 0.75)),
    )
    previous: list[str] = []
    for start in range(0, total + BATCH, BATCH):
        while start - answered.value > window - BATCH:
            time.sleep(0.0005)
        now = now_ms()
        ids = [f"r{i}" for i in range(start, min(total, start + BATCH))]
        if ids:
            requests = [
                InferenceRequest(rid, SERVICE, now, now + deadline_ms, inputs, REPLIES, sent_at=now)
                for rid in ids
            ]
            bp.produce(TOPICS.requests, [OutRecord(r.encode(), r.key) for r in requests])
        for ref in MODELS:  # each lane writes its scores of a whole batch
            scores = [
                Score(rid, ref.name, ref.version, outputs, None, 0.1, now) for rid in previous
            ]
            if scores:
                bp.produce(
                    TOPICS.scores, [OutRecord(s.encode(), s.request_id.encode()) for s in scores]
                )
        previous = ids
    bp.close()


def run(total: int, window: int, deadline_ms: int) -> dict[str, Any]:
    url = f"sqlite://{tempfile.mkdtemp(prefix='ms-rendezvous-')}"
    settings = Settings(backplane=url, default_partitions=4)
    bp = open_backplane(url, settings)
    for topic in (TOPICS.requests, TOPICS.scores, TOPICS.results, REPLIES):
        bp.create_topic(topic, 4)
    bp.create_topic(TOPICS.deployment, 1, compacted=True)
    live = tuple(
        LiveModel(ref, Role.CHAMPION if i == 0 else Role.CHALLENGER) for i, ref in enumerate(MODELS)
    )
    deployment = Deployment(SERVICE, live, deadline_ms=deadline_ms)
    bp.produce(TOPICS.deployment, [OutRecord(encode_deployment(deployment), SERVICE.encode())])
    rendezvous = Rendezvous(bp, settings, SERVICE)
    rendezvous.start()
    if not rendezvous.wait_until_assigned(30):
        raise RuntimeError("the rendezvous owns no partition")
    heap.settle()  # the collector's settings of a started role, as `serve` and `run` set them
    ctx = mp.get_context("spawn")
    answered = ctx.Value("q", 0, lock=False)
    producer = ctx.Process(target=_producer, args=(url, total, window, deadline_ms, answered))
    cpu, started = time.process_time(), time.perf_counter()
    producer.start()
    done = 0
    give_up = started + 120
    while done < total and time.perf_counter() < give_up:
        time.sleep(0.001)
        stats = rendezvous.stats
        done = stats["answers"] + stats["fallbacks"] + stats["errors"]
        answered.value = done
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = dict(rendezvous.stats)
    producer.join(30)
    rendezvous.stop()
    bp.close()
    return {
        "engine": "sqlite",
        "requests": total,
        "answered": done,
        "by_model": stats.get("answers", 0),
        "fallbacks": stats.get("fallbacks", 0),
        "seconds": round(seconds, 2),
        "answered_rps": round(done / seconds, 1),
        "cpu_us_per_request": round(cpu / max(1, done) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--window", type=int, default=1_500, help="max unanswered")
    parser.add_argument("--deadline-ms", type=int, default=2_000)
    args = parser.parse_args()
    rows = [run(args.requests, args.window, args.deadline_ms)]
    table = Table(title="the rendezvous alone: 3 models, preference policy")
    for column in ("engine", "answered", "by a model", "req/s", "CPU us/request"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for r in rows:
        table.add_row(
            r["engine"],
            f"{r['answered']:,}",
            f"{r['by_model']:,}",
            f"{r['answered_rps']:,.0f}",
            f"{r['cpu_us_per_request']:.0f}",
        )
    Console().print(table)
    report = {
        "benchmark": "rendezvous",
        "at": int(time.time() * 1000),
        "machine": {"python": platform.python_version(), "cpus": mp.cpu_count()},
        "setup": vars(args),
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
