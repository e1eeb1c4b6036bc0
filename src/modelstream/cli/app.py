"""The ``modelstream`` command line: the root app, its global options, and the registry.

Each command group lives in a module of its own and is listed in :data:`COMMANDS`, in
one place: a group of subcommands is a module's ``typer.Typer``, a single command a
function. A command's module is imported only when that command runs (the root's help
imports them all, to list them), so ``modelstream run rendezvous`` starts without the
modules of the other commands: a role restarted after a crash serves that much sooner.
Every command is decorated with :func:`modelstream.cli.errors.reported`.
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from modelstream.cli.context import BACKPLANE_HELP, build_state
from modelstream.cli.errors import explain
from modelstream.errors import ModelstreamError
from modelstream.settings import DEFAULT_BACKPLANE

if TYPE_CHECKING:  # the click that typer vendors: its groups' methods take these types
    from typer._click import Command, Context

# -- the registry: name -> (module of modelstream.cli, its Typer app or command function) --
COMMANDS: dict[str, tuple[str, str]] = {
    "produce": ("stream", "produce"),
    "consume": ("stream", "consume"),
    "replay": ("archive", "replay_command"),
    "compare": ("compare", "compare_command"),
    "monitor": ("monitor", "monitor_command"),
    "serve": ("serve", "serve_command"),
    "run": ("serve", "run_command"),
    "deploy": ("deploy", "deploy"),
    "promote": ("deploy", "promote"),
    "rollback": ("deploy", "rollback"),
    "apply": ("deploy", "apply"),
    "auto-promote": ("experiments", "auto_promote_command"),
    "train": ("train", "train_command"),
    "demo": ("demo", "demo_command"),
    # groups of subcommands
    "topics": ("topics", "app"),
    "features": ("features", "app"),
    "archive": ("archive", "app"),
    "models": ("models", "app"),
    "keys": ("keys", "app"),
    "rollout": ("experiments", "rollout_app"),
}


class LazyCommands(TyperGroup):
    """The root group: each subcommand of :data:`COMMANDS` is imported when it is used."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute = found
        target = getattr(importlib.import_module(f"modelstream.cli.{module}"), attribute)
        if isinstance(target, typer.Typer):
            command: Command = typer.main.get_group(target)  # a group even of one command
        else:
            single = typer.Typer(add_completion=False)
            single.command(cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name  # a group's own Typer has no name: it was given here
        return command


app = typer.Typer(
    name="modelstream",
    help="Machine-learning models in production on streams.",
    cls=LazyCommands,
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
