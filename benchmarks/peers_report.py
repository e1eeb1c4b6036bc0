"""The report of ``benchmarks/peers.py``: console table, targets, plots, docs block.

``docs/benchmarks.md`` is prose written by hand around one block that this module
rewrites on every run, between the ``peers:begin`` and ``peers:end`` markers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.table import Table

BEGIN = "<!-- peers:begin: written by benchmarks/peers.py, edit outside these markers -->"
END = "<!-- peers:end -->"
HTTP_SERVERS = ("mlserver", "mlserver_inline", "modelstream_1", "modelstream_3", "modelstream_3p")
THREE = ("modelstream_3", "modelstream_3p")  # three models: one process, or --processes


def _rate(server: dict[str, Any], rate: int) -> dict[str, Any]:
    return next(r for r in server["fixed_rate"] if r["target_rps"] == rate)


def _non2xx(run: dict[str, Any]) -> int:
    return sum(n for code, n in run["status"].items() if not 200 <= int(code) < 300)


def _fixed_cell(run: dict[str, Any]) -> str:
    cell = f"{run['p50_ms']:g} / {run['p99_ms']:g}"
    notes = [f"{run['achieved_rps']:,.0f}/s"]
    bad = {c: n for c, n in run["status"].items() if not 200 <= int(c) < 300}
    notes += [f"{n:,} x {c}" for c, n in bad.items()]
    missing = run.get("offered", 0) - sum(run["status"].values())
    if missing > 0.02 * run.get("offered", 0):
        notes.append(f"{missing:,} not answered")
    return f"{cell} ({', '.join(notes)})"


def _streams(servers: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, streaming figures) of each three-model set-up that measured streaming."""
    return [
        (servers[k]["label"], servers[k]["streaming"])
        for k in THREE
        if "streaming" in servers.get(k, {})
    ]


def _span(a: float, b: float) -> str:
    return f"{a:g} to {b:g}"


def _loads(server: dict[str, Any]) -> str:
    runs = [server["idle"], *server["fixed_rate"], server["peak"]]
    if "streaming" in server:
        runs.append(server["streaming"])
    values = [v for r in runs for v in (r["load_before"], r["load_after"])]
    return _span(min(values), max(values))


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 8's targets, each with what was measured and whether it is met."""
    servers, floor = report["servers"], report["floor"]
    found: list[dict[str, Any]] = []
    mlserver_best = max(
        (servers[k] for k in ("mlserver", "mlserver_inline") if k in servers),
        key=lambda s: s["peak"]["peak_rps"],
        default=None,
    )
    three = max(
        (servers[k] for k in THREE if k in servers),
        key=lambda s: s["peak"]["peak_rps"],
        default=None,
    )
    if mlserver_best and three:
        ratio = three["peak"]["peak_rps"] / max(1.0, mlserver_best["peak"]["peak_rps"])
        found.append({
            "target": "modelstream with three models ≥ 2x MLServer's peak req/s with one",
            "measured": f"{three['peak']['peak_rps']:,.0f} ({three['label']}) vs"
            f" {mlserver_best['peak']['peak_rps']:,.0f} req/s ({mlserver_best['label']},"
            f" the better MLServer setting): {ratio:.2f}x",
            "met": ratio >= 2,
        })  # fmt: skip
    for key in ("modelstream_1", *THREE):
        if key in servers:
            run = _rate(servers[key], 1000)
            bad = _non2xx(run)
            met = run["p99_ms"] <= 10 and bad == 0 and run["achieved_rps"] >= 950
            found.append({
                "target": f"p99 ≤ 10 ms at 1,000 req/s ({servers[key]['label']})",
                "measured": f"p99 {run['p99_ms']:g} ms at {run['achieved_rps']:,.0f} req/s"
                f" achieved, {bad:,} non-2xx of {sum(run['status'].values()):,}",
                "met": met,
            })  # fmt: skip
    one = servers.get("modelstream_1")
    if one:
        bare_ms = 1000 / floor["calls_per_s"]
        throughput = floor["calls_per_s"] / max(1.0, one["peak"]["peak_rps"])
        cpu = one["peak"]["server_cpu_ms_per_request"] / bare_ms
        latency = _rate(one, 300)["p50_ms"] * 1000 / floor["p50_us"]
        found.append({
            "target": "overhead within 3x of the bare call (modelstream, 1 model)",
            "measured": f"bare call {floor['calls_per_s']:,.0f} calls/s vs peak"
            f" {one['peak']['peak_rps']:,.0f} req/s: {throughput:,.0f}x; server CPU per"
            f" request {cpu:,.0f}x the bare call's time; p50 at 300 req/s {latency:,.0f}x"
            " the bare call's p50",
            "met": throughput <= 3,
        })  # fmt: skip
    return found


def console_table(report: dict[str, Any]) -> Table:
    table = Table(title="one GBM (100 trees, 20 features), V2 JSON over loopback")
    for col in (
        "server",
        "peak req/s",
        "1 at a time: p50 / p99 ms",
        "300/s: p50 / p99 ms",
        "1,000/s: p50 / p99 ms",
        "cpu ms/req",
        "load 1m",
    ):
        table.add_column(col)
    floor = report["floor"]
    table.add_row(
        "bare onnxruntime call",
        f"{floor['calls_per_s']:,.0f} calls/s",
        f"{floor['p50_us'] / 1000:g} / {floor['p99_us'] / 1000:g}",
        "",
        "",
        f"{1000 / floor['calls_per_s']:.3f}",
        f"{_span(floor['load_before'], floor['load_after'])}",
    )
    for key in HTTP_SERVERS:
        if key in report["servers"]:
            s = report["servers"][key]
            table.add_row(
                s["label"],
                f"{s['peak']['peak_rps']:,.0f} ({s['peak']['non_2xx']} non-2xx)",
                _fixed_cell(s["idle"]),
                _fixed_cell(_rate(s, 300)),
                _fixed_cell(_rate(s, 1000)),
                str(s["peak"]["server_cpu_ms_per_request"]),
                _loads(s),
            )
    for label, stream in _streams(report["servers"]):
        table.add_row(
            f"{label}, streaming",
            f"{stream['answered_by_model_rps']:,.0f} by a model"
            f" ({stream['answered_rps']:,.0f} all)",
            "",
            "",
            "",
            str(stream["server_cpu_ms_per_request"]),
            f"{_span(stream['load_before'], stream['load_after'])}",
        )
    return table


def console_targets(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{'MET    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['measured']}"
        for t in targets(report)
    )


def markdown(report: dict[str, Any], images: list[Path]) -> str:
    floor, servers = report["floor"], report["servers"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report["at"] / 1000))
    m = report["machine"]
    lines = [
        BEGIN,
        "",
        f"Run of {when}{' (--quick)' if report['quick'] else ''}: {m['system']},"
        f" {m['cpus']} CPUs, Python {m['python']}, MLServer {report['setup']['mlserver']}."
        f" Peak: `{report['setup']['peak']}`. One at a time: `{report['setup']['idle']}`."
        f" Fixed rates: `{'`, `'.join(report['setup']['fixed_rate'])}`. Latency cells read"
        " p50 / p99 in ms (rate achieved, answers other than 2xx). The load column is the"
        " 1-minute load average over the server's phases.",
        "",
        "| server | peak req/s (2xx) | one at a time: p50 / p99 ms | 300 req/s: p50 / p99 ms"
        " | 1,000 req/s: p50 / p99 ms | server CPU ms/req at peak | load 1m |",
        "|---|---:|---|---|---|---:|---|",
        f"| bare `InferenceSession.run`, one row (the floor) | {floor['calls_per_s']:,.0f}"
        f" calls/s | {floor['p50_us'] / 1000:g} / {floor['p99_us'] / 1000:g} (one call) | | |"
        f" {1000 / floor['calls_per_s']:.3f}"
        f" | {_span(floor['load_before'], floor['load_after'])} |",
    ]
    for key in HTTP_SERVERS:
        if key in servers:
            s = servers[key]
            lines.append(
                f"| {s['label']} | {s['peak']['peak_rps']:,.0f} | {_fixed_cell(s['idle'])}"
                f" | {_fixed_cell(_rate(s, 300))}"
                f" | {_fixed_cell(_rate(s, 1000))} | {s['peak']['server_cpu_ms_per_request']}"
                f" | {_loads(s)} |"
            )
    for label, stream in _streams(servers):
        lines.append(
            f"| {label}, streaming (≤ {stream['window']:,} in flight) |"
            f" {stream['answered_by_model_rps']:,.0f} answered by a model"
            f" ({stream['answered_rps']:,.0f} in all) | | | |"
            f" {stream['server_cpu_ms_per_request']} |"
            f" {_span(stream['load_before'], stream['load_after'])} |"
        )
    lines += ["", "| target (issue 8) | measured | met |", "|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['measured']} | {'**met**' if t['met'] else '**not met**'} |"
        for t in targets(report)
    ]
    lines += ["", *(f"![{p.stem}]({p.as_posix()})" for p in images), "", END]
    return "\n".join(lines)


def update_doc(doc: Path, report: dict[str, Any], images: list[Path]) -> None:
    """Replace the block between the markers of ``doc`` (append it if there is none)."""
    block = markdown(report, images)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """``peers-peak.png`` and ``peers-latency.png`` in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    servers = report["servers"]
    m = report["machine"]
    note = f"{m['cpus']} CPUs, loopback, one GBM (100 trees, 20 features)"

    labels, values, colors = ["bare onnxruntime call"], [report["floor"]["calls_per_s"]], ["grey"]
    for key in HTTP_SERVERS:
        if key in servers:
            labels.append(servers[key]["label"] + " (HTTP)")
            values.append(servers[key]["peak"]["peak_rps"])
            colors.append("tab:blue" if key.startswith("mlserver") else "tab:orange")
    for label, stream in _streams(servers):
        labels.append(f"{label} (streaming)")
        values.append(stream["answered_by_model_rps"])
        colors.append("tab:red")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bars = ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    ax.set_xscale("log")
    ax.bar_label(bars, labels=[f" {v:,.0f}" for v in values[::-1]], fontsize=8)
    ax.set_xlabel("requests (or calls) answered per second, log scale")
    ax.set_title(f"Peak throughput ({note})", fontsize=9)
    ax.set_xlim(right=max(values) * 4)
    fig.tight_layout()
    peak = folder / "peers-peak.png"
    fig.savefig(peak, dpi=110)
    plt.close(fig)

    keys = [k for k in HTTP_SERVERS if k in servers]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.16
    series = [(None, "p50_ms"), (300, "p50_ms"), (300, "p99_ms"), (1000, "p50_ms"),
              (1000, "p99_ms")]  # fmt: skip
    for i, (rate, field) in enumerate(series):
        runs = [servers[k]["idle"] if rate is None else _rate(servers[k], rate) for k in keys]
        heights = [run[field] for run in runs]
        xs = [j + (i - 2) * width for j in range(len(keys))]
        what = "one at a time" if rate is None else f"at {rate:,} req/s"
        bars = ax.bar(xs, heights, width, label=f"{field[:3]} {what}")
        ax.bar_label(bars, labels=[f"{h:g}" for h in heights], fontsize=7)
    ax.axhline(10, color="black", linestyle="--", linewidth=1)
    ax.text(-0.45, 10.5, "target: p99 ≤ 10 ms at 1,000 req/s", va="bottom", fontsize=7)
    ticks = [servers[k]["label"].replace(", ", "\n", 1) for k in keys]
    ax.set_xticks(range(len(keys)), ticks, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 8)
    ax.set_ylabel("latency, ms (hey, log scale)")
    ax.set_title(f"Latency at a fixed rate ({note})", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout()
    latency = folder / "peers-latency.png"
    fig.savefig(latency, dpi=110)
    plt.close(fig)
    return [peak, latency]
