"""The state the root command hands to subcommands: the one :class:`Settings` object.

``--backplane URL`` is accepted on the root command (``modelstream --backplane URL
topics list``) and on every subcommand (``modelstream topics list --backplane URL``). The
root option also reads ``MODELSTREAM_BACKPLANE``; a subcommand's option, when given, wins
over both, because it is the one written closest to the command. Every command declares
the subcommand option as ``backplane_url: BackplaneOption = None``; a test walks the app
so that no command can forget it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TextIO

import typer
from pydantic import ValidationError

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.cli.errors import explain
from modelstream.settings import Settings

BACKPLANE_HELP = "Backplane URL: memory://, sqlite://DIR or kafka://HOST:PORT[,HOST:PORT]."


@dataclass(frozen=True)
class CliState:
    """Built once by the root callback; ``ctx.obj`` of every subcommand."""

    settings: Settings


def build_state(ctx: typer.Context, backplane: str) -> None:
    """Make ``ctx``'s root hold the settings of this run, on ``backplane``.

    Settings that do not validate (a bad ``MODELSTREAM_*`` value) end the run with one
    ``error:`` line naming the setting, and exit code 1.
    """
    try:
        ctx.find_root().obj = CliState(Settings(backplane=backplane))
    except ValidationError as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        raise typer.Exit(1) from None


def _override(ctx: typer.Context, value: str | None) -> str | None:
    # Click parses a subcommand's options after the root callback ran, so this replaces
    # the root's settings before the command body reads them.
    if value is not None:
        build_state(ctx, value)
    return value


#: ``--backplane`` on a subcommand; declare it on every command (the value is applied by
#: the option itself, so the command body need not read it).
BackplaneOption = Annotated[
    str | None,
    typer.Option(
        "--backplane",
        help=f"{BACKPLANE_HELP} Overrides the one given before the command and "
        "MODELSTREAM_BACKPLANE.",
        callback=_override,
        show_default=False,
    ),
]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command built (defaults when a command runs standalone)."""
    state = ctx.find_root().obj
    return state.settings if isinstance(state, CliState) else Settings()


@contextmanager
def backplane_of(ctx: typer.Context) -> Iterator[Backplane]:
    """Open the backplane named by the settings; close it when the command ends."""
    settings = settings_of(ctx)
    backplane = open_backplane(settings.backplane, settings)
    try:
        yield backplane
    finally:
        backplane.close()


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is at each line, not as it was when the handler
    was made (a test harness swaps it per command)."""

    def emit(self, record: logging.LogRecord) -> None:
        # Not setStream: it flushes the stream it replaces, which may be closed by now.
        self.stream = sys.stderr
        super().emit(record)


def log_to_stderr(settings: Settings) -> Callable[[], None]:
    """Send modelstream's log lines at ``settings.log_level`` and above to stderr, one
    per line with time, level and source: what a long-running role (``serve``, ``run``)
    leaves for its operator. Other commands keep Python's default (warnings only).

    Returns the undo (the command passes it to ``ctx.call_on_close``), so a command run
    in-process, as a test or an embedding application does, leaves logging as it was.
    """
    handler = _Stderr(sys.stderr)
    # Milliseconds: an operator times a failover from these lines.
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    logger = logging.getLogger("modelstream")
    level = logger.level
    logger.setLevel(settings.log_level)
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo
