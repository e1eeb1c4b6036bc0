"""``modelstream compare S A@v B@v``: two model versions on the same labelled requests."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, cast

import orjson
import typer
from rich.console import Console
from rich.table import Table

from modelstream.cli.archive import parse_time
from modelstream.cli.context import BackplaneOption, settings_of
from modelstream.cli.errors import reported
from modelstream.errors import ConfigurationError
from modelstream.models.refs import ModelRef
from modelstream.wire.topics import check_name

if TYPE_CHECKING:  # pandas: imported only when a comparison runs
    from modelstream.monitoring.compare import Comparison, ModelQuality

console = Console()


def _num(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _table(result: Comparison, service: str) -> Table:
    a, b = result.a, result.b
    level = round(result.confidence * 100)
    table = Table("", str(a.ref), str(b.ref), title=f"{service}: {result.task}")
    for ma, mb in zip(a.metrics, b.metrics, strict=True):
        table.add_row(
            f"{ma.name} ({level}% CI)",
            f"{_num(ma.value)} [{_num(ma.low)}, {_num(ma.high)}]",
            f"{_num(mb.value)} [{_num(mb.low)}, {_num(mb.high)}]",
        )

    def lat(q: ModelQuality) -> str:
        return f"{_num(q.latency.p50, 2)} / {_num(q.latency.p99, 2)}"

    table.add_row("latency p50 / p99 (ms)", lat(a), lat(b))
    table.add_row("scored / errors", f"{a.scored} / {a.errors}", f"{b.scored} / {b.errors}")
    table.caption = (
        f"{result.n_paired} paired labelled requests; {result.test}: "
        f"p = {result.p_value:.4g}; winner at alpha {result.alpha}: "
        f"{result.winner if result.winner is not None else 'none'}"
    )
    return table


@reported
def compare_command(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="Service."),
    a: str = typer.Argument(..., help="Model A as NAME@VERSION (e.g. the champion)."),
    b: str = typer.Argument(..., help="Model B as NAME@VERSION (e.g. a challenger)."),
    start: str | None = typer.Option(None, "--from", help="Event time from (inclusive)."),
    end: str | None = typer.Option(None, "--to", help="Event time to (exclusive)."),
    task: str = typer.Option("auto", "--task", help="auto, classification or regression."),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-9, max=0.5, help="Significance."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    backplane_url: BackplaneOption = None,
) -> None:
    """Each model's quality with confidence intervals, a paired test, latency, a winner."""
    if task not in ("auto", "classification", "regression"):
        raise ConfigurationError("--task must be auto, classification or regression")
    ref_a, ref_b = ModelRef.parse(a), ModelRef.parse(b)
    from modelstream.archive.reader import ArchiveReader  # pandas: only when it runs
    from modelstream.monitoring.compare import Task, compare

    reader = ArchiveReader(settings_of(ctx).archive_root())
    joined = reader.joined(
        check_name("service", service),
        parse_time(start, "--from"),
        parse_time(end, "--to"),
        models=[ref_a, ref_b],
    )
    if joined.empty:
        raise ConfigurationError(
            f"no archived requests of {service} in this window; run "
            f"`modelstream archive ls --service {service}` to see what is archived"
        )
    result = compare(joined, ref_a, ref_b, task=cast(Task, task), alpha=alpha)
    if as_json:
        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        console.print(_table(result, service))
