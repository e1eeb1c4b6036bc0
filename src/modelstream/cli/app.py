"""The ``modelstream`` command line: the root app, its global options, and the registry.

Each command group lives in a module of its own and is registered below, in one place:
``app.add_typer(module.app, name=...)`` for a group of subcommands, ``app.command()`` for
a single command. Every command is decorated with :func:`modelstream.cli.errors.reported`.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import typer

from modelstream.cli import (
    archive,
    compare,
    demo,
    deploy,
    experiments,
    features,
    keys,
    models,
    monitor,
    serve,
    stats,
    stream,
    topics,
    train,
)
from modelstream.cli.context import BACKPLANE_HELP, build_state
from modelstream.cli.errors import explain
from modelstream.errors import ModelstreamError
from modelstream.settings import DEFAULT_BACKPLANE

app = typer.Typer(
    name="modelstream",
    help="Machine-learning models in production on streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    backplane: str = typer.Option(
        DEFAULT_BACKPLANE,
        "--backplane",
        envvar="MODELSTREAM_BACKPLANE",
        help=f"{BACKPLANE_HELP} Every command also takes --backplane after its name.",
    ),
) -> None:
    """Build the one Settings object of this run and hand it to the subcommand."""
    build_state(ctx, backplane)


# -- the registry: one line per command module -------------------------------------------
app.add_typer(topics.app, name="topics")
app.add_typer(features.app, name="features")
app.command("produce")(stream.produce)
app.command("consume")(stream.consume)
app.add_typer(archive.app, name="archive")
app.command("replay")(archive.replay_command)
app.command("compare")(compare.compare_command)
app.command("monitor")(monitor.monitor_command)
app.command("serve")(serve.serve_command)
app.command("run")(serve.run_command)
app.add_typer(models.app, name="models")
models.app.command("stats")(stats.stats_command)
app.add_typer(keys.app, name="keys")
deploy.register(app)
experiments.register(app)
app.command("train")(train.train_command)
app.command("demo")(demo.demo_command)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point; a last net so no ModelstreamError shows a traceback.

    SIGTERM (what process supervisors send) stops a long-running command the way Ctrl-C
    does, so every role shuts down cleanly under systemd, Kubernetes or a test harness.
    Commands that install their own handlers (``serve``, ``run``) override this one.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except ModelstreamError as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        sys.exit(1)
