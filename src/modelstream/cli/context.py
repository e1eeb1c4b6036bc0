"""The state the root command hands to subcommands: the one :class:`Settings` object."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.settings import Settings


@dataclass(frozen=True)
class CliState:
    """Built once by the root callback; ``ctx.obj`` of every subcommand."""

    settings: Settings


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
