"""The CLI reference in Markdown, generated from the Typer app itself.

``python -m modelstream.cli.reference > docs/cli.md`` regenerates it; a test checks that
the committed file matches, so the reference can never drift from the commands.

Typer vendors its own copy of click, so commands are walked through their own methods
(``context_class``, ``list_commands``) rather than ``isinstance`` checks against click.
"""

from __future__ import annotations

from typing import Any

import typer

from modelstream.cli.app import app


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def _options(command: Any, ctx: Any) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or record[0].startswith("--help"):
            continue
        name, help_text = record
        lines.append(f"| `{name}` | {help_text.replace('|', '/').strip()} |")
    return lines


def _walk(command: Any, path: list[str], out: list[str]) -> None:
    ctx = command.context_class(command, info_name=" ".join(path))
    out.append(f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`\n")
    help_text = (command.help or "").strip()
    if help_text:
        out.append(help_text.split("\f")[0].strip() + "\n")
    if not _is_group(command):
        out.append(f"```\n{' '.join([*path, *command.collect_usage_pieces(ctx)])}\n```\n")
    options = _options(command, ctx)
    if options:
        out.extend(["| option | meaning |", "|---|---|", *options, ""])
    if _is_group(command):
        for name in command.list_commands(ctx):
            _walk(command.get_command(ctx, name), [*path, name], out)


def render() -> str:
    """The whole reference as Markdown."""
    out = [
        "# CLI reference\n",
        "Generated from the command line itself by `python -m modelstream.cli.reference`;"
        " do not edit by hand.\n",
    ]
    _walk(typer.main.get_command(app), ["modelstream"], out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
