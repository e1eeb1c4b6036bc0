"""``modelstream monitor S``: the monitor of a service, in-process, as a live Rich table.

Runs a read-only :class:`~modelstream.monitoring.monitor.Monitor` (``standalone``: no
consumer group, no commits, no alert records, so it never disturbs the service's own
monitor role) over the service's topics, from the beginning or (``--new-only``) only
over records produced from now on. ``--once`` reads up to the end of every topic as of
the start, prints one snapshot and exits; ``--json`` prints snapshots as JSON.
"""

from __future__ import annotations

import sys
import time

import orjson
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.monitor import Monitor
from modelstream.monitoring.snapshot import MonitorSnapshot
from modelstream.wire.topics import check_name

console = Console()
err_console = Console(stderr=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(snap: MonitorSnapshot) -> Group:
    """The snapshot as Rich tables: models, agreement, input drift, recent alerts."""
    models = Table(
        "model", "role", "labelled", "quality", "baseline", "p50/p99 ms", "errors",
        "chosen", "score PSI", title=f"{snap.service}: models (window {dict(snap.window)})",
    )  # fmt: skip
    for m in snap.models:
        quality = ", ".join(f"{k} {v:.3f}" for k, v in m.quality.items()) or "-"
        psi = ", ".join(f"{d.against} {d.measure.psi:.3f}" for d in m.score_drift) or "-"
        models.add_row(
            m.model,
            m.role,
            str(m.labelled),
            quality,
            _num(m.baseline),
            f"{_num(m.latency_p50_ms, 2)} / {_num(m.latency_p99_ms, 2)}",
            f"{m.errors}/{m.scored}",
            _num(m.chosen_share),
            psi,
        )
    models.caption = (
        f"{snap.records.get('requests', 0)} requests, {snap.records.get('labels', 0)} labels, "
        f"{snap.results} answers in window ({snap.deadline_misses} deadline misses)"
    )
    agreement = Table("model", "model", "agreement", "requests", title="agreement")
    for pair in snap.agreement:
        agreement.add_row(pair.a, pair.b, f"{pair.agreement:.3f}", str(pair.n))
    drift = Table("input", "PSI", "KS", "KS p", "drifted", title="input drift vs reference")
    for d in snap.input_drift:
        x = d.measure
        drift.add_row(
            d.subject,
            f"{x.psi:.3f}",
            f"{x.ks_statistic:.3f}",
            f"{x.ks_p_value:.2g}",
            "yes" if x.drifted else "no",
        )
    alerts = Table("kind", "message", title="recent alerts")
    for alert in snap.alerts[-10:]:
        alerts.add_row(str(alert["kind"]), str(alert["message"]))
    return Group(models, agreement, drift, alerts)


def _print_json(snap: MonitorSnapshot) -> None:
    sys.stdout.write(orjson.dumps(snap.to_json()).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


@reported
def monitor_command(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="Service to monitor."),
    once: bool = typer.Option(False, "--once", help="Catch up, print one snapshot, exit."),
    as_json: bool = typer.Option(False, "--json", help="Print snapshots as JSON."),
    new_only: bool = typer.Option(
        False, "--new-only", help="Only records produced from now on (default: from the start)."
    ),
    window_minutes: float = typer.Option(15.0, "--window-minutes", min=0.001),
    window_count: int = typer.Option(1000, "--window-count", min=1),
    refresh: float = typer.Option(2.0, "--refresh", min=0.1, help="Seconds between refreshes."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="--once: catch-up limit (s)."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Quality, latency, errors, agreement and drift of every model of a service, live."""
    config = MonitorConfig(window_ms=round(window_minutes * 60_000), window_count=window_count)
    settings = settings_of(ctx)
    with backplane_of(ctx) as backplane:
        monitor = Monitor(
            backplane,
            settings,
            check_name("service", service),
            config=config,
            start="latest" if new_only else "earliest",
            standalone=True,
        )
        try:
            if once:
                monitor.open()
                if not monitor.catch_up(timeout):
                    err_console.print(f"warning: not caught up after {timeout:.0f} s")
                snap = monitor.snapshot()
                if as_json:
                    _print_json(snap)
                else:
                    console.print(render(snap))
                return
            monitor.start()
            if as_json:
                while True:
                    time.sleep(refresh)
                    _print_json(monitor.snapshot())
            with Live(render(monitor.snapshot()), console=console, refresh_per_second=4) as live:
                while True:
                    time.sleep(refresh)
                    live.update(render(monitor.snapshot()))
        except KeyboardInterrupt:
            pass
        finally:
            monitor.stop()
