"""How every CLI command reports failure: one ``error: ...`` line on stderr, exit code 1.

Wrap each command with :func:`reported`; :func:`modelstream.cli.app.main` applies the
same rule once more around the whole app, so no ``ModelstreamError`` ever reaches the
user as a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError

from modelstream.errors import ModelstreamError

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` (one line) on stderr; return the ``Exit`` to raise."""
    one_line = " ".join(message.split())
    print(f"error: {one_line}", file=sys.stderr)
    return typer.Exit(code)


def explain(exc: BaseException) -> str:
    """The operator-facing text of an error the CLI reports instead of a traceback."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "setting"
        return f"invalid setting {field}: {first['msg']} (check MODELSTREAM_* and options)"
    if isinstance(exc, OSError) and not isinstance(exc, ModelstreamError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}; check the path and its permissions"
    return str(exc) or type(exc).__name__


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command so expected failures end as one line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (ModelstreamError, ValidationError, OSError) as exc:
            raise fail(explain(exc)) from None

    return wrapper
