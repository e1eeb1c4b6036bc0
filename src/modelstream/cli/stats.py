"""``modelstream models stats S [--json]``: figures per model version, from ``<service>.scores``.

Reads the most recent ``--limit`` score records of the service (a bounded read that
never waits for new records) and computes, with the same
:class:`~modelstream.scoring.stats.StatsBook` the scorers use, per model version: since,
invocations, errors, latency min/mean/max/p50/p99. A running scorer exposes the same
figures in-process through :meth:`modelstream.scoring.scorer.Scorer.stats`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modelstream.cli.context import BackplaneOption, backplane_of
from modelstream.cli.errors import reported
from modelstream.errors import ServiceNotFound
from modelstream.gateway.stats import DEFAULT_LIMIT, stats_from_scores
from modelstream.scoring.stats import VersionStats
from modelstream.wire.topics import ServiceTopics

console = Console()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def stats_table(service: str, stats: list[VersionStats]) -> Table:
    """The Rich table of ``stats`` (latencies in milliseconds)."""
    table = Table(title=f"{service}: scores per model version (latency in ms)")
    for column in ("model", "role", "since (UTC)", "invocations", "errors"):
        table.add_column(column, justify="right" if column in ("invocations", "errors") else "left")
    for column in ("min", "mean", "p50", "p99", "max"):
        table.add_column(column, justify="right")
    for s in stats:
        table.add_row(
            str(s.ref),
            s.role,
            _when(s.since),
            f"{s.invocations:,}",
            f"{s.errors:,}" + (f" ({s.error_rate:.1%})" if s.errors else ""),
            *(
                f"{v:.3f}"
                for v in (
                    s.latency_min,
                    s.latency_mean,
                    s.latency_p50,
                    s.latency_p99,
                    s.latency_max,
                )
            ),
        )
    return table


@reported
def stats_command(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Read at most this many recent scores.")
    ] = DEFAULT_LIMIT,
    backplane_url: BackplaneOption = None,
) -> None:
    """Statistics per model version of SERVICE, computed from its scores topic."""
    topic = ServiceTopics(service).scores
    with backplane_of(ctx) as backplane:
        if topic not in {t.name for t in backplane.list_topics()}:
            raise ServiceNotFound(service)
        stats = stats_from_scores(backplane, service, limit)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in stats], indent=2))
    elif not stats:
        console.print(f"{service}: no scores yet on {topic}")
    else:
        console.print(stats_table(service, stats))
