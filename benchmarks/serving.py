"""Benchmark of ``modelstream serve`` (issue 4, section "Speed").

Starts ``modelstream serve`` as a subprocess on a temporary SQLite backplane with three
live ONNX models of one service (a GradientBoosting champion of 100 trees on 20
features, a logistic-regression and a decision-tree challenger; preference policy,
deadline 50 ms), then drives it with load generators that are not our code:

* ``hey`` at a fixed rate: 50 req/s one at a time (the latency floor: nothing queues,
  so no request waits for a batch), then 300 and 1,000 req/s: latency p50/p99 and the
  answers;
* ``wrk`` with a Lua script for POST: peak req/s (2xx answers only);
* streaming: a producer *process* writes requests straight onto ``bench.requests``
  with a ``reply_to`` topic, keeping at most ``--stream-window`` unanswered (so the
  figure is the capacity, not a backlog collapsing into fallbacks), and a reader
  process counts the answers read there: answered req/s (by a model, and all).

Targets on 2 cores: p99 <= 10 ms at 1,000 req/s; streaming >= 20,000 req/s.
The machine may be shared: every figure is reported with the load average of the time.
All traffic stays on loopback. Installs ``hey`` and ``wrk`` with apt-get if missing.
With ``--layout processes`` it runs ``modelstream serve --processes`` instead: the same
roles as child processes of one supervising ``serve`` (gateway, rendezvous, scorers), how
an operator uses every core of one machine, since one process's roles share one
interpreter lock.

With ``--engine kafka`` every topic is on a tansu broker started on loopback (the suite's
Kafka-protocol broker) instead of the embedded SQLite backplane.

Prints a table and writes ``benchmarks/results/serving.json`` (``serving-processes.json``
for the processes layout; ``-kafka`` is added for Kafka). Bounded: under 4 minutes.

    .venv/bin/python benchmarks/serving.py [--quick] [--layout serve|processes]
        [--engine sqlite|kafka]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen import (
    HEY_RATES,
    ensure_tools,
    free_port,
    load,
    per_request,
    run_hey,
    run_wrk,
    terminate,
    tree_cpu_seconds,
    wait_http_ok,
)
from modelstream.testing.broker import TansuBroker

SERVICE = "bench"
FEATURES = 20
DEADLINE_MS = 50
LOW_RATE = (50, 1)  # req/s, hey workers: one request in flight at a time
RESULTS = Path(__file__).parent / "results" / "serving.json"
STREAM_REPLY_TOPIC = f"{SERVICE}.replies.stream-bench"


def prepare_backplane(
    url: str, challengers: tuple[str, ...] = ("logreg", "tree"), gbm: bytes | None = None
) -> list[list[float]]:
    """Publish and deploy gbm (champion; ``gbm``: its ONNX bytes, trained here if None)
    and ``challengers`` on the backplane at ``url``; return a few input rows."""
    from modelstream.backplane.factory import open_backplane
    from modelstream.models.deployment import Policy
    from modelstream.models.refs import ModelRef
    from modelstream.models.registry import Registry
    from modelstream.settings import Settings
    from modelstream.testing.sklearn import onnx_classifier

    settings = Settings(backplane=url)
    bp = open_backplane(url, settings)
    try:
        registry = Registry(bp, settings)
        data = None
        for kind in ("gbm", *challengers):
            model, data = onnx_classifier(kind, features=FEATURES, trees=100)  # type: ignore[arg-type]
            registry.publish(SERVICE, kind, gbm if kind == "gbm" and gbm else model, format="onnx")
        registry.deploy(
            SERVICE,
            ModelRef("gbm", 1),
            challengers=[ModelRef(kind, 1) for kind in challengers],
            policy=Policy(),
            deadline_ms=DEADLINE_MS,
        )
        assert data is not None
        return [[float(v) for v in row] for row in data.x[:64]]
    finally:
        bp.close()


class Server:
    """``modelstream serve`` in a subprocess."""

    def __init__(self, backplane: str, port: int, log: Path, *, processes: bool = False) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("wb")
        exe = Path(sys.executable).with_name("modelstream")
        # Issue 4's serve path is gateway + rendezvous + scorers; the monitor and the
        # archiver (issues 5/6), which `serve` also runs by default, are left out.
        usage = subprocess.run(
            [str(exe), "serve", "--help"], check=True, capture_output=True, text=True
        )
        self.options = [o for o in ("--no-monitor", "--no-archive") if o in usage.stdout]
        if processes:  # every role a child process: gateway, rendezvous, scorers
            self.options.append("--processes")
        command = [str(exe), "--backplane", backplane, "serve", "-s", SERVICE]
        self.proc = subprocess.Popen(
            [*command, "-p", str(port), *self.options],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_http_ok(f"{self.url}/v2/health/ready", self.proc, timeout)

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        terminate([self.proc])
        self._log.close()


# -- streaming: a producer process and a reader process ---------------------------------


def _stream_reader(
    url: str, ready: Any, answered: Any, out: Any, expect: int, limit_s: float
) -> None:
    from modelstream.backplane.factory import open_backplane
    from modelstream.settings import Settings
    from modelstream.wire.results import decode_result

    bp = open_backplane(url, Settings(backplane=url))
    consumer = bp.consumer([STREAM_REPLY_TOPIC], start="latest")
    for tp in consumer.assignment():
        consumer.position(tp)
    ready.set()
    seen = by_model = met = 0
    last = 0.0
    give_up = time.monotonic() + limit_s
    try:
        while seen < expect and time.monotonic() < give_up:
            for record in consumer.poll(5000, 0.2):
                result = decode_result(record.value)
                seen += 1
                by_model += result.model is not None
                met += result.deadline_met
                last = time.time()
            answered.value = seen
    finally:
        consumer.close()
        bp.close()
    out.put({"answers": seen, "by_model": by_model, "deadline_met": met, "last": last})


def _stream_producer(
    url: str,
    rows: list[list[float]],
    total: int,
    window: int,
    deadline_ms: int,
    answered: Any,
    start_at: Any,
    out: Any,
) -> None:
    """Produce ``total`` requests in batches of 500, keeping at most ``window`` unanswered."""
    from modelstream.backplane.factory import open_backplane
    from modelstream.backplane.records import OutRecord, now_ms
    from modelstream.settings import Settings
    from modelstream.wire.requests import InferenceRequest
    from modelstream.wire.tensors import Tensor

    bp = open_backplane(url, Settings(backplane=url))
    tensors = [Tensor("input", "FP32", (1, FEATURES), tuple(r)) for r in rows]
    batch, sent = 500, 0
    started = time.time()
    start_at.value = started
    try:
        while sent < total:
            while sent - answered.value > window - batch:
                time.sleep(0.001)
            now = now_ms()
            records = []
            for i in range(sent, min(total, sent + batch)):
                request = InferenceRequest(
                    id=f"s{i}",
                    service=SERVICE,
                    event_time=now,
                    deadline=now + deadline_ms,
                    inputs=(tensors[i % len(tensors)],),
                    reply_to=STREAM_REPLY_TOPIC,
                    sent_at=now,
                )
                records.append(OutRecord(request.encode(), request.key, timestamp=now))
            bp.produce(f"{SERVICE}.requests", records)
            sent += len(records)
    finally:
        bp.close()
    out.put({"sent": sent, "started": started})


def run_stream(
    url: str, rows: list[list[float]], total: int, window: int, deadline_ms: int, limit_s: float
) -> dict[str, Any]:
    """Stream ``total`` requests with at most ``window`` in flight; answered req/s."""
    ctx = mp.get_context("spawn")
    ready, done, made = ctx.Event(), ctx.Queue(), ctx.Queue()
    answered = ctx.Value("q", 0, lock=False)
    start_at = ctx.Value("d", 0.0, lock=False)
    before = load()
    reader = ctx.Process(
        target=_stream_reader,
        args=(url, ready, answered, done, total, limit_s),
        daemon=True,
    )
    reader.start()
    if not ready.wait(30):
        raise RuntimeError("the stream reader did not start")
    producer = ctx.Process(
        target=_stream_producer,
        args=(url, rows, total, window, deadline_ms, answered, start_at, made),
        daemon=True,
    )
    producer.start()
    answers = done.get(timeout=limit_s + 30)
    producer.kill()  # it may still wait for answers that will not come in time
    producer.join(10)
    reader.join(10)
    produced = made.get(timeout=5) if not made.empty() else {"sent": None}
    span = max(1e-3, answers["last"] - start_at.value) if answers["answers"] else 1.0
    return {
        "window": window,
        "deadline_ms": deadline_ms,
        "requests": total,
        "sent": produced["sent"],  # None: stopped at the time limit
        "answers": answers["answers"],
        "by_model": answers["by_model"],
        "deadline_met": answers["deadline_met"],
        "seconds": round(span, 2),
        "answered_rps": round(answers["answers"] / span, 1),
        "answered_by_model_rps": round(answers["by_model"] / span, 1),
        "load_before": before,
        "load_after": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (5 s each)")
    parser.add_argument("--stream-requests", type=int, default=60_000)
    parser.add_argument("--stream-window", type=int, default=1_500, help="max unanswered")
    parser.add_argument("--stream-deadline-ms", type=int, default=2_000)
    parser.add_argument(
        "--layout",
        choices=("serve", "processes"),
        default="serve",
        help="one `modelstream serve` process, or `serve --processes` (a process per role)",
    )
    parser.add_argument(
        "--engine",
        choices=("sqlite", "kafka"),
        default="sqlite",
        help="the embedded default, or Kafka (a tansu broker started on loopback)",
    )
    args = parser.parse_args()
    name = "serving" + ("" if args.layout == "serve" else "-processes")
    name += "" if args.engine == "sqlite" else f"-{args.engine}"
    results = RESULTS.with_name(f"{name}.json")
    seconds = 5 if args.quick else 10
    ensure_tools()
    console = Console()
    root = Path(tempfile.mkdtemp(prefix="ms-serving-"))
    report: dict[str, Any] = {
        "benchmark": "serving",
        "at": int(time.time() * 1000),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "setup": {
            "models": "gbm@1 (champion, 100 trees, 20 features), logreg@1, tree@1 (challengers)",
            "policy": "preference",
            "deadline_ms": DEADLINE_MS,
            "backplane": args.engine,
            "layout": args.layout,
        },
    }
    server: Server | None = None
    broker: TansuBroker | None = None
    try:
        if args.engine == "kafka":
            broker = TansuBroker.start()
            backplane = broker.url
            # A group join on tansu takes half the session timeout (DESIGN.md).
            os.environ.setdefault("MODELSTREAM_SESSION_TIMEOUT_MS", "3000")
        else:
            backplane = f"sqlite://{root / 'bp'}"
        rows = prepare_backplane(backplane)
        port = free_port()
        processes = args.layout == "processes"
        server = Server(backplane, port, root / "serve.log", processes=processes)
        server.wait_ready()
        report["setup"]["serve_options"] = server.options
        url = f"{server.url}/v2/models/{SERVICE}/infer"
        body = json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, FEATURES],
                         "data": rows[0]}]}
        )  # fmt: skip
        body_file = root / "body.json"
        body_file.write_text(body)
        run_hey(url, body_file, 200, 10, 3)  # warm-up: connections, code paths, JITs
        pids = server.pids

        def cpu_total() -> float:
            return sum(tree_cpu_seconds(pid) for pid in pids)  # with serve's children

        report["fixed_rate"] = []
        for rate, workers in (LOW_RATE, *HEY_RATES):
            cpu = cpu_total()
            run = run_hey(url, body_file, rate, workers, seconds)
            run["server_cpu_ms_per_request"] = per_request(cpu_total() - cpu, run["status"])
            report["fixed_rate"].append(run)
            console.print(run)
        cpu = cpu_total()
        report["peak"] = run_wrk(url, body, seconds, 64, root)
        report["peak"]["server_cpu_ms_per_request"] = round(
            (cpu_total() - cpu) * 1000 / max(1, report["peak"]["requests"]), 3
        )
        console.print(report["peak"])
        cpu = cpu_total()
        requests = args.stream_requests // (3 if args.quick else 1)
        report["streaming"] = run_stream(
            backplane, rows, requests, args.stream_window, args.stream_deadline_ms, limit_s=20
        )
        report["streaming"]["server_cpu_ms_per_request"] = round(
            (cpu_total() - cpu) * 1000 / max(1, report["streaming"]["answers"]), 3
        )
        console.print(report["streaming"])
    finally:
        if server is not None:
            server.stop()
            logs = sorted(root.glob("serve*.log"))
            text = "".join(f.read_text(errors="replace")[-1000:] for f in logs)
            report["server_log_tail"] = text[-4000:]
        if broker is not None:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    what = "modelstream serve" if args.layout == "serve" else "modelstream serve --processes"
    engine = "SQLite" if args.engine == "sqlite" else "Kafka (tansu)"
    table = Table(title=f"{what} ({engine}, 3 ONNX models, preference, deadline 50 ms)")
    columns = (
        "phase",
        "offered",
        "achieved",
        "p50 ms",
        "p99 ms",
        "answers",
        "cpu ms/req",
        "load 1m",
    )
    for col in columns:
        table.add_column(col)
    for run in report["fixed_rate"]:
        table.add_row(
            "hey fixed rate",
            f"{run['target_rps']}/s",
            f"{run['achieved_rps']}/s",
            str(run["p50_ms"]),
            str(run["p99_ms"]),
            ", ".join(f"{c}: {n}" for c, n in run["status"].items()),
            str(run["server_cpu_ms_per_request"]),
            f"{run['load_before']} -> {run['load_after']}",
        )
    peak = report["peak"]
    table.add_row(
        "wrk peak",
        f"{peak['connections']} conns",
        f"{peak['peak_rps']}/s",
        peak["p50"],
        peak["p99"],
        f"{peak['requests']} ({peak['non_2xx']} non-2xx)",
        str(peak["server_cpu_ms_per_request"]),
        f"{peak['load_before']} -> {peak['load_after']}",
    )
    s = report["streaming"]
    table.add_row(
        "streaming",
        f"{s['requests']} reqs, <= {s['window']} in flight",
        f"{s['answered_by_model_rps']}/s by a model ({s['answered_rps']}/s all)",
        "",
        "",
        f"{s['answers']} in {s['seconds']} s ({s['deadline_met']} in {s['deadline_ms']} ms)",
        str(s["server_cpu_ms_per_request"]),
        f"{s['load_before']} -> {s['load_after']}",
    )
    console.print(table)
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written to {results}")


if __name__ == "__main__":
    main()
