"""Side-by-side benchmark (issue 8): modelstream against MLServer and the bare call.

One ONNX model (GradientBoosting, 100 trees, 20 features, from
``modelstream.testing.sklearn.onnx_classifier``) is served several ways on loopback and
each server is driven by the same external load generators with the same Open Inference
Protocol (V2) body, ``POST /v2/models/bench/infer`` with one FP32 tensor ``[1, 20]``:

* (a) ``modelstream serve`` (gateway + rendezvous + scorers on a SQLite backplane,
  ``--no-monitor --no-archive``) with that model alone;
* (b) ``modelstream serve`` with three live models under the preference policy (gbm
  champion, logreg and tree challengers, deadline 50 ms), set up as
  ``benchmarks/serving.py`` does, plus its streaming path (requests straight onto the
  topic, answered req/s);
* (c) MLServer 1.7 with a small onnxruntime custom runtime, installed by this script into
  ``.bench/mlserver-1.7``: with its default settings (one parallel inference worker) and
  with ``parallel_workers: 0`` (inference in the server process);
* (d) the floor: ``InferenceSession.run`` on one row in a loop.

Per server: ``wrk`` peak req/s (2xx only), ``hey`` p50/p99 at 300 and 1,000 req/s and
with one request at a time (one worker at 50 req/s). MLServer is started with
``debug: false`` (no access log line per request) and otherwise its defaults. Every phase
records the 1-minute load average before and after. Before measuring, each server's
answer is checked against onnxruntime run directly (probabilities within 1e-5).
Writes ``benchmarks/results/peers.json``, the figures block of ``docs/benchmarks.md`` and
``docs/img/peers-*.png`` (needs matplotlib: ``pip install -e '.[bench]'``).
Bounded: about 4 minutes (``--quick``: about 2), plus MLServer's install on first use.

    .venv/bin/python benchmarks/peers.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from loadgen import (
    HEY_GROUP,
    HEY_RATES,
    ensure_tools,
    free_port,
    load,
    run_hey,
    run_wrk,
    tree_cpu_seconds,
)
from peer_mlserver import MLServer, ensure_mlserver, write_model_dir
from peers_report import console_table, console_targets, update_doc, write_plots
from serving import DEADLINE_MS, FEATURES, SERVICE, Server, prepare_backplane, run_stream

RESULTS = Path(__file__).parent / "results" / "peers.json"
REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"
TOLERANCE = 1e-5
IDLE_RATE = 50  # req/s from one hey worker: one request at a time


def session(model: bytes) -> Any:
    """An onnxruntime session with modelstream's loader options (1 thread, no spinning)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_floor(model: bytes, rows: np.ndarray, seconds: float) -> dict[str, Any]:
    """``InferenceSession.run`` on one row at a time, in a loop: calls/s, p50/p99 in µs."""
    sess = session(model)
    name = sess.get_inputs()[0].name
    feeds = [{name: rows[i : i + 1]} for i in range(len(rows))]
    for feed in feeds:  # warm-up
        sess.run(None, feed)
    before = load()
    durations: list[int] = []
    clock = time.perf_counter_ns
    started = clock()
    stop = started + int(seconds * 1e9)
    i = 0
    while True:
        t0 = clock()
        sess.run(None, feeds[i % len(feeds)])
        t1 = clock()
        durations.append(t1 - t0)
        i += 1
        if t1 >= stop:
            break
    elapsed = (clock() - started) / 1e9
    us = np.array(durations) / 1000
    return {
        "calls": len(durations),
        "seconds": round(elapsed, 2),
        "calls_per_s": round(len(durations) / elapsed, 1),
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "session_options": "intra_op 1, inter_op 1, no spinning, CPUExecutionProvider",
        "load_before": before,
        "load_after": load(),
    }


def v2_body(row: list[float]) -> str:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, FEATURES], "data": row}
    return json.dumps({"inputs": [tensor]})


def verify(url: str, body: str, expected: np.ndarray) -> dict[str, Any]:
    """POST ``body`` once; compare the ``probabilities`` output with onnxruntime's."""
    request = urllib.request.Request(
        url, body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    outputs = {o["name"]: o for o in answer.get("outputs", [])}
    probabilities = outputs.get("probabilities")
    if probabilities is None:
        raise RuntimeError(f"{url} answered without a 'probabilities' output: {answer}")
    got = np.asarray(probabilities["data"], dtype=np.float64).ravel()
    diff = float(np.max(np.abs(got - expected.ravel())))
    if diff > TOLERANCE:
        raise RuntimeError(f"{url} disagrees with onnxruntime by {diff}: {got} vs {expected}")
    return {
        "outputs": sorted(outputs),
        "model_name": answer.get("model_name"),
        "probabilities": [round(float(v), 6) for v in got],
        "max_abs_diff": diff,
    }


def measure(
    url: str, body: str, root: Path, pid: int, seconds: int, connections: int
) -> dict[str, Any]:
    """Warm up; hey one request at a time (``idle``), then at each fixed rate; wrk at the
    peak. Server CPU per request throughout (the server and its worker processes)."""
    body_file = root / "body.json"
    body_file.write_text(body)
    run_hey(url, body_file, 200, 10, 3)  # warm-up: connections, code paths, JITs
    # One worker at 50 req/s shows the latency of a request that waits for no other; the
    # fixed rates arrive spread over each tick (see loadgen.run_hey).
    idle = run_hey(url, body_file, IDLE_RATE, 1, seconds)
    fixed = []
    for rate, workers in HEY_RATES:
        cpu = tree_cpu_seconds(pid)
        run = run_hey(url, body_file, rate, workers, seconds)
        answered = max(1, sum(run["status"].values()))
        run["server_cpu_ms_per_request"] = round((tree_cpu_seconds(pid) - cpu) * 1000 / answered, 3)
        fixed.append(run)
    cpu = tree_cpu_seconds(pid)
    peak = run_wrk(url, body, seconds, connections, root)
    peak["server_cpu_ms_per_request"] = round(
        (tree_cpu_seconds(pid) - cpu) * 1000 / max(1, peak["requests"]), 3
    )
    return {"idle": idle, "fixed_rate": fixed, "peak": peak}


def serve_modelstream(
    root: Path,
    model: bytes,
    challengers: tuple[str, ...],
    body: str,
    expected: np.ndarray,
    phases: tuple[int, int],
    after: Callable[[Path, list[list[float]], int], dict[str, Any]] | None = None,
    *,
    processes: bool = False,
) -> dict[str, Any]:
    """Publish, deploy and serve (``serve --processes`` if ``processes``); verify,
    measure, then ``after(root, rows, pid)``."""
    rows = prepare_backplane(f"sqlite://{root / 'bp'}", challengers, model)
    server = Server(f"sqlite://{root / 'bp'}", free_port(), root / "serve.log", processes=processes)
    result: dict[str, Any] = {"serve_options": server.options}
    try:
        server.wait_ready()
        url = f"{server.url}/v2/models/{SERVICE}/infer"
        result["verify"] = verify(url, body, expected)
        result |= measure(url, body, root, server.proc.pid, *phases)
        if after is not None:
            result |= after(root, rows, server.proc.pid)
    finally:
        server.stop()
        result["log_tail"] = (root / "serve.log").read_text(errors="replace")[-1500:]
    return result


def serve_mlserver(
    root: Path,
    model: bytes,
    settings: dict[str, Any],
    body: str,
    expected: np.ndarray,
    phases: tuple[int, int],
) -> dict[str, Any]:
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        **settings,
    }
    folder = write_model_dir(root / "mlserver", SERVICE, model, settings)
    server = MLServer(folder, port, root / "mlserver.log")
    result: dict[str, Any] = {"settings": settings}
    try:
        server.wait_ready(SERVICE)
        url = f"{server.url}/v2/models/{SERVICE}/infer"
        result["verify"] = verify(url, body, expected)
        result |= measure(url, body, root, server.proc.pid, *phases)
    finally:
        server.stop()
        result["log_tail"] = (root / "mlserver.log").read_text(errors="replace")[-1500:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (4 s each)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--stream-requests", type=int, default=60_000)
    parser.add_argument("--stream-window", type=int, default=1_500, help="max unanswered")
    parser.add_argument("--stream-deadline-ms", type=int, default=2_000)
    parser.add_argument("--no-plots", action="store_true", help="skip the matplotlib PNGs")
    parser.add_argument(
        "--render",
        action="store_true",
        help=f"measure nothing: redraw the plots and the docs block from {RESULTS.name}",
    )
    args = parser.parse_args()
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit("matplotlib is missing: pip install -e '.[bench]' (or pass --no-plots)")
    if args.render:
        render(json.loads(RESULTS.read_text()), plots=not args.no_plots)
        return
    seconds = 4 if args.quick else 10
    phases = (seconds, args.connections)
    console = Console(width=max(160, Console().width))
    ensure_tools()
    mlserver_version = ensure_mlserver()

    from modelstream.testing.sklearn import onnx_classifier

    model, data = onnx_classifier("gbm", features=FEATURES, trees=100)
    rows = data.x[:64]
    body = v2_body([float(v) for v in rows[0]])
    floor_session = session(model)
    names = [o.name for o in floor_session.get_outputs()]
    outputs = dict(zip(names, floor_session.run(None, {"input": rows[:1]}), strict=True))
    expected = outputs["probabilities"]
    report: dict[str, Any] = {
        "benchmark": "peers",
        "at": int(time.time() * 1000),
        "quick": args.quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": f"{platform.system()} {platform.machine()}",
        },
        "setup": {
            "model": "onnx GradientBoostingClassifier, 100 trees, depth 3, 20 features",
            "request": "POST /v2/models/bench/infer, one FP32 input [1, 20] (V2 JSON)",
            "peak": f"wrk -t2 -c{args.connections} -d{seconds}s (2xx answers only)",
            "idle": f"hey -z {seconds}s -q {IDLE_RATE} -c 1",
            "fixed_rate": [
                f"{workers // HEY_GROUP} x hey -z {seconds}s -q {rate // workers} -c {HEY_GROUP},"
                f" started evenly over {1000 * workers // rate} ms"
                for rate, workers in HEY_RATES
            ],
            "deadline_ms": DEADLINE_MS,
            "mlserver": mlserver_version,
        },
        "servers": {},
    }
    root = Path(tempfile.mkdtemp(prefix="ms-peers-"))
    try:
        console.print("[bold]floor[/]: onnxruntime InferenceSession.run, one row")
        report["floor"] = run_floor(model, rows, 2 if args.quick else 5)
        console.print(report["floor"])

        mlservers = (
            ("mlserver", "MLServer 1.7, default settings", {"debug": False}),
            ("mlserver_inline", "MLServer 1.7, parallel_workers 0", {"debug": False,
             "parallel_workers": 0}),
        )  # fmt: skip
        for key, label, settings in mlservers:
            console.print(f"[bold]{label}[/]")
            (root / key).mkdir()
            result = serve_mlserver(root / key, model, settings, body, expected, phases)
            report["servers"][key] = {"label": label, **result}
            console.print({k: v for k, v in result.items() if k != "log_tail"})

        def stream(root: Path, rows: list[list[float]], pid: int) -> dict[str, Any]:
            cpu = tree_cpu_seconds(pid)
            requests = args.stream_requests // (3 if args.quick else 1)
            s = run_stream(
                f"sqlite://{root / 'bp'}",
                rows,
                requests,
                args.stream_window,
                args.stream_deadline_ms,
                20,
            )
            answers = max(1, s["answers"])
            s["server_cpu_ms_per_request"] = round(
                (tree_cpu_seconds(pid) - cpu) * 1000 / answers, 3
            )
            return {"streaming": s}

        three = ("logreg", "tree")
        cases = (
            ("modelstream_1", "modelstream, 1 model", (), None, False),
            ("modelstream_3", "modelstream, 3 models", three, stream, False),
            ("modelstream_3p", "modelstream --processes, 3 models", three, stream, True),
        )
        for key, label, challengers, after, processes in cases:
            console.print(f"[bold]{label}[/]")
            (root / key).mkdir()
            result = serve_modelstream(
                root / key, model, challengers, body, expected, phases, after, processes=processes
            )
            report["servers"][key] = {"label": label, **result}
            console.print({k: v for k, v in result.items() if k != "log_tail"})
    finally:
        shutil.rmtree(root, ignore_errors=True)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    render(report, plots=not args.no_plots)
    console.print(f"written to {RESULTS}")


def render(report: dict[str, Any], *, plots: bool) -> None:
    """Print the table and the targets; write the plots and the docs block."""
    console = Console(width=max(160, Console().width))
    console.print(console_table(report))
    console.print(console_targets(report))
    images = write_plots(report, IMG) if plots else []
    update_doc(DOC, report, [p.relative_to(DOC.parent) for p in images])
    console.print(f"figures written to {DOC}" + "".join(f", {p}" for p in images))


if __name__ == "__main__":
    main()
