"""Offset commits from several processes on one SQLite backplane: how long a commit takes.

Every role commits its offsets to the directory's ``meta.db``, so under load the roles'
commits collide. This measures, on one fresh directory, ``--processes`` consumer
processes (each in its own group) committing ``--commits`` times at ``--rate`` per
second each, and reports the commit latency p50/p99/max and the share of commits that
took over 1 ms. It runs twice, in alternating rounds on the same minute:

* ``write lock``: as shipped, writers queue on the file's cross-process ``flock``
  (:mod:`modelstream.backplane.sqlite.writelock`), handed over at once;
* ``busy handler only``: the children switch that lock off, so a writer that finds the
  file locked waits in SQLite's busy handler, which sleeps 1 ms and more between retries.

Prints a table and writes ``benchmarks/results/commits.json``. Bounded: about a minute.

    .venv/bin/python benchmarks/commits.py [--processes 3] [--rate 2000] [--rounds 2]
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

from backplane import percentiles

RESULTS = Path(__file__).parent / "results" / "commits.json"
MODES = ("write lock", "busy handler only")


def _committer(url: str, group: str, n: int, rate: float, flock: bool, out: Any) -> None:
    from modelstream.backplane.factory import open_backplane
    from modelstream.backplane.sqlite import writelock
    from modelstream.settings import Settings

    if not flock:
        writelock.fcntl = None  # type: ignore[assignment]  # every lock: thread lock only
    bp = open_backplane(url, Settings(backplane=url))
    consumer = bp.consumer(["t"], group=group)
    while not consumer.assignment():
        consumer.poll(timeout=0.05)
    tp = min(consumer.assignment(), key=lambda t: t.partition)
    took: list[float] = []
    gap, due = 1.0 / rate, time.perf_counter()
    for i in range(n):
        started = time.perf_counter()
        consumer.commit({tp: i})
        took.append((time.perf_counter() - started) * 1000)
        due += gap
        if (pause := due - time.perf_counter()) > 0:
            time.sleep(pause)
    consumer.close()
    bp.close()
    out.put(took)


def one_round(processes: int, commits: int, rate: float, flock: bool) -> list[float]:
    from modelstream.backplane.factory import open_backplane
    from modelstream.settings import Settings

    url = f"sqlite://{tempfile.mkdtemp(prefix='ms-commits-')}"
    bp = open_backplane(url, Settings(backplane=url))
    bp.create_topic("t", 4)
    bp.close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    children = [
        ctx.Process(target=_committer, args=(url, f"g{i}", commits, rate, flock, out))
        for i in range(processes)
    ]
    for c in children:
        c.start()
    took = [ms for _ in children for ms in out.get(timeout=300)]
    for c in children:
        c.join(30)
    return took


def summary(took: list[float]) -> dict[str, float]:
    return {
        "commits": len(took),
        **percentiles(took),
        "max_ms": round(max(took), 2),
        "over_1ms_pct": round(100 * sum(1 for t in took if t > 1.0) / len(took), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--commits", type=int, default=3000, help="per process and round")
    parser.add_argument("--rate", type=float, default=2000.0, help="commits/s per process")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    pooled: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            took = one_round(args.processes, args.commits, args.rate, mode == MODES[0])
            rounds[mode].append(summary(took))
            pooled[mode].extend(took)
    table = Table(title=f"offset commits, {args.processes} processes x {args.rate:.0f}/s")
    for column in ("mode", "commits", "p50 ms", "p99 ms", "max ms", "> 1 ms"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    report: dict[str, Any] = {
        "benchmark": "commits",
        "at": int(time.time() * 1000),
        "machine": {"python": platform.python_version(), "cpus": mp.cpu_count()},
        "setup": vars(args),
        "results": {},
    }
    for mode in MODES:
        s = summary(pooled[mode])
        report["results"][mode] = {**s, "rounds": rounds[mode]}
        table.add_row(
            mode,
            f"{s['commits']:,}",
            f"{s['p50_ms']:.3f}",
            f"{s['p99_ms']:.3f}",
            f"{s['max_ms']:.1f}",
            f"{s['over_1ms_pct']:.1f}%",
        )
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
