"""``--backplane URL`` works before the subcommand, after it, and from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from modelstream.cli.app import app


def _commands(command: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """Every runnable (leaf) command of the app, with the words that invoke it."""
    if not hasattr(command, "list_commands"):
        return [(path, command)]
    ctx = command.context_class(command, info_name=" ".join(path))
    found = []
    for name in command.list_commands(ctx):
        found += _commands(command.get_command(ctx, name), (*path, name))
    return found


def test_every_command_accepts_backplane_after_its_name() -> None:
    commands = _commands(typer.main.get_command(app), ())
    assert len(commands) > 20  # the walk found the nested groups too
    missing = [
        " ".join(path)
        for path, command in commands
        if not any("--backplane" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert missing == [], "declare `backplane_url: BackplaneOption = None` on these commands"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELSTREAM_BACKPLANE", raising=False)
    monkeypatch.chdir(tmp_path)  # the default backplane, if used by mistake, lands here


def test_the_option_after_the_subcommand_chooses_the_backplane(
    no_env: None, tmp_path: Path
) -> None:
    url = f"sqlite://{tmp_path / 'after'}"
    runner = CliRunner()
    created = runner.invoke(app, ["topics", "create", "after-topic", "--backplane", url])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(app, ["topics", "list", "--backplane", url])
    assert listed.exit_code == 0, listed.output
    assert "after-topic" in listed.output
    assert (tmp_path / "after").is_dir()
    assert not (tmp_path / ".modelstream").exists()  # not the default backplane


def test_the_option_before_the_subcommand_still_works(no_env: None, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'before'}"
    runner = CliRunner()
    assert runner.invoke(app, ["--backplane", url, "topics", "create", "t1"]).exit_code == 0
    listed = runner.invoke(app, ["--backplane", url, "topics", "list"])
    assert "t1" in listed.output
    assert not (tmp_path / ".modelstream").exists()


def test_the_environment_chooses_the_backplane_and_the_option_after_wins(
    no_env: None, tmp_path: Path
) -> None:
    from_env, from_option = tmp_path / "env", tmp_path / "option"
    env = {"MODELSTREAM_BACKPLANE": f"sqlite://{from_env}"}
    runner = CliRunner()
    assert runner.invoke(app, ["topics", "create", "in-env"], env=env).exit_code == 0
    listed = runner.invoke(app, ["topics", "list"], env=env)
    assert "in-env" in listed.output

    overridden = runner.invoke(
        app,
        [
            "--backplane",
            "memory://",
            "topics",
            "create",
            "in-option",
            "--backplane",
            f"sqlite://{from_option}",
        ],
        env=env,
    )
    assert overridden.exit_code == 0, overridden.output
    listed = runner.invoke(app, ["topics", "list", "--backplane", f"sqlite://{from_option}"])
    assert "in-option" in listed.output and "in-env" not in listed.output
    assert "in-option" not in runner.invoke(app, ["topics", "list"], env=env).output


def test_a_bad_url_after_the_subcommand_is_one_line(no_env: None) -> None:
    result = CliRunner().invoke(app, ["topics", "list", "--backplane", "redis://x"])
    assert result.exit_code == 1
    assert result.output.startswith("error: unknown backplane URL")
    assert result.output.strip().count("\n") == 0
