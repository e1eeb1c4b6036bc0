"""What ``modelstream demo`` runs (:mod:`modelstream.cli.demo` declares the command).

Kept apart so that the CLI's other commands do not import the demo, the gateway and
pandas: every ``modelstream`` invocation, and every role process that ``serve
--processes`` starts, imports the command modules.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import webbrowser
from contextlib import ExitStack, nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from modelstream import heap
from modelstream.backplane.records import now_ms
from modelstream.cli.context import backplane_of, settings_of
from modelstream.demo import scenario
from modelstream.demo.features import BY_MINUTE, FEATURE_SETS
from modelstream.demo.fleet import Fleet
from modelstream.demo.live import render
from modelstream.demo.story import ALERTED, DRIFTED, PROMOTED, RETRAINED, Milestone, Story
from modelstream.demo.traffic import Outcome, run_traffic
from modelstream.demo.training import FUNCTION
from modelstream.errors import ServiceNotFound
from modelstream.gateway.loop import LoopConfig
from modelstream.gateway.serving import Serving
from modelstream.models.registry import Registry
from modelstream.monitoring.config import MonitorConfig
from modelstream.training.config import TrainerConfig

console = Console()


def _free_service(registry: Registry, wanted: str | None) -> str:
    """``wanted``, or the first of ``fleet``, ``fleet-2``, ... with no deployment yet (a
    demo run starts from a clean service; earlier runs stay on the backplane)."""
    if wanted:
        return wanted
    for n in range(1, 1000):
        name = "fleet" if n == 1 else f"fleet-{n}"
        try:
            registry.deployment(name)
        except ServiceNotFound:
            return name
    return "fleet-demo"


def _loop(minute_ms: int, duration: float, checkpoints: Path) -> LoopConfig:
    """The serving loop of the demo, on the fleet's clock: monitor windows of twenty
    simulated minutes; a trainer that the story triggers (its own schedule never fires
    within the run). Promotion is the story's: it judges the retrained challenger only."""
    quick = duration < 60
    return LoopConfig(
        archive_flush_seconds=2.0,
        monitor=MonitorConfig(
            window_ms=20 * minute_ms,
            window_count=400,
            min_labels=30,
            min_scores=20,
            reference_size=300,
            min_drift_samples=100,
            evaluate_every=200,
            realert_ms=10_000,
        ),
        trainer=TrainerConfig(
            function=FUNCTION,
            inputs="features",
            every_seconds=duration * 100,
            deploy_as_challenger=True,
            min_rows=80 if quick else 300,
            checkpoint_dir=checkpoints,
        ),
        auto_promote=False,  # the story judges the retrained challenger (see Story)
    )


def _summary(outcome: Outcome, story: Story, duration: float) -> Table:
    table = Table(title="modelstream demo: summary", show_header=False)
    table.add_row("requests sent", str(outcome.sent))
    table.add_row("answered", f"{outcome.answered} ({outcome.answered / duration:.0f}/s)")
    table.add_row("answered by the deadline", str(outcome.deadline_met))
    table.add_row("fallback answers", str(outcome.fallback))
    table.add_row("deadline misses beyond the fallback", str(outcome.missed))
    table.add_row("other errors", str(sum(outcome.failed.values()) + outcome.transport_errors))
    table.add_row("lost", str(outcome.lost))
    for model, count in sorted(outcome.by_model.items()):
        table.add_row(f"answers by {model}", str(count))
    table.add_row(
        "latency p50 / p99", f"{outcome.percentile(50):.1f} / {outcome.percentile(99):.1f} ms"
    )
    table.add_row(
        "sensor events / late (side stream)", f"{story.seen.events} / {story.seen.late_events}"
    )
    table.add_row("labels arrived", str(story.seen.labels))
    for phase in story.quality(outcome.answers):
        value = "-" if phase.accuracy is None else f"{phase.accuracy:.3f}"
        table.add_row(f"accuracy {phase.name}", f"{value} ({phase.labelled} labelled answers)")
    for kind in (DRIFTED, ALERTED, RETRAINED, PROMOTED):
        first = next((m for m in story.milestones if m.kind == kind), None)
        table.add_row(kind, "-" if first is None else f"at {first.at_s:.1f} s")
    table.add_row("champion now", story.seen.champion)
    if story.verdict and not story.reached(PROMOTED):
        table.add_row("last verdict", story.verdict)
    return table


def run_demo(
    ctx: typer.Context,
    *,
    duration: float,
    rate: float,
    deadline_ms: int,
    trucks: int,
    port: int,
    service: str | None,
    browser: bool,
) -> None:
    """The body of ``modelstream demo`` (see the command for the options)."""
    settings = settings_of(ctx)
    quick = duration < 60
    minute_ms = 400 if quick else 1_000
    feature_set, feature_ref = BY_MINUTE[minute_ms], FEATURE_SETS[minute_ms]
    # The drift comes early enough that the retrained model is promoted while traffic
    # still flows, so the summary shows the quality before and after.
    drift_at = duration * 0.4
    logging.getLogger("modelstream").setLevel(logging.ERROR)  # the live view tells the story
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ms-demo-")))
        if not settings.backplane.startswith("sqlite://"):
            # The archive is local Parquet: keep this run's next to its checkpoints.
            settings = settings.model_copy(update={"archive_dir": scratch / "archive"})
        backplane = stack.enter_context(backplane_of(ctx))
        registry = Registry(backplane, settings)
        name = _free_service(registry, service)
        fleet = Fleet(trucks, minute_ms=minute_ms)
        console.print(
            f"[bold]modelstream demo[/] on [cyan]{settings.backplane}[/]: service "
            f"[bold]{name}[/], {trucks} trucks, one simulated minute = {minute_ms} ms "
            f"of event time, {rate:.0f} requests/s for {duration:.0f} s"
        )
        with console.status("simulating history, rebuilding its features offline, training..."):
            models = scenario.setup(
                backplane,
                registry,
                name,
                fleet,
                feature_set=feature_set,
                feature_set_ref=feature_ref,
                deadline_ms=deadline_ms,
                now=now_ms(),
            )
        accuracy = ", ".join(f"{k} {v:.3f}" for k, v in models.accuracy.items())
        console.print(
            f"trained on {models.history_rows} rows of simulated history (holdout accuracy: "
            f"{accuracy}); deployed champion [green]{models.champion}[/], challenger "
            f"[yellow]{models.challenger}[/], canary [magenta]{models.canary}[/] with "
            f"features {feature_set.ref}, deadline {deadline_ms} ms, fallback answer on a miss"
        )
        serving = Serving(
            backplane,
            settings,
            [name],
            host="127.0.0.1",
            port=port,
            loop=_loop(minute_ms, duration, scratch / "checkpoints"),
        )
        with console.status("starting the gateway, featurizer, rendezvous, scorers, monitor..."):
            serving.start()
        heap.settle()
        stack.callback(serving.stop)
        assert serving.server is not None
        url = f"{serving.server.url}/"
        console.print(f"dashboard: [link={url}]{url}[/link]  (the API is under /v2)")
        if browser:
            webbrowser.open(url)
        story = Story(
            serving,
            models,
            fleet,
            drift_at_s=drift_at,
            retrain_by_s=drift_at + (duration - drift_at) * 0.4,
            min_labels=50 if quick else 100,
            on_milestone=_announce,
        )
        stack.callback(story.stop)
        outcome = _run(serving, story, name, rate, duration, deadline_ms)
        with console.status("waiting for the last labels and the verdict..."):
            story.settle(timeout=fleet.horizon_ms / 1000 + 4)
        story.stop()
    console.print(_summary(outcome, story, duration))
    if outcome.missed:
        # Only an overloaded machine gets here: the rendezvous answers by the deadline.
        console.print("[yellow]some requests missed even the fallback (is the machine busy?)[/]")
    if outcome.lost or outcome.transport_errors:
        console.print("[red]some requests got no answer at all[/]")
        raise typer.Exit(1)


def _announce(m: Milestone) -> None:
    console.print(f"[dim]{m.at_s:6.1f}s[/] [bold]{m.kind}[/]: {m.text}")


def _run(
    serving: Serving, story: Story, service: str, rate: float, duration: float, deadline_ms: int
) -> Outcome:
    assert serving.server is not None
    interactive = console.is_terminal
    live = (
        Live(console=console, refresh_per_second=4, transient=False)
        if interactive
        else nullcontext()
    )
    last_line = [0.0]
    served = [False]

    def tick(elapsed: float, outcome: Outcome) -> None:
        if not served[0] and outcome.answered:
            served[0] = True
            story.milestone("served", f"first answers over HTTP, by {next(iter(outcome.by_model))}")
        if isinstance(live, Live):
            live.update(render(story, outcome, elapsed, duration))
        elif elapsed - last_line[0] >= 5 or elapsed >= duration:
            last_line[0] = elapsed
            rps, p50, p99 = outcome.window(time.perf_counter())
            console.print(
                f"[dim]{elapsed:6.1f}s[/] sent {outcome.sent}, answered {outcome.answered} "
                f"({rps:.0f}/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms), fallback "
                f"{outcome.fallback}, missed {outcome.missed}; champion {story.seen.champion}"
            )

    with live:
        story.start()
        outcome = asyncio.run(
            run_traffic(
                serving.server.url,
                service,
                story.ask,
                rate=rate,
                duration=duration,
                deadline_ms=deadline_ms,
                on_tick=tick,
            )
        )
    return outcome
