"""``modelstream demo``: the whole path on this machine, in one command.

Trains three classifiers, publishes them as ONNX onto the models topic, deploys them
(champion, challenger, canary) under a deadline, serves HTTP on 127.0.0.1, sends traffic
at a fixed rate with a progress bar, retrains and swaps the champion half-way while the
traffic flows, and prints what happened: requests, answers by model version, deadline
misses, latency. Exits non-zero if any request was lost.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelstream.cli.context import backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.demo import scenario
from modelstream.demo.traffic import Outcome, run_traffic
from modelstream.gateway.serving import Serving
from modelstream.models.refs import ModelRef

console = Console()


def _summary(outcome: Outcome, swapped_to: ModelRef | None, duration: float) -> Table:
    table = Table(title="modelstream demo: summary", show_header=False)
    table.add_row("requests sent", str(outcome.sent))
    table.add_row("answered", f"{outcome.answered} ({outcome.answered / duration:.0f}/s)")
    table.add_row("answered by the deadline", str(outcome.deadline_met))
    table.add_row("fallback answers", str(outcome.fallback))
    table.add_row("deadline misses (504)", str(outcome.missed))
    table.add_row("other errors", str(sum(outcome.failed.values()) + outcome.transport_errors))
    table.add_row("lost", str(outcome.lost))
    for model, count in sorted(outcome.by_model.items()):
        table.add_row(f"answers by {model}", str(count))
    table.add_row(
        "latency p50 / p99", f"{outcome.percentile(50):.1f} / {outcome.percentile(99):.1f} ms"
    )
    if swapped_to is not None:
        table.add_row("swapped in under load", str(swapped_to))
    return table


@reported
def demo_command(
    ctx: typer.Context,
    duration: float = typer.Option(20.0, min=2.0, help="Seconds of traffic."),
    rate: float = typer.Option(100.0, min=1.0, help="Requests per second."),
    deadline_ms: int = typer.Option(100, min=5, help="Deadline of every request."),
    port: int = typer.Option(0, help="HTTP port (0: any free port)."),
    service: str = typer.Option("demo", help="Service name to deploy the demo as."),
    no_browser: bool = typer.Option(
        True, "--no-browser/--browser", help="Do not open the dashboard in a browser."
    ),
) -> None:
    """Train, publish, deploy and serve three models, send traffic, swap one live."""
    del no_browser  # the dashboard comes with a later issue; the flag is accepted now
    settings = settings_of(ctx)
    with backplane_of(ctx) as backplane:
        serving_ready = Serving(backplane, settings, [], gateway=False, scorers=False)
        console.print(f"[bold]modelstream demo[/] on [cyan]{settings.backplane}[/]")
        with console.status("training and publishing three models as ONNX..."):
            models = scenario.setup(serving_ready.registry, service, deadline_ms)
        console.print(
            f"deployed champion [green]{models.champion}[/], challenger "
            f"[yellow]{models.challenger}[/], canary [magenta]{models.canary}[/] "
            f"(policy preference, deadline {deadline_ms} ms)"
        )
        serving = Serving(backplane, settings, [service], host="127.0.0.1", port=port)
        with console.status("starting the gateway, rendezvous and scorers..."):
            serving.start()
        try:
            assert serving.server is not None
            console.print(f"serving on [link]{serving.server.url}[/link]")
            outcome, swapped = _traffic(serving, models, rate, duration, deadline_ms)
        finally:
            with console.status("stopping..."):
                serving.stop()
    console.print(_summary(outcome, swapped, duration))
    if outcome.lost or outcome.transport_errors:
        console.print("[red]some requests got no answer[/]")
        raise typer.Exit(1)


def _traffic(
    serving: Serving,
    models: scenario.DemoModels,
    rate: float,
    duration: float,
    deadline_ms: int,
) -> tuple[Outcome, ModelRef | None]:
    assert serving.server is not None
    swapped: list[ModelRef] = []

    def swap() -> None:
        swapped.append(
            scenario.retrain_champion(serving.registry, models, seed=uuid.uuid4().int % 1000)
        )

    timer = threading.Timer(duration / 2, swap)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )
    rows = scenario.rows(models.data, 5000, seed=1)
    with progress:
        task = progress.add_task("traffic", total=1.0, status="")

        def tick(done: float, outcome: Outcome) -> None:
            progress.update(
                task,
                completed=done,
                status=f"sent {outcome.sent} answered {outcome.answered} "
                f"missed {outcome.missed}" + (f" swapped to {swapped[0]}" if swapped else ""),
            )

        timer.start()
        try:
            outcome = asyncio.run(
                run_traffic(
                    serving.server.url,
                    models.service,
                    rows,
                    rate=rate,
                    duration=duration,
                    deadline_ms=deadline_ms,
                    on_tick=tick,
                )
            )
        finally:
            timer.cancel()
            timer.join()
    return outcome, swapped[0] if swapped else None
