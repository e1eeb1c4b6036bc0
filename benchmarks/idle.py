"""What ``modelstream serve --processes`` costs when there is little or nothing to do.

The setup of ``benchmarks/serving.py`` (three live ONNX models of one service on a
temporary SQLite backplane, preference policy, deadline 50 ms), with every role a child
process. For each role (gateway, rendezvous, scorer) it reports CPU ms per second and
context switches per second, read from ``/proc``:

* idle: ready, and no request for ``--seconds``;
* a trickle: ``hey`` at 50 req/s, one request at a time, for ``--seconds`` (with the
  latency p50/p99 and the CPU per request of all roles together).

An idle server should cost close to nothing: on a laptop or a shared host, its wake-ups
are what an operator sees. Prints a table and writes ``benchmarks/results/idle.json``.
Bounded: about a minute.

    .venv/bin/python benchmarks/idle.py [--seconds 20] [--rate 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen import cpu_seconds, ensure_tools, free_port, load, run_hey
from serving import FEATURES, SERVICE, Server, prepare_backplane

RESULTS = Path(__file__).parent / "results" / "idle.json"


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out + [g for c in out for g in descendants(c)]


def role_of(pid: int) -> str:
    """``gateway``, ``rendezvous``, ``scorer``... from ``modelstream run ROLE``."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("run") + 1] if "run" in argv else argv[-1]


def usage(pid: int) -> tuple[float, int]:
    """CPU seconds (user and system) and context switches (all threads) of ``pid``."""
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches" in line:
                    switches += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return cpu_seconds(pid), switches


def measure(pids: dict[str, int], run: Any) -> dict[str, dict[str, float]]:
    """Per role, CPU ms/s and context switches/s while ``run()`` runs."""
    before = {role: usage(pid) for role, pid in pids.items()}
    start = time.monotonic()
    run()
    span = time.monotonic() - start
    out: dict[str, dict[str, float]] = {}
    for role, pid in pids.items():
        cpu, switches = usage(pid)
        out[role] = {
            "cpu_ms_per_s": round((cpu - before[role][0]) * 1000 / span, 1),
            "switches_per_s": round((switches - before[role][1]) / span),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="length of each phase")
    parser.add_argument("--rate", type=int, default=50, help="req/s of the trickle")
    args = parser.parse_args()
    ensure_tools()
    console = Console()
    root = Path(tempfile.mkdtemp(prefix="ms-idle-"))
    report: dict[str, Any] = {
        "benchmark": "idle",
        "at": int(time.time() * 1000),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "setup": {"layout": "processes", "backplane": "sqlite", "seconds": args.seconds},
    }
    server: Server | None = None
    try:
        backplane = f"sqlite://{root / 'bp'}"
        rows = prepare_backplane(backplane)
        server = Server(backplane, free_port(), root / "serve.log", processes=True)
        server.wait_ready()
        url = f"{server.url}/v2/models/{SERVICE}/infer"
        body = root / "body.json"
        tensor = {"name": "input", "datatype": "FP32", "shape": [1, FEATURES], "data": rows[0]}
        body.write_text(json.dumps({"inputs": [tensor]}))
        run_hey(url, body, 50, 2, 3)  # warm-up: connections, code paths
        time.sleep(1.0)  # past the warm-up's last commits
        pids = {role_of(pid): pid for pid in descendants(server.proc.pid)}
        report["load_before"] = load()
        report["idle"] = measure(pids, lambda: time.sleep(args.seconds))
        trickle: dict[str, Any] = {}

        def offer() -> None:
            trickle.update(run_hey(url, body, args.rate, 1, args.seconds))

        report["trickle"] = measure(pids, offer)
        report["trickle_latency"] = {
            "rate": args.rate,
            "p50_ms": trickle["p50_ms"],
            "p99_ms": trickle["p99_ms"],
            "status": trickle["status"],
        }
        report["load_after"] = load()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

    table = Table(title="modelstream serve --processes (SQLite, 3 ONNX models), per role")
    for col in ("role", "idle CPU ms/s", "idle switches/s", "trickle CPU ms/s",
                "trickle switches/s"):  # fmt: skip
        table.add_column(col)
    for role in sorted(report["idle"]):
        idle, busy = report["idle"][role], report["trickle"][role]
        table.add_row(
            role,
            str(idle["cpu_ms_per_s"]),
            str(idle["switches_per_s"]),
            str(busy["cpu_ms_per_s"]),
            str(busy["switches_per_s"]),
        )
    total_idle = sum(r["cpu_ms_per_s"] for r in report["idle"].values())
    total_busy = sum(r["cpu_ms_per_s"] for r in report["trickle"].values())
    report["idle_cpu_ms_per_s"] = round(total_idle, 1)
    report["trickle_cpu_ms_per_request"] = round(total_busy / args.rate, 2)
    table.add_row("all", str(round(total_idle, 1)), "", str(round(total_busy, 1)), "")
    console.print(table)
    lat = report["trickle_latency"]
    console.print(
        f"trickle of {args.rate} req/s: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
        f"{report['trickle_cpu_ms_per_request']} ms of CPU per request; "
        f"load {report['load_before']} -> {report['load_after']}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
