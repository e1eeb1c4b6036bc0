"""``modelstream demo``: the whole story on this machine, in one command.

A fleet of simulated trucks streams sensor readings; features are computed per truck in
event time; a champion, a challenger and a canary -- trained on a history whose
features were rebuilt offline by the same code -- serve HTTP under a deadline (misses
get the fallback answer); at 40% of the run the world drifts; the monitor alerts; the trainer
retrains; the new challenger wins with significance and is promoted. A Rich live view
shows it in a terminal (one line per step otherwise), the dashboard URL is printed, and
a summary ends it. Exits non-zero if any request got no HTTP answer at all.
"""

from __future__ import annotations

import typer

from modelstream.cli.context import BackplaneOption
from modelstream.cli.errors import reported


@reported
def demo_command(
    ctx: typer.Context,
    duration: float = typer.Option(
        120.0, min=10.0, help="Seconds of traffic (the story is compressed below 60)."
    ),
    rate: float = typer.Option(
        20.0,
        min=5.0,
        help="Requests per second (every role shares one process: about 40/s is its ceiling).",
    ),
    deadline_ms: int = typer.Option(250, min=5, help="Deadline of every request."),
    trucks: int = typer.Option(50, min=5, max=500, help="Simulated trucks in the fleet."),
    port: int = typer.Option(0, help="HTTP port (0: any free port)."),
    service: str | None = typer.Option(
        None, help="Service name (default: fleet, or fleet-N if that one is taken)."
    ),
    browser: bool = typer.Option(
        False, "--browser/--no-browser", help="Open the dashboard in a web browser."
    ),
    backplane_url: BackplaneOption = None,
) -> None:
    """A fleet streams, the world drifts, the loop retrains and promotes: watch it live."""
    from modelstream.cli.demo_run import run_demo  # heavy: only when the demo runs

    run_demo(
        ctx,
        duration=duration,
        rate=rate,
        deadline_ms=deadline_ms,
        trucks=trucks,
        port=port,
        service=service,
        browser=browser,
    )
