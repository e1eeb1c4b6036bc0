"""``modelstream rollout start`` and ``modelstream auto-promote``: experiments on a service.

* ``rollout start S N@V`` runs a :class:`~modelstream.rendezvous.rollout.RolloutController`
  in the foreground: ``N@V`` takes ``--steps`` shares of answers (percent), advancing
  ``--every`` N of its scores or every ``--interval`` seconds, and is rolled back when
  its error rate passes ``--max-error-rate`` or its measured quality (an in-process
  monitor) falls below ``--min-quality``. Ctrl-C stops it where it is (the deployment
  keeps the step reached). Every step is a deployment record with its reason.
* ``auto-promote S`` compares each challenger with the champion on the archive's
  labelled requests and promotes one that wins with significance on at least
  ``--min-labels`` of them (``--dry-run`` only reports).

Registered in :mod:`modelstream.cli.app` by :func:`register`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from modelstream.backplane.port import Backplane
from modelstream.cli.archive import parse_time
from modelstream.cli.context import BackplaneOption, backplane_of, settings_of
from modelstream.cli.errors import reported
from modelstream.errors import ConfigurationError
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.policies import QualitySource
from modelstream.rendezvous.rollout import RolloutController, RolloutPlan, RolloutStatus
from modelstream.rendezvous.tally import ScoreTally
from modelstream.settings import Settings
from modelstream.wire.topics import check_name

rollout_app = typer.Typer(help="Canary rollouts: a new champion takes a growing share.")


def parse_steps(text: str) -> tuple[float, ...]:
    """``"5,25,50,100"`` (percent) as shares ``(0.05, 0.25, 0.5, 1.0)``."""
    try:
        steps = tuple(float(part) / 100 for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigurationError(
            f"--steps {text!r} is not a list of percentages: write e.g. 5,25,50,100"
        ) from None
    return steps


@contextmanager
def _monitor_quality(
    backplane: Backplane, settings: Settings, service: str, wanted: bool
) -> Iterator[QualitySource | None]:
    """An in-process monitor of ``service`` as a quality source (only when ``wanted``)."""
    if not wanted:
        yield None
        return
    from modelstream.monitoring.monitor import Monitor
    from modelstream.monitoring.quality import MonitorQuality

    monitor = Monitor(backplane, settings, service, standalone=True).start()
    try:
        yield MonitorQuality([monitor])
    finally:
        monitor.stop()


def _print(status: RolloutStatus) -> None:
    print(f"[{status.state}] {status.reason}", flush=True)


@reported
def rollout_start(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to roll out as the new champion.")],
    steps: Annotated[
        str, typer.Option("--steps", help="Shares of answers in percent, in order.")
    ] = "5,25,50,100",
    every: Annotated[
        int | None, typer.Option("--every", min=1, help="Advance after N of its scores.")
    ] = None,
    interval: Annotated[
        float | None, typer.Option("--interval", min=0.001, help="Advance every S seconds.")
    ] = None,
    max_error_rate: Annotated[
        float | None, typer.Option("--max-error-rate", help="Roll back above this error rate.")
    ] = None,
    min_quality: Annotated[
        float | None,
        typer.Option("--min-quality", help="Roll back below this measured quality."),
    ] = None,
    min_scores: Annotated[
        int, typer.Option("--min-scores", min=1, help="Scores before judging the error rate.")
    ] = 20,
    poll: Annotated[float, typer.Option("--poll", min=0.01, help="Check every S seconds.")] = 0.5,
    backplane_url: BackplaneOption = None,
) -> None:
    """Roll a version out step by step; roll it back when it misbehaves."""
    plan = RolloutPlan(
        ModelRef.parse(ref),
        parse_steps(steps),
        every=every,
        interval_s=interval,
        max_error_rate=max_error_rate,
        min_quality=min_quality,
        min_scores=min_scores,
    )
    check_name("service", service)
    settings = settings_of(ctx)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with (
            backplane_of(ctx) as backplane,
            ScoreTally(backplane, service) as tally,
            _monitor_quality(backplane, settings, service, min_quality is not None) as quality,
        ):
            controller = RolloutController(
                Registry(backplane, settings), service, plan, errors=tally, quality=quality
            )
            status = controller.run(stop, poll, on_status=_print, before_check=tally.poll)
    finally:
        signal.signal(signal.SIGINT, previous)
    if status.state == "running":
        print(f"stopped at step {status.step} ({status.share * 100:g}%); the deployment stays")
    if status.state in ("rolled_back", "aborted"):
        raise typer.Exit(1)


@reported
def auto_promote_command(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    challenger: Annotated[
        str | None, typer.Option("--challenger", help="Only this NAME@VERSION.")
    ] = None,
    min_labels: Annotated[
        int, typer.Option("--min-labels", min=1, help="Labelled requests needed.")
    ] = 200,
    alpha: Annotated[float, typer.Option("--alpha", min=1e-9, max=0.5)] = 0.05,
    start: Annotated[str | None, typer.Option("--from", help="Event time from.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Event time to.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only.")] = False,
    backplane_url: BackplaneOption = None,
) -> None:
    """Promote a challenger that beats the champion with significance on the archive."""
    from modelstream.archive.reader import ArchiveReader  # pandas: only when it runs
    from modelstream.rendezvous.promotion import auto_promote

    settings = settings_of(ctx)
    with backplane_of(ctx) as backplane:
        verdict = auto_promote(
            Registry(backplane, settings),
            ArchiveReader(settings.archive_root()),
            check_name("service", service),
            min_labels=min_labels,
            alpha=alpha,
            challenger=None if challenger is None else ModelRef.parse(challenger),
            start=parse_time(start, "--from"),
            end=parse_time(end, "--to"),
            dry_run=dry_run,
        )
    done = verdict.deployment is not None
    suffix = f" (revision {verdict.deployment.revision})" if verdict.deployment else ""
    print(("" if done or not verdict.promote else "would ") + verdict.reason + suffix)


rollout_app.command("start")(rollout_start)
