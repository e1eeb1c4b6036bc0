"""External load generators and the measurements around them, shared by the benchmarks.

``hey`` drives a fixed rate (latency percentiles), ``wrk`` the peak (2xx req/s). Both are
installed with apt-get when missing. Every run records the 1-minute load average before
and after, since the machine may be shared.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

# (total req/s, workers): hey workers are closed loops, so each sends 10 req/s and can
# absorb up to 100 ms of latency before the offered rate drops.
HEY_RATES = ((300, 30), (1000, 100))
# Workers per hey process in the steady arrival pattern (see run_hey).
HEY_GROUP = 5


def load() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its live descendants (servers with worker processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            parents[int(entry.name)] = int(fields[1])
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def ensure_tools() -> None:
    missing = [t for t in ("hey", "wrk") if shutil.which(t) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def per_request(cpu_s: float, status: dict[int, int]) -> float:
    return round(cpu_s * 1000 / max(1, sum(status.values())), 3)


def run_hey(
    url: str, body: Path, rate: int, workers: int, seconds: int, *, steady: bool = True
) -> dict[str, Any]:
    """Offer ``rate`` req/s for ``seconds`` with ``workers`` hey workers (each a closed loop
    at ``rate / workers`` req/s); latency percentiles of every answer.

    hey starts all its workers on one tick, so a single ``hey -c 100 -q 10`` sends bursts
    of 100 requests at once every 100 ms: its p99 measures how fast a 100-deep queue
    drains, not latency at a rate. ``steady`` (the default) runs the workers as several
    hey processes of ``HEY_GROUP`` workers, started evenly across one tick, so arrivals are
    spread (bursts of ``HEY_GROUP``); ``steady=False`` is the one-process burst pattern.
    Percentiles come from hey's per-request CSV; transport errors, which that CSV leaves
    out, show as the shortfall between ``offered`` and the answers counted.
    """
    per_worker = max(1, rate // workers)
    groups = max(1, workers // HEY_GROUP) if steady else 1
    before = load()
    procs = []
    for g in range(groups):
        share = workers // groups + (1 if g < workers % groups else 0)
        command = [
            *("hey", "-z", f"{seconds}s", "-q", str(per_worker), "-c", str(share)),
            *("-m", "POST", "-T", "application/json", "-D", str(body), "-o", "csv", url),
        ]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        time.sleep(1.0 / per_worker / groups)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        for line in out.splitlines()[1:]:
            fields = line.split(",")
            if len(fields) >= 7 and fields[6].isdigit():
                latencies.append(float(fields[0]) * 1000)
                codes[int(fields[6])] = codes.get(int(fields[6]), 0) + 1
    latencies.sort()

    def pct(q: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)
            if latencies
            else 0.0
        )

    return {
        "target_rps": rate,
        "workers": workers,
        "arrivals": f"{groups} hey processes, bursts of {workers // groups}",
        "offered": rate * seconds,
        "achieved_rps": round(len(latencies) / seconds, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "status": dict(sorted(codes.items())),
        "load_before": before,
        "load_after": load(),
    }


def run_wrk(url: str, body: str, seconds: int, connections: int, root: Path) -> dict[str, Any]:
    script = root / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{body}]]\n"
    )
    before = load()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    pct = dict(re.findall(r"\s(50|99)%\s+([\d.]+\w+)", out))
    requests, elapsed = (int(total.group(1)), float(total.group(2))) if total else (0, 1.0)
    if total and total.group(3) == "ms":
        elapsed /= 1000
    bad = int(non2xx.group(1)) if non2xx else 0
    return {
        "connections": connections,
        "requests": requests,
        "non_2xx": bad,
        "peak_rps": round((requests - bad) / elapsed, 1),
        "p50": pct.get("50", ""),
        "p99": pct.get("99", ""),
        "load_before": before,
        "load_after": load(),
    }


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail if ``proc`` exits or ``timeout`` passes."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then SIGKILL those still running 20 s later."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
